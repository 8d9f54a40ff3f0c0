"""http: the whole request path (routing, auth, validation, service, JSON) via Flask's test client.

No network and no WSGI server: this is the per-request cost inside one process, one request at a
time. The JSON access log is formatted as in production but written to /dev/null.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from bench_common import BENCH_PASSWORD, BenchContext, Figures, latency_figures
from bench_locate import random_points

from backend.app import create_app
from backend.config import Settings
from backend.services.users import create_user

LOCATE_REQUESTS = 500
CELL_PAGE_REQUESTS = 200
PAGE_SIZE = 100
WARMUP = 10


@contextmanager
def quiet_access_log() -> Iterator[None]:
    """Point the app's log handlers at /dev/null for the duration (formatting still happens)."""
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    with open(os.devnull, "w") as sink:
        previous = [h.setStream(sink) for h in handlers]
        try:
            yield
        finally:
            for handler, stream in zip(handlers, previous, strict=True):
                if stream is not None:
                    handler.setStream(stream)


def _timed_get(client: Any, url: str, headers: dict[str, str]) -> float:
    start = time.perf_counter()
    resp = client.get(url, headers=headers)
    body = resp.get_data()
    elapsed = time.perf_counter() - start
    if resp.status_code != 200 or not body:
        raise RuntimeError(f"GET {url} → {resp.status_code}: {body[:200]!r}")
    return elapsed


def run(ctx: BenchContext) -> Figures:
    """p50/p95 of GET /api/v1/grid/locate and GET /api/v1/grid/cells?page_size=100 as admin."""
    settings = Settings(
        database_url=ctx.database_url,
        secret_key=secrets.token_hex(32),
        environment="benchmark",
    )
    app = create_app(settings)  # installs the JSON log handler that quiet_access_log mutes
    with quiet_access_log():
        client = app.test_client()
        username = f"bench-admin-{secrets.token_hex(3)}"
        with ctx.sessions() as session:
            create_user(session, username, BENCH_PASSWORD, "admin")
            session.commit()
        resp = client.post(
            "/api/v1/auth/login", json={"username": username, "password": BENCH_PASSWORD}
        )
        if resp.status_code != 200:
            raise RuntimeError(f"login failed: {resp.status_code} {resp.get_data()[:200]!r}")
        headers = {"Authorization": f"Bearer {resp.get_json()['access_token']}"}

        rng = np.random.default_rng(ctx.seed + 1)
        lon, lat = random_points(ctx.demo_city().outline, LOCATE_REQUESTS + WARMUP, rng)
        urls = [
            f"/api/v1/grid/locate?lon={x:.7f}&lat={y:.7f}"
            for x, y in zip(lon.tolist(), lat.tolist(), strict=True)
        ]
        locate_s = [_timed_get(client, u, headers) for u in urls][WARMUP:]

        pages = -(-len(ctx.demo_city().cells) // PAGE_SIZE)
        page_of = [i % pages + 1 for i in range(CELL_PAGE_REQUESTS + WARMUP)]
        cell_urls = [f"/api/v1/grid/cells?page_size={PAGE_SIZE}&page={p}" for p in page_of]
        cells_s = [_timed_get(client, u, headers) for u in cell_urls][WARMUP:]
        app.extensions["gridpatrol.engine"].dispose()
        app.extensions["gridpatrol.read_engine"].dispose()
    # Pages are requested in turn, 1 … last; the first and last page show what OFFSET costs.
    by_page = list(zip(page_of[WARMUP:], cells_s, strict=True))
    first = [s for p, s in by_page if p == 1]
    last = [s for p, s in by_page if p == pages]
    return {
        **latency_figures("locate", locate_s),
        **latency_figures(f"cells_page{PAGE_SIZE}", cells_s),
        "cells_first_page_p50_ms": round(float(np.median(first)) * 1000, 2),
        "cells_last_page_p50_ms": round(float(np.median(last)) * 1000, 2),
    }
