"""The outbox's acceptance criteria, end to end: a loopback receiver that fails its first two
calls still stores every event exactly once (by event id) after the retries; and killing a real
`gridpatrol outbox run` process (SIGKILL to its process group) in the middle of a batch loses
nothing — the events it had leased are delivered once the lease runs out (at least once: the
one in flight when it died may arrive twice, and the receiver's dedupe on the event id keeps it
once).

`deliver_due` and the runner commit, so these tests commit their rows (departments with unique
codes pointing at a local server) and delete them afterwards, also when a test fails. Every
wait is bounded, and a runner still alive at the end is killed."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from backend.services import audit, outbox

SECRET = "crash-test-secret-" + "k" * 24
REPO = Path(__file__).resolve().parents[2]
WAIT_S = 60.0  # the bound on any single wait below


class Receiver:
    """A department's endpoint on 127.0.0.1 as the outbox docs describe it: checks the
    signature over the raw body (401 if wrong), answers 500 to its first `fail_first` requests
    overall, takes `delay` seconds to process, then stores the event under its id — once: a
    repeat of a stored id is answered 200 and counted as a duplicate, not stored again."""

    def __init__(self, *, fail_first: int = 0, delay: float = 0.0, secret: str = SECRET):
        self.fail_first = fail_first
        self.delay = delay  # may be changed while the server runs
        self.secret = secret
        self.lock = threading.Lock()
        self.hits: list[str] = []  # the event id of every request, in arrival order
        self.failed: list[str] = []  # event ids answered 500
        self.unverified: list[str] = []  # event ids whose signature did not verify
        self.mismatched: list[str] = []  # header event id differs from the body's
        self.stored: dict[str, dict[str, Any]] = {}  # event id -> body, deduped
        self.duplicates: list[str] = []  # event ids received again after being stored
        self.active = 0  # requests being handled right now
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                with receiver.lock:
                    receiver.active += 1
                try:
                    self._handle()
                finally:
                    with receiver.lock:
                        receiver.active -= 1

            def _handle(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                event_id = self.headers.get("X-Gridpatrol-Event-Id", "")
                verified = outbox.verify_signature(
                    receiver.secret,
                    self.headers.get("X-Gridpatrol-Timestamp"),
                    raw,
                    self.headers.get("X-Gridpatrol-Signature"),
                )
                with receiver.lock:
                    receiver.hits.append(event_id)
                    if not verified:
                        receiver.unverified.append(event_id)
                        status = 401
                    elif len(receiver.hits) <= receiver.fail_first:
                        receiver.failed.append(event_id)
                        status = 500
                    else:
                        status = 200
                    delay = receiver.delay
                if status == 200:
                    body = json.loads(raw)
                    time.sleep(delay)  # processing; the sender may die meanwhile
                    with receiver.lock:
                        if body.get("event_id") != event_id:
                            receiver.mismatched.append(event_id)
                        if event_id in receiver.stored:
                            receiver.duplicates.append(event_id)
                        else:
                            receiver.stored[event_id] = body
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender was killed while we worked: it never hears the answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/gridpatrol"

    def seen(self) -> int:
        with self.lock:
            return len(self.hits)

    def idle(self) -> bool:
        with self.lock:
            return self.active == 0

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_until(condition: Callable[[], bool], timeout: float = WAIT_S, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what or condition}")
        time.sleep(0.01)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture()
def sessions(engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@pytest.fixture(autouse=True)
def allow_local(monkeypatch) -> None:
    """The receivers run on 127.0.0.1: allow-listed (the spawned runner inherits it)."""
    monkeypatch.setenv("GRIDPATROL_WEBHOOK_ALLOW", "127.0.0.1/32")


@pytest.fixture()
def receivers() -> Iterator[Callable[..., Receiver]]:
    """make(**kwargs) -> a running Receiver; all shut down afterwards."""
    made: list[Receiver] = []

    def make(**kwargs: Any) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    try:
        yield make
    finally:
        for r in made:
            r.close()


@pytest.fixture()
def department(sessions) -> Iterator[Callable[[str], str]]:
    """make(url) -> a committed department's code; it and its outbox rows are deleted
    afterwards, whatever happened."""
    codes: list[str] = []

    def make(url: str) -> str:
        code = f"K{uuid.uuid4().hex[:12].upper()}"
        codes.append(code)
        with sessions() as s:
            s.execute(
                text(
                    "INSERT INTO department (code, name, webhook_url, webhook_secret) "
                    "VALUES (:c, '崩溃测试部门 ' || :c, :u, :s)"
                ),
                {"c": code, "u": url, "s": SECRET},
            )
            audit.record(s, "create", "department", code, changes={})
            s.commit()
        return code

    try:
        yield make
    finally:
        if codes:
            with sessions() as s:
                # a runner that somehow survived must not make the clean-up hang
                s.execute(text("SET LOCAL lock_timeout = '10s'"))
                s.execute(
                    text("DELETE FROM outbox_event WHERE department_code = ANY(:c)"), {"c": codes}
                )
                s.execute(text("DELETE FROM department WHERE code = ANY(:c)"), {"c": codes})
                for code in codes:
                    audit.record(s, "delete", "department", code, changes={})
                s.commit()


@pytest.fixture()
def spawned() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts, each the leader of its own process group: any still running
    at the end is killed with its group (only those: a reaped one is left alone)."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for p in procs:
            kill_group(p)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:  # not reaped, so its process group id is still ours
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def gridpatrol_command() -> list[str]:
    """The installed `gridpatrol` console script of the interpreter running the tests."""
    script = Path(sys.executable).with_name("gridpatrol")
    if script.exists():
        return [str(script)]
    found = shutil.which("gridpatrol")
    if found:
        return [found]
    return [sys.executable, "-c", "from backend.cli import main; main(prog_name='gridpatrol')"]


# --------------------------------------------------------------------------- helpers


def emit_committed(sessions, code: str, n: int) -> list[uuid.UUID]:
    with sessions() as s:
        ids = [
            outbox.emit(s, code, "referral.created", {"referral_id": i, "摘要": "无照经营"})
            for i in range(n)
        ]
        s.commit()
    return ids


def rows(sessions, code: str) -> dict[str, Any]:
    """event id -> (status, attempts, last_error, next_attempt_at) of a department's events."""
    with sessions() as s:
        return {
            str(r.event_id): r
            for r in s.execute(
                text(
                    "SELECT event_id, status, attempts, last_error, next_attempt_at "
                    "FROM outbox_event WHERE department_code = :c ORDER BY id"
                ),
                {"c": code},
            ).all()
        }


