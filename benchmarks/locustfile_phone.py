"""Locust users for bench_phone.py: each simulated user is one logged-in grid worker.

Run by bench_phone.py (`locust -f benchmarks/locustfile_phone.py --headless ...`) with
BENCH_PHONE_CONFIG naming a JSON file:

    {"mode": "near" | "floor" | "submit" | "photo",
     "out": "<where to write the samples>",
     "photos": ["<base JPEG>", ...],            # photo mode
     "workers": [{"token": ..., "points": [[lon, lat], ...],   # GCJ-02, inside the cell
                  "tasks": [task id, ...]}, ...]}               # submit / photo modes

Every user waits for nothing between requests (a closed loop: `-u` requests in flight at all
times). Every request's completion time, latency and status are kept and written to `out` as
JSON when locust quits; bench_phone.py computes the percentiles and rates from them (locust's
own percentiles are bucketed). Near-me answers are checked on every 10th response (status 200,
a JSON list, how many items).
"""

from __future__ import annotations

import itertools
import json
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from locust import constant, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.exception import StopUser

CONFIG: dict[str, Any] = json.loads(Path(os.environ["BENCH_PHONE_CONFIG"]).read_text())
MODE: str = CONFIG["mode"]
WORKERS: list[dict[str, Any]] = CONFIG["workers"]
BASE_PHOTOS: list[bytes] = [Path(p).read_bytes() for p in CONFIG.get("photos", [])]
CHECK_EVERY = 10

_next_user = itertools.count()
_samples: dict[str, list[tuple[float, float, int]]] = {}
_items: list[int] = []
_errors: list[str] = []
_out_of_tasks: list[int] = []


@events.request.add_listener
def _record(
    name: str,
    response_time: float,
    response: Any = None,
    exception: Any = None,
    **_: Any,
) -> None:
    status = 0 if response is None else int(getattr(response, "status_code", 0) or 0)
    if exception is not None and status < 400:
        status = 0  # connection error, timeout
    _samples.setdefault(name, []).append((time.time(), float(response_time), status))
    if (status < 200 or status >= 300) and len(_errors) < 5:
        body = getattr(response, "text", "") if response is not None else ""
        _errors.append(f"{name}: {status} {exception or ''} {str(body)[:300]}")


@events.quitting.add_listener
def _write(**_: Any) -> None:
    Path(CONFIG["out"]).write_text(
        json.dumps(
            {
                "samples": _samples,
                "items": _items,
                "errors": _errors,
                "out_of_tasks": _out_of_tasks,
            }
        )
    )


def photo_variant(base: bytes, tag: str) -> bytes:
    """`base` with a JPEG comment segment (COM, FF FE) right after SOI: a distinct file (its own
    SHA-256, stored anew) that decodes to the same image."""
    payload = tag.encode()
    return base[:2] + b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload + base[2:]


def multipart(field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
        f'filename="{filename}"\r\nContent-Type: image/jpeg\r\n\r\n'
    ).encode()
    return (
        head + data + f"\r\n--{boundary}--\r\n".encode(),
        f"multipart/form-data; boundary={boundary}",
    )


class Worker(FastHttpUser):
    wait_time = constant(0)
    network_timeout = 60.0
    connection_timeout = 60.0

    def on_start(self) -> None:
        self.index = next(_next_user)
        me = WORKERS[self.index % len(WORKERS)]
        self.headers = {"Authorization": f"Bearer {me['token']}"}
        self.points = me["points"]
        self.todo = list(me.get("tasks", []))
        self.calls = 0

    def _point(self) -> tuple[float, float]:
        lon, lat = self.points[self.calls % len(self.points)]
        return lon, lat

    @task
    def one_call(self) -> None:
        self.calls += 1
        if MODE in ("near", "floor"):
            self.near_me()
        elif MODE == "submit":
            self.submit(photo=False)
        else:
            self.submit(photo=True)

    def near_me(self) -> None:
        lon, lat = self._point()
        name = "GET /tasks near-me" if MODE == "near" else "GET floor (fixed JSON)"
        resp = self.client.get(
            f"/api/mobile/v1/tasks?lon={lon:.7f}&lat={lat:.7f}&crs=gcj02",
            headers=self.headers,
            name=name,
        )
        if MODE == "near" and self.calls % CHECK_EVERY == 0 and resp.status_code == 200:
            try:
                body = json.loads(resp.content)
                _items.append(len(body) if isinstance(body, list) else -1)
            except ValueError:
                _items.append(-2)

    def submit(self, *, photo: bool) -> None:
        if not self.todo:
            _out_of_tasks.append(self.index)
            raise StopUser()
        task_id = self.todo.pop()
        lon, lat = self._point()
        attachment_ids = []
        if photo:
            base = BASE_PHOTOS[self.calls % len(BASE_PHOTOS)]
            data = photo_variant(base, f"bench {self.index} {self.calls} {uuid.uuid4()}")
            body, content_type = multipart("file", f"{uuid.uuid4().hex}.jpg", data)
            up = self.client.post(
                "/api/mobile/v1/attachments",
                data=body,
                headers={**self.headers, "Content-Type": content_type},
                name="POST /attachments (300 KB JPEG)",
            )
            if up.status_code not in (200, 201):
                return
            attachment_ids = [json.loads(up.content)["id"]]
        submission = {
            "id": str(uuid.uuid4()),
            "task_id": task_id,
            "outcome": {"notified_how": "in_person"},
            "point": {"lon": lon, "lat": lat, "accuracy_m": 8.0},
            "captured_at": datetime.now(UTC).isoformat(),
            "attachment_ids": attachment_ids,
        }
        self.client.post(
            "/api/mobile/v1/submissions",
            json=submission,
            headers=self.headers,
            name="POST /submissions" + (" (with photo)" if photo else ""),
        )
