"""Shared pieces of the benchmarks: the run context, a scratch database, timers, peak RSS."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import resource
import secrets
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from backend.migrate import upgrade
from geo.demo_city import DemoCity

Figure = float | int | str
Figures = dict[str, Figure]
T = TypeVar("T")

TEMPLATE_DB = "gridpatrol_template"
BENCH_PASSWORD = "bench-password-1"  # meets the password policy (10+ chars, letters and digits)


@dataclass
class BenchContext:
    """What every benchmark receives: the scratch database and the demo city once it is built."""

    database_url: str
    engine: Engine
    sessions: sessionmaker[Session]
    seed: int
    city: DemoCity | None = None
    notes: list[str] = field(default_factory=list)

    def demo_city(self) -> DemoCity:
        if self.city is None:
            raise RuntimeError("the grid_build benchmark must run first (it loads the demo city)")
        return self.city


@contextlib.contextmanager
def scratch_database(
    base_url: str, *, keep: bool = False, reuse: str | None = None
) -> Iterator[str]:
    """Create `<dbname>_bench_<random>` from the template, migrate it, drop it on the way out.

    `keep`: leave it in place (its name is printed) for `reuse`, which migrates and yields an
    existing database instead, and never drops it (for iterating on one prepared data set)."""
    base = make_url(base_url)
    admin = create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    if reuse:
        try:
            url = base.set(database=reuse).render_as_string(hide_password=False)
            upgrade(url)
            yield url
        finally:
            admin.dispose()
        return
    name = f"{base.database}_bench_{secrets.token_hex(4)}"
    try:
        with admin.connect() as conn:
            has_template = conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :t"), {"t": TEMPLATE_DB}
            )
            if not has_template:
                raise RuntimeError(f"template database {TEMPLATE_DB!r} is missing (run make db)")
            conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE {TEMPLATE_DB}'))
        url = base.set(database=name).render_as_string(hide_password=False)
        try:
            upgrade(url)
            yield url
        finally:
            if keep:
                print(f"scratch database kept: {name}")
            else:
                _drop(admin, name)
    finally:
        admin.dispose()


def _drop(admin: Engine, name: str) -> None:
    """FORCE first (ends our own leftover sessions); a plain DROP, retried, when an autovacuum
    worker (which a non-superuser may not signal) is busy in the database."""
    for attempt in range(100):
        sql = f'DROP DATABASE IF EXISTS "{name}"' + (" WITH (FORCE)" if attempt == 0 else "")
        try:
            with admin.connect() as conn:
                conn.execute(text(sql))
            return
        except Exception:
            if attempt == 99:
                raise
            time.sleep(0.1)


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """(wall seconds, result) of one call."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall seconds over `repeats` calls."""
    return statistics.median(timed(fn)[0] for _ in range(repeats))


def latency_figures(prefix: str, samples_s: list[float]) -> Figures:
    """p50/p95/p99 in ms and the sequential rate of a list of per-call latencies."""
    ms = np.asarray(samples_s) * 1000.0
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {
        f"{prefix}_n": len(samples_s),
        f"{prefix}_p50_ms": round(float(p50), 2),
        f"{prefix}_p95_ms": round(float(p95), 2),
        f"{prefix}_p99_ms": round(float(p99), 2),
        f"{prefix}_per_s": round(len(samples_s) / float(np.sum(samples_s)), 1),
    }


def _status_kb(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakRss:
    """Peak growth of the resident set over a block, in MiB.

    Freed memory is first handed back to the OS (gc + glibc malloc_trim) and, on Linux, the
    high-water mark is reset (`echo 5 > /proc/self/clear_refs`), so the figure is the block's own
    peak even when an earlier step used more memory. Elsewhere it falls back to
    the growth of `ru_maxrss`, which is only a lower bound.
    """

    def __init__(self) -> None:
        self.delta_mib = 0.0
        self.exact = False
        self._start_kb = 0

    def __enter__(self) -> PeakRss:
        _release_free_memory()
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.exact = _status_kb("VmHWM") is not None
        except OSError:
            self.exact = False
        rss = _status_kb("VmRSS") if self.exact else None
        self._start_kb = rss if rss is not None else _maxrss_kb()
        return self

    def __exit__(self, *exc: object) -> None:
        peak = _status_kb("VmHWM") if self.exact else None
        end_kb = peak if peak is not None else _maxrss_kb()
        self.delta_mib = round(max(0, end_kb - self._start_kb) / 1024.0, 1)


def _maxrss_kb() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


def _release_free_memory() -> None:
    """Collect garbage and return free heap pages to the OS (glibc only; a no-op elsewhere)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