def db_now(sessions) -> datetime:
    with sessions() as s:
        return s.scalar(text("SELECT clock_timestamp()"))


# --------------------------------------------------------------------------- the tests


def test_a_receiver_failing_twice_gets_every_event_once(sessions, department, receivers):
    receiver = receivers(fail_first=2)
    code = department(receiver.url)
    ids = [str(i) for i in emit_committed(sessions, code, 20)]

    # `deliver_due(now=...)` stands in for the database clock when choosing what is due, so
    # moving `now` past each retry's backoff makes it due without waiting (30 s and more).
    when: datetime | None = None
    rounds: list[dict[str, int]] = []
    for _ in range(10):
        rounds.append(outbox.deliver_due(sessions, department=code, now=when))
        if len(rounds) == 1:
            # the first round: two answered 500 and wait out their backoff; the rest are in
            first = rows(sessions, code)
            assert rounds[0]["claimed"] == 20 and rounds[0]["retrying"] == 2, rounds
            assert len(receiver.failed) == 2 and len(set(receiver.failed)) == 2
            for event_id in receiver.failed:
                r = first[event_id]
                assert (r.status, r.attempts, r.last_error) == ("pending", 1, "HTTP 500")
                assert (r.next_attempt_at - db_now(sessions)).total_seconds() >= (
                    outbox.backoff_s(1, jitter=False) - 5
                )
            # not due yet at the real clock
            assert outbox.deliver_due(sessions, department=code)["claimed"] == 0
        pending = [
            r.next_attempt_at for r in rows(sessions, code).values() if r.status == "pending"
        ]
        if not pending:
            break
        when = min(pending) + timedelta(seconds=1)
    else:
        pytest.fail(f"events still pending after {len(rounds)} rounds: {rounds}")

    final = rows(sessions, code)
    assert set(final) == set(ids)
    assert Counter(r.status for r in final.values()) == {"delivered": 20}
    assert all(r.last_error is None for r in final.values())
    # every event id arrived, each stored once, all signatures good
    assert set(receiver.stored) == set(ids) and len(receiver.stored) == 20
    assert receiver.duplicates == [] and receiver.unverified == [] and receiver.mismatched == []
    # raw hits exceed the 20 events by exactly the 2 failures, which were retried
    hits = Counter(receiver.hits)
    assert len(receiver.hits) == 22
    assert {i for i, n in hits.items() if n == 2} == set(receiver.failed)
    # the failed attempts are counted on their rows: attempts == requests received, per event
    assert {i: r.attempts for i, r in final.items()} == dict(hits)
    assert sorted(r.attempts for r in final.values()) == [1] * 18 + [2] * 2


def test_killing_the_runner_mid_batch_loses_nothing(
    sessions, database_url, tmp_path, department, receivers, spawned
):
    receiver = receivers(delay=0.3)  # slow enough to kill the runner mid-batch
    code = department(receiver.url)
    ids = [str(i) for i in emit_committed(sessions, code, 30)]

    log_path = tmp_path / "outbox-run.log"
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"}
    command = [*gridpatrol_command(), "outbox", "run", "--batch", "30", "--department", code]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed as a whole
        )
    spawned.append(proc)
    try:

        def runner_log() -> str:
            return log_path.read_text(errors="replace")

        wait_until(
            lambda: receiver.seen() >= 4 or proc.poll() is not None,
            what="the runner's first requests",
        )
        assert proc.poll() is None, f"the runner exited early ({proc.returncode}):\n{runner_log()}"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        kill_group(proc)
    assert proc.returncode == -signal.SIGKILL
    seen_at_kill = receiver.seen()
    assert 4 <= seen_at_kill < 30, seen_at_kill  # mid-batch: some sent, most not
    receiver.delay = 0.01  # the rest need not be slow
    wait_until(receiver.idle, what="the request in flight at the kill")  # it finishes anyway

    after_kill = rows(sessions, code)
    delivered_by_runner = {i for i, r in after_kill.items() if r.status == "delivered"}
    assert Counter(r.status for r in after_kill.values()) == {
        "delivered": len(delivered_by_runner),
        "pending": 30 - len(delivered_by_runner),
    }
    # the runner had leased its whole batch (attempts counted, due only after the lease)
    assert all(r.attempts == 1 for r in after_kill.values())
    assert outbox.deliver_due(sessions, department=code)["claimed"] == 0

    # The lease runs out: `now` stands in for the database clock, LEASE_S (60 s) on, instead
    # of sleeping a minute. (The CLI has no option to shorten the lease.)
    when = db_now(sessions) + timedelta(seconds=outbox.LEASE_S + 1)
    for _ in range(5):
        counts = outbox.deliver_due(sessions, department=code, now=when)
        if not counts["claimed"]:
            break
        assert counts["retrying"] == counts["dead"] == counts["stale"] == 0, counts
    else:
        pytest.fail("the recovery runs did not finish")
    wait_until(receiver.idle, what="the receiver to finish")

    final = rows(sessions, code)
    assert Counter(r.status for r in final.values()) == {"delivered": 30}
    # nothing lost: every emitted event reached the receiver, which holds each once
    hits = Counter(receiver.hits)
    assert set(hits) == set(ids)
    assert set(receiver.stored) == set(ids) and len(receiver.stored) == 30
    assert receiver.unverified == [] and receiver.failed == [] and receiver.mismatched == []
    # at least once: only the event in flight at the kill (if any) can have arrived twice —
    # the runner posts one at a time, and what it recorded as delivered is never resent
    twice = sorted(i for i, n in hits.items() if n > 1)
    assert len(twice) <= 1 and all(hits[i] == 2 for i in twice), hits
    assert sorted(receiver.duplicates) == twice
    assert not set(twice) & delivered_by_runner
    assert len(receiver.hits) == 30 + len(twice)
    # attempts: 1 for what the runner delivered; 2 for what it had leased (its claim counted)
    assert {i: r.attempts for i, r in final.items()} == {
        i: 1 if i in delivered_by_runner else 2 for i in ids
    }
    print(
        f"\nkilled after {seen_at_kill} request(s); the runner recorded "
        f"{len(delivered_by_runner)} delivered; delivered twice: {len(twice)}; "
        f"raw hits {len(receiver.hits)}; stored {len(receiver.stored)}; "
        f"attempts {dict(sorted(Counter(r.attempts for r in final.values()).items()))}"
    )
