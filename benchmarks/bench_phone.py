"""phone: the phone API under load, served by gunicorn, driven by locust on loopback.

    set -a; . .local/env; set +a
    .venv/bin/python benchmarks/bench_phone.py [--entities 1500000] [--seconds 30] [--users 20]
        [--gunicorn-workers N] [--also gthread:2x4,sync:2] [--wait-quiet 300] [--retry-busy 2]
        [--json]

In a scratch database (created from the owner's URL, dropped at the end): the demo city and
its accounts (`load_demo`), N synthetic market entities COPY'd in (status 存续, established
before 2025, a point inside the city; ~80 % have filed the 2025 annual report) and placed
(`placement.place_all`). Then:

1. the 2025 annual-report campaign (`task_rules.annual_report_campaign`, start 2026-03-01) is
   timed: ~20 % of the entities get an `annual_report_prompt`, assigned to their cell's worker
   (~100 per worker): the near-me data set;
2. the real app (`backend.wsgi:app`, as the least-privileged app role) and a bare Flask app
   answering fixed JSON (`benchmarks/floor_app.py`, the framework's floor) are served in turn by
   gunicorn on 127.0.0.1 under the same settings; `--users` different workers, logged in
   first (argon2 is slow on purpose: not timed), call `GET /api/mobile/v1/tasks?lon&lat&crs=gcj02`
   from points inside their own cells, back to back, for `--seconds`;
3. submissions/s: tasks are put in the logged-in workers' hands, checked in (SQL, with audit
   events), and submitted through `POST /api/mobile/v1/submissions` (a new UUID each), then
   again with a distinct ~300 KB JPEG uploaded first (`POST /api/mobile/v1/attachments`).

Load generator, gunicorn and PostgreSQL share the machine's cores; the CPU each used is
printed, and so is what other jobs on the machine took (each timed step first waits for a quiet
machine; a near-me or floor run disturbed by other jobs is run again). Every server started is
stopped (its process group) and the scratch database dropped, also on errors. Figures only: the
exit status is non-zero only when something crashed. Results: benchmarks/README.md, "phone".
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import math
import os
import platform
import pstats
import resource
import secrets
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import requests
import shapely
from bench_common import scratch_database
from bench_http import quiet_access_log
from bench_locate import random_points
from PIL import Image
from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url

from backend.app import create_app
from backend.config import Settings
from backend.db import make_engine, make_sessionmaker
from backend.services import placement, task_rules, tasks
from backend.services.demo import load_demo
from geo import crs as geocrs
from geo.demo_city import build_demo_city
from mobile_api.tasks import NearTaskSchema

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
BIN = Path(sys.executable).parent  # the virtualenv's bin: gunicorn and locust live there
OUT_DIR = BENCH / "out"
DEMO_PASSWORD = os.environ.get("GRIDPATROL_DEMO_PASSWORD", "gridpatrol-demo-2026")
SEED = 20171109
YEAR = 2025
CAMPAIGN_START = date(2026, 3, 1)
FILED_SHARE = 0.8  # entities that filed the 2025 annual report: no task for them
COPY_CHUNK = 250_000
POINTS_PER_WORKER = 50  # where each worker stands, in turn, inside its cell
PHOTO_BYTES = 300 * 1024
BASE_PHOTOS = 16  # distinct noise images; each upload adds its own JPEG comment (distinct bytes)
# Tasks handed to each logged-in worker for the submission runs: enough for these rates.
SUBMIT_POOL_RATE = 600  # per second, plain submissions (target 300/s)
PHOTO_POOL_RATE = 200  # per second, submissions with a photo
BUSY_OTHER_CORES = 0.25  # other jobs' CPU during a run above which it is run again
TARGETS = {"near_p95_ms": 50.0, "near_vs_floor": 0.40, "submit_per_s": 300.0, "campaign_s": 60.0}
# gunicorn settings common to every run (as the Dockerfile; no access log: the app logs JSON)
GUNICORN_COMMON = [
    "--timeout",
    "120",
    "--limit-request-line",
    "8190",
    "--limit-request-field_size",
    "16380",
]


@dataclass(frozen=True)
class Setting:
    """A gunicorn worker setting: `sync:5`, `gthread:2x4` (workers × threads)."""

    worker_class: str
    workers: int
    threads: int = 1

    @classmethod
    def parse(cls, spec: str) -> Setting:
        kind, _, count = spec.partition(":")
        workers, _, threads = count.partition("x")
        if kind not in ("sync", "gthread") or not workers.isdigit():
            raise argparse.ArgumentTypeError(f"not a setting (sync:N or gthread:NxT): {spec!r}")
        return cls(kind, int(workers), int(threads or (4 if kind == "gthread" else 1)))

    @property
    def label(self) -> str:
        if self.worker_class == "gthread":
            return f"gthread {self.workers}x{self.threads}"
        return f"sync {self.workers}"

    def args(self) -> list[str]:
        out = ["--worker-class", self.worker_class, "--workers", str(self.workers)]
        return [*out, "--threads", str(self.threads)] if self.worker_class == "gthread" else out


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    owner_base = os.environ.get("GRIDPATROL_MIGRATION_URL") or os.environ.get("DATABASE_URL")
    app_base = os.environ.get("DATABASE_URL") or owner_base
    if not owner_base or not app_base:
        print("DATABASE_URL is not set: `set -a; . .local/env; set +a` first.")
        return 2
    settings = [Setting("sync", args.gunicorn_workers), *args.also]
    # Fail fast, before minutes of set-up, when the app does not even import.
    create_app(Settings(database_url=app_base, secret_key=secrets.token_hex(32)))
    command = _command(app_base)
    print(f"command: {command}")
    started = time.perf_counter()
    report: dict[str, Any] = {"command": command, "machine": _machine_static()}
    report["machine"]["loadavg_start"] = _loadavg()
    report["machine"]["cpu_probe_ms_start"] = _cpu_probe_ms()
    print(
        f"load average at start: {report['machine']['loadavg_start']}; "
        f"CPU probe {report['machine']['cpu_probe_ms_start']} ms"
    )
    with (
        scratch_database(owner_base, keep=args.keep_db, reuse=args.reuse_db) as owner_url,
        tempfile.TemporaryDirectory() as tmp_dir,
    ):
        tmp = Path(tmp_dir)
        dbname = make_url(owner_url).database
        app_url = make_url(app_base).set(database=dbname).render_as_string(hide_password=False)
        owner = make_engine(owner_url)
        app_engine = make_engine(app_url)
        try:
            report["machine"].update(_machine_db(owner))
            _grant_app_role(owner, app_url, owner_url)
            run = PhoneBench(args, owner, app_engine, owner_url, app_url, tmp, settings, report)
            run.run()
        finally:
            app_engine.dispose()
            owner.dispose()
    report["machine"]["loadavg_end"] = _loadavg()
    report["machine"]["cpu_probe_ms_end"] = _cpu_probe_ms()
    report["total_s"] = round(time.perf_counter() - started, 1)
    _print_table(report)
    if args.json:
        OUT_DIR.mkdir(exist_ok=True)
        path = OUT_DIR / f"phone-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
        path.write_text(json.dumps(report, ensure_ascii=False, indent=2, default=str) + "\n")
        print(f"JSON: {path}")
    return 0


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    cores = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--entities", type=int, default=1_500_000)
    parser.add_argument("--seconds", type=int, default=30, help="length of each load run")
    parser.add_argument("--users", type=int, default=20, help="concurrent simulated workers")
    parser.add_argument(
        "--gunicorn-workers",
        type=int,
        default=2 * cores + 1,
        help="sync workers of the main setting (default 2 × cores + 1); every figure is "
        "measured with it",
    )
    parser.add_argument(
        "--also",
        type=lambda s: [Setting.parse(x) for x in s.split(",") if x.strip()],
        default=[Setting("gthread", 2, 4), Setting("sync", cores)],
        help="more settings for near-me and the floor, e.g. 'gthread:2x4,sync:2' ('' for none)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=180.0,
        help="before each timed step, wait up to this many seconds for the machine to be idle "
        "(other jobs below 0.3 cores over 3 s); 0: do not wait",
    )
    parser.add_argument(
        "--retry-busy",
        type=int,
        default=2,
        help="run a near-me or floor run again, up to this many times, when other jobs took "
        f"more than {BUSY_OTHER_CORES} cores during it",
    )
    parser.add_argument("--json", action="store_true", help="also write benchmarks/out/*.json")
    parser.add_argument(
        "--keep-db", action="store_true", help="keep the scratch database (its name is printed)"
    )
    parser.add_argument(
        "--reuse-db",
        metavar="NAME",
        help="run on a database kept by --keep-db: no set-up and no campaign (for iterating on "
        "the code; the figures of record come from a fresh database)",
    )
    parser.add_argument("--no-submissions", action="store_true", help="near-me and the floor only")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="near-me, floor and submission runs of the main setting, repeated in turn; the "
        "figures of record are their medians (one run moves by ±20 %% on a shared VM)",
    )
    return parser.parse_args(argv)


class PhoneBench:
    def __init__(
        self,
        args: argparse.Namespace,
        owner: Engine,
        app_engine: Engine,
        owner_url: str,
        app_url: str,
        tmp: Path,
        settings: list[Setting],
        report: dict[str, Any],
    ) -> None:
        self.args = args
        self.owner = owner
        self.app_engine = app_engine
        self.owner_url = owner_url
        self.app_url = app_url
        self.tmp = tmp
        self.settings = settings
        self.report = report
        self.dbname = make_url(owner_url).database
        self.secret = os.environ.get("GRIDPATROL_SECRET_KEY") or secrets.token_hex(32)
        self.rng = np.random.default_rng(SEED + 7)
        self.server_env = {
            **os.environ,
            "DATABASE_URL": app_url,
            "GRIDPATROL_MIGRATION_URL": owner_url,
            "GRIDPATROL_SECRET_KEY": self.secret,
            "GRIDPATROL_ENV": "production",
            "GRIDPATROL_STORAGE_ROOT": str(tmp / "attachments"),
            "PYTHONPATH": str(BENCH),  # floor_app
        }
        self.server: subprocess.Popen[bytes] | None = None
        self.workers: list[dict[str, Any]] = []
        self.runs: list[dict[str, Any]] = []

    # ---------------------------------------------------------------------------------------
    def run(self) -> None:
        if self.args.reuse_db:
            print(f"reusing database {self.dbname}: no set-up, no campaign")
        else:
            self.report["setup"] = self.setup()
            self.report["campaign"] = self.campaign()
            self.vacuum()
        self.workers = self.pick_workers()
        self.report["workers"] = {
            "users": len(self.workers),
            "tasks_in_hand_min": min(w["held"] for w in self.workers),
            "tasks_in_hand_median": statistics.median(w["held"] for w in self.workers),
            "tasks_in_hand_max": max(w["held"] for w in self.workers),
        }
        print(f"workers: {self.report['workers']}")
        main = self.settings[0]
        plan = [(main, r) for r in range(self.args.rounds)] + [(s, 0) for s in self.settings[1:]]
        for i, (setting, round_) in enumerate(plan):
            with self.serve("backend.wsgi:app", setting, f"app-{i}") as base:
                self.login(base)
                self.warm_up(base)
                self.runs.append({**self.load_clean("near", base, setting), "round": round_})
            with self.serve(
                "floor_app:app", setting, f"floor-{i}", probe="/api/mobile/v1/tasks"
            ) as b:
                self.runs.append({**self.load_clean("floor", b, setting), "round": round_})
            if i == 0:
                self.report["profile"] = self.profile()
        if self.args.no_submissions:
            self.report["runs"] = self.runs
            self.report["summary"] = _summary(self.runs, main.label)
            return
        self.report["submit_pool"] = self.prepare_submissions()
        photos = self.make_photos()
        with self.serve("backend.wsgi:app", main, "app-submit") as base:
            self.login(base)
            for round_ in range(self.args.rounds):
                plain = self.load("submit", base, main, round_=round_)
                self.runs.append({**plain, "round": round_})
                photo = self.load("photo", base, main, photos=photos, round_=round_)
                self.runs.append({**photo, "round": round_})
        self.report["summary"] = _summary(self.runs, main.label)
        self.report["runs"] = self.runs
        self.report["after"] = self.check_database()

    # ---------------------------------------------------------------------------------------
    def setup(self) -> dict[str, Any]:
        out: dict[str, Any] = {"entities": self.args.entities}
        sessions = make_sessionmaker(self.owner)
        t0 = time.perf_counter()
        with sessions() as session:
            result = load_demo(session, DEMO_PASSWORD, seed=SEED)
            session.commit()
        out["load_demo_s"] = round(time.perf_counter() - t0, 2)
        out["cells"] = result.cells
        print(f"demo city: {result.towns} towns, {result.cells} cells ({out['load_demo_s']} s)")
        outline = build_demo_city(seed=SEED).outline
        out["copy_entities_s"] = round(self.load_entities(outline), 2)
        print(f"entities: {self.args.entities} COPY'd in {out['copy_entities_s']} s")
        t0 = time.perf_counter()
        with sessions() as session:
            session.execute(text("ANALYZE market_entity"))
            placed = placement.place_all(session)
            session.commit()
        out["place_all_s"] = round(time.perf_counter() - t0, 2)
        out["placed"] = placed["placed"]
        print(f"placed: {placed} ({out['place_all_s']} s)")
        with self.owner.connect() as conn:
            conn.execute(text("ANALYZE market_entity"))
            conn.execute(text("ANALYZE entity_placement"))
            conn.commit()
            out["filed_2025"] = int(
                conn.scalar(
                    text("SELECT count(*) FROM market_entity WHERE 2025 = ANY(annual_report_years)")
                )
                or 0
            )
        return out

    def load_entities(self, outline: Any) -> float:
        """COPY synthetic entities (as bench_assign does), each with its establishment date and
        whether it filed the 2025 annual report, and one `create` audit event each, in one
        transaction; the trigram index is built once at the end, as a bulk load would."""
        n = self.args.entities
        rng = np.random.default_rng(SEED + 4)
        xs, ys = random_points(outline, n, rng)
        days = (date(2024, 12, 31) - date(2000, 1, 1)).days
        established = (np.datetime64("2000-01-01") + rng.integers(0, days + 1, n)).astype(str)
        filed = rng.random(n) < FILED_SHARE
        started = time.perf_counter()
        raw: Any = self.owner.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute("DROP INDEX IF EXISTS ix_market_entity_search_trgm")
            for start in range(0, n, COPY_CHUNK):
                buf = io.StringIO()
                for i in range(start, min(start + COPY_CHUNK, n)):
                    buf.write(
                        f"9144190000{i:08d}\t商户{i}\t东莞市测试路{i % 997}号\t"
                        f"SRID=4490;POINT({xs[i]:.7f} {ys[i]:.7f})\tmanual\t{established[i]}\t"
                        f"{'{2025}' if filed[i] else '{}'}\n"
                    )
                buf.seek(0)
                cur.copy_expert(
                    "COPY market_entity (uscc, name, registered_address, geom, location_source, "
                    "established_on, annual_report_years) FROM STDIN",
                    buf,
                )
            cur.execute(
                "INSERT INTO audit_event (actor_username, actor_role, action, object_type, "
                "object_id, changes) SELECT 'benchmark', 'system', 'create', 'entity', id::text, "
                "'{}' FROM market_entity"
            )
            raw.commit()
            cur.execute(
                "CREATE INDEX ix_market_entity_search_trgm ON market_entity "
                "USING gin ((name || ' ' || registered_address) gin_trgm_ops)"
            )
            raw.commit()
        finally:
            raw.close()
        return time.perf_counter() - started

    def campaign(self) -> dict[str, Any]:
        """The 2025 annual-report campaign as the app role (as `gridpatrol tasks generate`)."""
        busy = _wait_quiet(self.args.wait_quiet)
        with make_sessionmaker(self.app_engine)() as session:
            t0 = time.perf_counter()
            made = task_rules.annual_report_campaign(session, YEAR, start=CAMPAIGN_START)
            session.commit()
            seconds = time.perf_counter() - t0
            by_status = task_rules.counts(session)
            session.rollback()
        n = made["annual_report_prompt"]
        out = {
            "tasks": n,
            "seconds": round(seconds, 2),
            "tasks_per_s": int(n / seconds) if seconds else 0,
            "by_status": by_status,
            "machine_busy_cores_before": busy,
        }
        print(f"campaign: {out}")
        return out

    def vacuum(self) -> None:
        """VACUUM ANALYZE what the load and the campaign wrote (autovacuum would, minutes later):
        the load runs then see settled statistics and no autovacuum of their own tables."""
        t0 = time.perf_counter()
        with self.owner.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in ("patrol_task", "market_entity", "entity_placement", "audit_event"):
                conn.execute(text(f"VACUUM (ANALYZE) {table}"))
        print(f"VACUUM ANALYZE: {time.perf_counter() - t0:.1f} s (untimed set-up)")

    def pick_workers(self) -> list[dict[str, Any]]:
        """`--users` cells' primary workers holding at least 50 tasks, chosen at random, each
        with points inside its own cell in GCJ-02 (the phone's CRS)."""
        with self.owner.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT u.id, u.username, w.cell_code, ST_AsBinary(c.geom) AS wkb, "
                    "(SELECT count(*) FROM patrol_task t WHERE t.assignee_id = u.id AND t.status "
                    "IN ('assigned', 'accepted', 'in_progress', 'returned')) AS held "
                    "FROM cell_worker w JOIN app_user u ON u.id = w.user_id "
                    "JOIN grid_cell c ON c.code = w.cell_code WHERE w.duty = 'primary' "
                    "ORDER BY u.id"
                )
            ).all()
        # (at most 200: a reused database's earlier submission pools are not near-me's set)
        candidates = [r for r in rows if 50 <= r.held <= 200] or list(rows)
        chosen = self.rng.choice(len(candidates), size=self.args.users, replace=False)
        workers = []
        for k in sorted(int(i) for i in chosen):
            r = candidates[k]
            cell = shapely.from_wkb(bytes(r.wkb))
            xs, ys = random_points(cell, POINTS_PER_WORKER, self.rng)
            glon, glat = geocrs.from_cgcs2000_xy("gcj02", xs, ys)
            workers.append(
                {
                    "id": int(r.id),
                    "username": r.username,
                    "cell": r.cell_code,
                    "held": int(r.held),
                    "points_cgcs": list(zip(xs.tolist(), ys.tolist(), strict=True)),
                    "points": [
                        [round(x, 7), round(y, 7)]
                        for x, y in zip(
                            np.asarray(glon).tolist(), np.asarray(glat).tolist(), strict=True
                        )
                    ],
                }
            )
        return workers

    # ---------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def serve(
        self, app: str, setting: Setting, name: str, probe: str = "/healthz"
    ) -> Iterator[str]:
        """gunicorn serving `app` on a free loopback port, in its own process group; stopped
        (TERM, then KILL) on the way out, whatever happened."""
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        cmd = [
            str(BIN / "gunicorn"),
            "--bind",
            f"127.0.0.1:{port}",
            *setting.args(),
            *GUNICORN_COMMON,
            app,
        ]
        log_path = self.tmp / f"{name}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                env=self.server_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.server = proc
        try:
            _wait_ready(proc, base + probe, log_path)
            print(f"\nserving {app} with gunicorn {setting.label} on {base} (pid {proc.pid})")
            yield base
        finally:
            _stop(proc)
            self.server = None
            _summarise_log(log_path)

    def login(self, base: str) -> None:
        """Log every chosen worker in (untimed: argon2 is slow on purpose)."""
        t0 = time.perf_counter()
        for w in self.workers:
            for _ in range(20):
                resp = requests.post(
                    f"{base}/api/mobile/v1/auth/login",
                    json={"username": w["username"], "password": DEMO_PASSWORD},
                    timeout=30,
                )
                if resp.status_code != 429:
                    break
                time.sleep(float(resp.headers.get("Retry-After", "1")))
            if resp.status_code != 200:
                raise RuntimeError(f"login {w['username']}: {resp.status_code} {resp.text[:300]}")
            w["token"] = resp.json()["access_token"]
        print(f"logged in {len(self.workers)} workers in {time.perf_counter() - t0:.1f} s")

    def warm_up(self, base: str) -> None:
        """Two near-me calls per worker before the timed run (connections, caches); they also
        check the answer."""
        for w in self.workers:
            for lon, lat in w["points"][:2]:
                resp = requests.get(
                    f"{base}/api/mobile/v1/tasks",
                    params={"lon": lon, "lat": lat, "crs": "gcj02"},
                    headers={"Authorization": f"Bearer {w['token']}"},
                    timeout=30,
                )
                if resp.status_code != 200:
                    raise RuntimeError(f"near-me warm-up: {resp.status_code} {resp.text[:300]}")
                self.check_answer(w, resp)

    def check_answer(self, w: dict[str, Any], resp: requests.Response) -> None:
        """A near-me answer holds min(50, tasks in hand) tasks of this worker, nearest first,
        and X-Pagination's total is the number in hand."""
        body = resp.json()
        problems = []
        pagination = resp.raw.headers.getlist("X-Pagination") if resp.raw else []
        if len(pagination) != 1:
            problems.append(f"X-Pagination sent {len(pagination)} times: {pagination}")
        try:
            total = json.loads(pagination[0]).get("total") if pagination else None
        except ValueError:
            total = None
            problems.append(f"X-Pagination is not JSON: {pagination[0]!r}")
        expected_keys = set(NearTaskSchema().fields)
        keys = set().union(*(t.keys() for t in body)) if body else expected_keys
        if keys != expected_keys:
            problems.append(
                f"item keys differ from NearTaskSchema: extra {sorted(keys - expected_keys)}, "
                f"missing {sorted(expected_keys - keys)}"
            )
        distances = [t.get("distance_m") for t in body]
        if len(body) != min(50, w["held"]):
            problems.append(f"{len(body)} items, expected {min(50, w['held'])}")
        if total != w["held"]:
            problems.append(f"X-Pagination total {total}, expected {w['held']}")
        if any(d is None for d in distances) or distances != sorted(distances):
            problems.append("not ordered by distance")
        with self.owner.connect() as conn:
            others = conn.scalar(
                text(
                    "SELECT count(*) FROM patrol_task WHERE id = ANY(:ids) "
                    "AND assignee_id IS DISTINCT FROM :w"
                ),
                {"ids": [t.get("id") for t in body], "w": w["id"]},
            )
        if others:
            problems.append(f"{others} tasks of someone else")
        if problems:
            self.report.setdefault("answer_problems", []).append(problems)
            if len(self.report["answer_problems"]) <= 3:
                print(f"  near-me answer check FAILED for {w['username']}: {'; '.join(problems)}")

    def load_clean(self, mode: str, base: str, setting: Setting) -> dict[str, Any]:
        """`load`, run again (up to --retry-busy times) when other jobs on the machine took
        more than 0.25 cores during it; the discarded attempts are kept in the result."""
        discarded = []
        for _ in range(self.args.retry_busy):
            result = self.load(mode, base, setting)
            if result["cpu"]["other_cores"] <= BUSY_OTHER_CORES:
                break
            print(f"  (other jobs used {result['cpu']['other_cores']} cores: run again)")
            discarded.append(
                {
                    "per_s": {k: v["ok_per_s"] for k, v in result["requests"].items()},
                    "other_cores": result["cpu"]["other_cores"],
                }
            )
        else:
            result = self.load(mode, base, setting)
        if discarded:
            result["discarded_busy_attempts"] = discarded
        return result

    def load(
        self,
        mode: str,
        base: str,
        setting: Setting,
        photos: list[str] | None = None,
        round_: int = 0,
    ) -> dict[str, Any]:
        """One locust run (`--users` users, all spawned at once, `--seconds` long)."""
        users, seconds = self.args.users, self.args.seconds
        config = {
            "mode": mode,
            "out": str(self.tmp / f"samples-{mode}-{len(self.runs)}.json"),
            "photos": photos or [],
            "workers": [
                {
                    "token": w["token"],
                    "points": w["points"],
                    "tasks": w[f"pool_{mode}"][round_] if f"pool_{mode}" in w else [],
                }
                for w in self.workers
            ],
        }
        config_path = self.tmp / f"locust-{mode}-{len(self.runs)}.json"
        config_path.write_text(json.dumps(config))
        cmd = [
            str(BIN / "locust"),
            "-f",
            str(BENCH / "locustfile_phone.py"),
            "--headless",
            "-u",
            str(users),
            "-r",
            str(users),
            "-t",
            f"{seconds}s",
            "--stop-timeout",
            "30",
            "--host",
            base,
            "--csv",
            str(self.tmp / f"locust-{mode}-{len(self.runs)}"),
            "--only-summary",
            "--loglevel",
            "WARNING",
        ]
        shown = shlex.join([os.path.relpath(cmd[0]), *cmd[1:]]).replace(str(self.tmp), "$TMP")
        print(f"{mode}: {shown}")
        busy = _wait_quiet(self.args.wait_quiet)
        loadavg = _loadavg()
        probe = CpuProbe(self.server, self.owner, self.dbname)
        before = probe.snapshot()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(
            cmd,
            cwd=REPO,
            env={**os.environ, "BENCH_PHONE_CONFIG": str(config_path)},
            capture_output=True,
            text=True,
            timeout=seconds + 180,
        )
        wall = time.perf_counter() - t0
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = probe.delta(before, wall)
        locust_cpu_s = ru1.ru_utime - ru0.ru_utime + ru1.ru_stime - ru0.ru_stime
        cpu["locust_cores"] = round(locust_cpu_s / wall, 2)
        cpu["other_cores"] = round(
            cpu["machine_busy_cores"]
            - cpu["locust_cores"]
            - cpu["gunicorn_cores"]
            - cpu["postgres_cores"],
            2,
        )
        out_path = Path(config["out"])
        if not out_path.exists():
            raise RuntimeError(
                f"locust wrote no samples (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
            )
        data = json.loads(out_path.read_text())
        if not data["samples"]:
            raise RuntimeError(
                f"locust made no requests (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
            )
        result = {"mode": mode, "setting": setting.label, "users": users, "seconds": seconds}
        result["requests"] = {
            name: _latency(rows, seconds) for name, rows in sorted(data["samples"].items())
        }
        # CPU per request (all requests of the run, each photo submission counting twice)
        n_all = sum(r["n"] for r in result["requests"].values())
        cpu["cpu_ms_per_request"] = {
            "gunicorn": round(cpu.pop("gunicorn_cpu_s") * 1000 / n_all, 2),
            "postgres": round(cpu.pop("postgres_cpu_s") * 1000 / n_all, 2),
            "locust": round(locust_cpu_s * 1000 / n_all, 2),
        }
        result["cpu"] = cpu
        result["loadavg_start"] = loadavg
        result["machine_busy_cores_before"] = busy
        if data["items"]:
            items = data["items"]
            result["items_checked"] = len(items)
            result["items_min_median_max"] = [min(items), statistics.median(items), max(items)]
        if data["out_of_tasks"]:
            result["users_out_of_tasks"] = len(data["out_of_tasks"])
        if data["errors"]:
            result["first_errors"] = data["errors"]
        _print_run(result)
        return result

    # ---------------------------------------------------------------------------------------
    def profile(self) -> dict[str, Any]:
        """Where a near-me request's time goes, one request at a time in this process: the
        service call (`tasks.near_me` as the endpoint calls it) and the whole request through
        Flask's test client (routing, auth, serialisation, ETag); EXPLAIN ANALYZE of every
        statement one request runs; a cProfile of 100 requests."""
        out: dict[str, Any] = {}
        sessions = make_sessionmaker(self.app_engine)
        calls = [(w, p) for p in range(10) for w in self.workers]
        service = []
        with sessions() as session:
            for w, p in calls:
                x, y = w["points_cgcs"][p]
                t0 = time.perf_counter()
                tasks.near_me(session, w["id"], x, y)
                service.append(time.perf_counter() - t0)
                session.rollback()
        out.update(_percentiles("service_near_me", service))

        app = create_app(
            Settings(database_url=self.app_url, secret_key=self.secret, environment="benchmark")
        )
        engine = app.extensions["gridpatrol.engine"]
        with quiet_access_log():
            client = app.test_client()

            def request(w: dict[str, Any], p: int) -> float:
                lon, lat = w["points"][p]
                t0 = time.perf_counter()
                resp = client.get(
                    f"/api/mobile/v1/tasks?lon={lon}&lat={lat}&crs=gcj02",
                    headers={"Authorization": f"Bearer {w['token']}"},
                )
                resp.get_data()
                elapsed = time.perf_counter() - t0
                if resp.status_code != 200:
                    raise RuntimeError(f"test client near-me: {resp.status_code}")
                return elapsed

            captured: list[tuple[str, Any]] = []

            def capture(_c: Any, _cur: Any, statement: str, parameters: Any, *_: Any) -> None:
                captured.append((statement, parameters))

            request(self.workers[0], 1)  # connects (the dialect's first queries) and warms up
            event.listen(engine, "before_cursor_execute", capture)
            try:
                request(self.workers[0], 0)
            finally:
                event.remove(engine, "before_cursor_execute", capture)
            out["statements"] = self.explain(captured)

            for w, p in calls[:20]:
                request(w, p)  # warm-up
            whole = [request(w, p) for w, p in calls]
            out.update(_percentiles("request_near_me", whole))
            profiler = cProfile.Profile()
            profiler.enable()
            for w, p in calls[:100]:
                request(w, p)
            profiler.disable()
        app.extensions["gridpatrol.engine"].dispose()
        app.extensions["gridpatrol.read_engine"].dispose()
        for order, count in (("cumulative", 40), ("tottime", 15)):
            stream = io.StringIO()
            pstats.Stats(profiler, stream=stream).sort_stats(order).print_stats(count)
            lines = [line for line in stream.getvalue().splitlines() if line.strip()]
            out[f"cprofile_top_{order}"] = lines[-(count + 1) :]
            print(f"\ncProfile of 100 near-me requests (test client), by {order}:")
            for line in out[f"cprofile_top_{order}"]:
                print(
                    "   ",
                    line.replace(str(REPO) + "/", "").replace(
                        ".venv/lib/python3.11/site-packages/", ""
                    )[:150],
                )
        print(
            f"\nnear-me in process: service p50 {out['service_near_me_p50_ms']} ms, whole "
            f"request p50 {out['request_near_me_p50_ms']} ms"
        )
        return out

    def explain(self, captured: list[tuple[str, Any]]) -> list[dict[str, Any]]:
        """EXPLAIN (ANALYZE, BUFFERS) of each statement of one request (as the app role, rolled
        back); the near-me ones' plans are printed."""
        out = []
        raw: Any = self.app_engine.raw_connection()
        try:
            cur = raw.cursor()
            for statement, parameters in captured:
                if statement.strip().upper() == "SELECT 1":
                    out.append({"statement": "SELECT 1 (pool pre-ping)"})
                    continue
                if not statement.lstrip().upper().startswith(("SELECT", "WITH")):
                    out.append({"statement": " ".join(statement.split())[:90]})  # not run again
                    continue
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
                plan = [r[0] for r in cur.fetchall()]
                item: dict[str, Any] = {"statement": " ".join(statement.split())[:90]}
                for line in plan:
                    for key in ("Planning Time", "Execution Time"):
                        if line.strip().startswith(key):
                            item[f"{key.split()[0].lower()}_ms"] = float(
                                line.split(":")[1].split()[0]
                            )
                if "patrol_task" in statement:
                    item["plan"] = plan
                out.append(item)
            raw.rollback()
        finally:
            raw.close()
        print("\nstatements of one near-me request (EXPLAIN ANALYZE: planning + execution ms):")
        for item in out:
            print(
                f"    {item.get('planning_ms', '-')} + {item.get('execution_ms', '-')}  "
                f"{item['statement']}"
            )
        for item in out:
            for line in item.get("plan", []):
                print("       ", line)
        return out

    # ---------------------------------------------------------------------------------------
    def prepare_submissions(self) -> dict[str, Any]:
        """Give each logged-in worker enough tasks for the submission runs, taken from other
        workers' campaign tasks, checked in (status in_progress, a check-in at the worker's
        point), one audit event per task, in one transaction."""
        users, seconds = len(self.workers), self.args.seconds
        plain = math.ceil(SUBMIT_POOL_RATE * seconds * self.args.rounds / users)
        photo = math.ceil(PHOTO_POOL_RATE * seconds * self.args.rounds / users)
        ids = [w["id"] for w in self.workers]
        with self.owner.connect() as conn:
            pool = list(
                conn.scalars(
                    text(
                        "SELECT id FROM patrol_task WHERE status = 'assigned' "
                        "AND type = 'annual_report_prompt' AND assignee_id <> ALL(:ids) "
                        "ORDER BY id LIMIT :n"
                    ),
                    {"ids": ids, "n": (plain + photo) * users},
                )
            )
            task_ids, user_ids, xs, ys = [], [], [], []
            for k, w in enumerate(self.workers):
                mine = pool[k::users]
                rounds = self.args.rounds
                # one share per round: a task submitted in one round is not sent again
                w["pool_submit"] = [mine[:plain][r::rounds] for r in range(rounds)]
                w["pool_photo"] = [mine[plain:][r::rounds] for r in range(rounds)]
                x, y = w["points_cgcs"][0]
                for tid in mine:
                    task_ids.append(tid)
                    user_ids.append(w["id"])
                    xs.append(x)
                    ys.append(y)
            params = {"t": task_ids, "u": user_ids, "x": xs, "y": ys}
            t0 = time.perf_counter()
            conn.execute(
                text(
                    "UPDATE patrol_task t SET assignee_id = p.u, status = 'in_progress', "
                    "checkin_at = now(), checkin_geom = ST_SetSRID(ST_MakePoint(p.x, p.y), 4490), "
                    "checkin_distance_m = 0, version = t.version + 1, updated_at = now() "
                    "FROM unnest(CAST(:t AS bigint[]), CAST(:u AS int[]), "
                    "CAST(:x AS float8[]), CAST(:y AS float8[])) p(t, u, x, y) WHERE t.id = p.t"
                ),
                params,
            )
            conn.execute(
                text(
                    "INSERT INTO audit_event (actor_username, actor_role, action, object_type, "
                    "object_id, changes) SELECT 'benchmark', 'system', 'check_in', 'task', "
                    "p.t::text, jsonb_build_object('status', jsonb_build_object('from', "
                    "'assigned', 'to', 'in_progress'), 'assignee_id', jsonb_build_object("
                    "'from', NULL, 'to', p.u)) "
                    "FROM unnest(CAST(:t AS bigint[]), CAST(:u AS int[])) p(t, u)"
                ),
                params,
            )
            conn.commit()
            seconds_sql = time.perf_counter() - t0
        out = {
            "tasks_per_worker_plain": plain,
            "tasks_per_worker_photo": photo,
            "tasks_checked_in": len(task_ids),
            "sql_s": round(seconds_sql, 2),
        }
        print(f"\nsubmission pool: {out}")
        return out

    def make_photos(self) -> list[str]:
        """BASE_PHOTOS distinct noise JPEGs of ~300 KB (noise barely compresses)."""
        rng = np.random.default_rng(SEED + 9)
        paths = []
        side = 560
        for k in range(BASE_PHOTOS):
            for _ in range(4):  # size the image until it is within 3 % of the target
                pixels = rng.integers(0, 256, (side * 3 // 4, side, 3), dtype=np.uint8)
                buf = io.BytesIO()
                Image.fromarray(pixels).save(buf, "JPEG", quality=85)
                size = len(buf.getvalue())
                if abs(size - PHOTO_BYTES) < 0.03 * PHOTO_BYTES:
                    break
                side = int(side * math.sqrt(PHOTO_BYTES / size))
            path = self.tmp / f"photo-{k}.jpg"
            path.write_bytes(buf.getvalue())
            paths.append(str(path))
        sizes = [Path(p).stat().st_size for p in paths]
        print(f"photos: {len(paths)} base JPEGs, {min(sizes)}–{max(sizes)} bytes, {side} px wide")
        self.report["photo_bytes"] = int(statistics.median(sizes))
        return paths

    def check_database(self) -> dict[str, Any]:
        with self.owner.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM submission), "
                    "(SELECT count(*) FROM submission WHERE cardinality(attachment_ids) > 0), "
                    "(SELECT count(*) FROM attachment), (SELECT count(*) FROM finding), "
                    "(SELECT count(*) FROM patrol_task WHERE status = 'submitted')"
                )
            ).one()
        root = self.tmp / "attachments"
        stored = [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
        out = {
            "submissions": int(row[0]),
            "submissions_with_photo": int(row[1]),
            "attachments": int(row[2]),
            "findings": int(row[3]),
            "tasks_submitted": int(row[4]),
            "photo_files": len(stored),
            "photo_mib": round(sum(p.stat().st_size for p in stored) / 2**20, 1),
        }
        print(f"\ndatabase after the submission runs: {out}")
        return out


# -------------------------------------------------------------------------------------------
# Processes, CPU, samples
# -------------------------------------------------------------------------------------------


class CpuProbe:
    """CPU seconds used by gunicorn (master and workers), the PostgreSQL backends of the scratch
    database, and the whole machine, between two snapshots."""

    def __init__(self, server: subprocess.Popen[bytes] | None, owner: Engine, dbname: str):
        self.server = server
        self.owner = owner
        self.dbname = dbname

    def snapshot(self) -> dict[str, Any]:
        return {
            "gunicorn": _tree_cpu(self.server.pid) if self.server else {},
            "postgres": self._pg_cpu(),
            "machine": psutil.cpu_times(),
        }

    def _pg_cpu(self) -> dict[int, float]:
        with self.owner.connect() as conn:
            pids = conn.scalars(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = :d "
                    "AND pid <> pg_backend_pid()"
                ),
                {"d": self.dbname},
            ).all()
        return {int(p): c for p in pids if (c := _cpu_of(int(p))) is not None}

    def delta(self, before: dict[str, Any], wall: float) -> dict[str, Any]:
        after = self.snapshot()

        def used(kind: str) -> float:
            a, b = after[kind], before[kind]
            return sum(c - b.get(p, 0.0) for p, c in a.items())

        m0, m1 = before["machine"], after["machine"]
        busy = sum(
            getattr(m1, f) - getattr(m0, f)
            for f in ("user", "nice", "system", "irq", "softirq", "steal")
            if hasattr(m1, f)
        )
        return {
            "gunicorn_cpu_s": used("gunicorn"),
            "postgres_cpu_s": used("postgres"),
            "gunicorn_cores": round(used("gunicorn") / wall, 2),
            "postgres_cores": round(used("postgres") / wall, 2),
            "machine_busy_cores": round(busy / wall, 2),
            "cores": psutil.cpu_count(),
        }


def _wait_quiet(limit_s: float, threshold: float = 0.3) -> float:
    """Wait (up to `limit_s`) until the whole machine uses less than `threshold` cores over 3 s
    (other people's jobs share it); returns the last figure, in cores."""
    started = time.monotonic()
    while True:
        busy = psutil.cpu_percent(interval=3.0) / 100.0 * (psutil.cpu_count() or 1)
        if busy < threshold or time.monotonic() - started >= limit_s:
            waited = time.monotonic() - started
            if waited > 4:
                print(f"  (waited {waited:.0f} s for a quiet machine: {busy:.2f} cores busy)")
            return round(busy, 2)


def _cpu_of(pid: int) -> float | None:
    try:
        t = psutil.Process(pid).cpu_times()
        return float(t.user + t.system)
    except (psutil.Error, OSError):
        return None


def _tree_cpu(pid: int) -> dict[int, float]:
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return {}
    return {p.pid: c for p in procs if (c := _cpu_of(p.pid)) is not None}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited ({proc.returncode}):\n{_tail(log_path)}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=5).status_code in (200, 401):
                return
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer {url} within 90 s:\n{_tail(log_path)}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """TERM the server's process group (gunicorn stops its workers), KILL it after 30 s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # any straggler left in the group


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _summarise_log(path: Path) -> None:
    """The app's JSON log of the run: requests by status, and the first error lines."""
    statuses: Counter[int] = Counter()
    errors = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            if "Traceback" in line or "Error" in line:
                errors.append(line)
            continue
        if isinstance(entry, dict):
            if "status" in entry:
                statuses[int(entry["status"])] += 1
            if entry.get("level") in ("error", "critical"):
                errors.append(line)
    if statuses:
        print(f"  server log: {dict(sorted(statuses.items()))} requests by status")
    for line in errors[:3]:
        print(f"  server log error: {line[:600]}")


def _latency(rows: list[list[float]], seconds: int) -> dict[str, Any]:
    """Latency percentiles and rates from (end time, ms, status) samples, over the steady part
    of the run: from 10 % (at most 2 s) after the first request started to the end of the run."""
    arr = np.asarray(rows, dtype=float)
    ends, ms, status = arr[:, 0], arr[:, 1], arr[:, 2].astype(int)
    first = float(np.min(ends - ms / 1000.0))
    lo = first + min(2.0, 0.1 * seconds)
    hi = min(float(np.max(ends)), first + seconds)
    keep = (ends >= lo) & (ends <= hi)
    window = max(hi - lo, 1e-9)
    ok = (status >= 200) & (status < 300)
    p50, p95, p99 = np.percentile(ms[keep], [50, 95, 99]) if keep.any() else (0.0, 0.0, 0.0)
    return {
        "n": len(rows),
        "non_2xx": int((~ok).sum()),
        "statuses": {str(k): v for k, v in sorted(Counter(status.tolist()).items())},
        "window_s": round(window, 1),
        "per_s": round(float(keep.sum()) / window, 1),
        "ok_per_s": round(float((keep & ok).sum()) / window, 1),
        "p50_ms": round(float(p50), 1),
        "p95_ms": round(float(p95), 1),
        "p99_ms": round(float(p99), 1),
        "mean_ms": round(float(ms[keep].mean()), 1) if keep.any() else 0.0,
    }


def _percentiles(prefix: str, samples: list[float]) -> dict[str, float]:
    ms = np.asarray(samples) * 1000.0
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {
        f"{prefix}_n": len(samples),
        f"{prefix}_p50_ms": round(float(p50), 2),
        f"{prefix}_p95_ms": round(float(p95), 2),
        f"{prefix}_p99_ms": round(float(p99), 2),
    }


def _print_run(result: dict[str, Any]) -> None:
    for name, r in result["requests"].items():
        print(
            f"  {name}: {r['ok_per_s']}/s ok ({r['per_s']}/s all) over {r['window_s']} s, "
            f"p50/p95/p99 {r['p50_ms']}/{r['p95_ms']}/{r['p99_ms']} ms, {r['n']} requests, "
            f"statuses {r['statuses']}"
        )
    cpu = result["cpu"]
    print(
        f"  CPU (cores of {cpu['cores']}): locust {cpu['locust_cores']}, gunicorn "
        f"{cpu['gunicorn_cores']}, PostgreSQL (scratch db) {cpu['postgres_cores']}, anything "
        f"else {cpu['other_cores']}; whole machine {cpu['machine_busy_cores']} "
        f"(before: load average {result['loadavg_start']}, busy "
        f"{result['machine_busy_cores_before']} cores)"
    )
    print(f"  CPU ms per request: {cpu['cpu_ms_per_request']}")
    if "items_checked" in result:
        print(
            f"  items per answer (every 10th checked, {result['items_checked']}): min/median/max "
            f"{result['items_min_median_max']}"
        )
    if "users_out_of_tasks" in result:
        print(f"  {result['users_out_of_tasks']} users ran out of tasks before the end")
    for err in result.get("first_errors", []):
        print(f"  error: {err}")


# -------------------------------------------------------------------------------------------
# Report
# -------------------------------------------------------------------------------------------


def _summary(runs: list[dict[str, Any]], setting: str) -> dict[str, Any]:
    """Medians over the rounds of the main setting: near-me, floor, submissions."""
    out: dict[str, Any] = {"setting": setting}
    for mode, prefix in (
        ("near", "GET /tasks"),
        ("floor", "GET floor"),
        ("submit", "POST /submissions"),
        ("photo", "POST /submissions"),
    ):
        figures = [
            next(v for k, v in r["requests"].items() if k.startswith(prefix))
            for r in runs
            if r["mode"] == mode and r["setting"] == setting
        ]
        if not figures:
            continue
        out[mode] = {
            "rounds": len(figures),
            **{
                key: round(statistics.median(f[key] for f in figures), 1)
                for key in ("ok_per_s", "p50_ms", "p95_ms", "p99_ms")
            },
            "ok_per_s_each": [f["ok_per_s"] for f in figures],
            "p95_ms_each": [f["p95_ms"] for f in figures],
            "non_2xx": sum(f["non_2xx"] for f in figures),
        }
    if "near" in out and "floor" in out and out["floor"]["ok_per_s"]:
        out["near_vs_floor"] = round(out["near"]["ok_per_s"] / out["floor"]["ok_per_s"], 3)
    return out


def _print_table(report: dict[str, Any]) -> None:
    m = report["machine"]
    print("\n" + "=" * 100)
    print(
        f"machine: {m['cores']} cores ({m['cpu']}), {m['mem_gib']} GiB; Python {m['python']}; "
        f"PostgreSQL {m.get('postgresql')} / PostGIS {m.get('postgis')} on the same host. "
        f"locust, gunicorn and PostgreSQL share these {m['cores']} cores."
    )
    print(f"load average at start {m['loadavg_start']}, at end {m['loadavg_end']}")
    print(
        f"CPU probe (best of 5 runs of a fixed Python loop; the VM's speed moves between "
        f"sessions): {m.get('cpu_probe_ms_start')} ms at start, {m.get('cpu_probe_ms_end')} ms "
        f"at end"
    )
    rows: list[tuple[str, str, str]] = []

    def target(ok: bool) -> str:
        return "met" if ok else "NOT met"

    if "setup" in report:  # not with --reuse-db
        s, c = report["setup"], report["campaign"]
        print(
            f"data: {s['entities']} entities ({s['filed_2025']} filed 2025), {s['placed']} "
            f"placed; COPY {s['copy_entities_s']} s, place_all {s['place_all_s']} s"
        )
        rows.append(
            (
                "annual-report campaign 2025 (tasks made, + commit)",
                f"{c['tasks']} tasks in {c['seconds']} s = {c['tasks_per_s']}/s",
                f"< 60 s: {target(c['seconds'] < TARGETS['campaign_s'])}",
            )
        )
    summary = report.get("summary", {})
    if summary.get("near"):
        n, label = summary["near"], summary["setting"]
        rows.append(
            (
                f"GET /tasks near-me, gunicorn {label}, median of {n['rounds']} rounds",
                f"p50/p95/p99 {n['p50_ms']}/{n['p95_ms']}/{n['p99_ms']} ms, {n['ok_per_s']} "
                f"req/s (rounds: {n['ok_per_s_each']} req/s, p95 {n['p95_ms_each']} ms), "
                f"non-2xx {n['non_2xx']}",
                f"p95 < 50 ms: {target(n['p95_ms'] < TARGETS['near_p95_ms'])}",
            )
        )
    if summary.get("floor"):
        f = summary["floor"]
        rows.append(
            (
                f"floor, gunicorn {summary['setting']}, median of {f['rounds']} rounds",
                f"{f['ok_per_s']} req/s (rounds: {f['ok_per_s_each']})",
                "",
            )
        )
    if "near_vs_floor" in summary:
        rows.append(
            (
                "near-me / floor throughput, medians",
                f"{summary['near_vs_floor']:.1%}",
                f">= 40 %: {target(summary['near_vs_floor'] >= TARGETS['near_vs_floor'])}",
            )
        )
    if summary.get("submit"):
        sub = summary["submit"]
        rows.append(
            (
                f"POST /submissions, no photo, median of {sub['rounds']} rounds",
                f"{sub['ok_per_s']}/s (rounds: {sub['ok_per_s_each']}), p95 {sub['p95_ms']} ms, "
                f"non-2xx {sub['non_2xx']}",
                f">= 300/s: {target(sub['ok_per_s'] >= TARGETS['submit_per_s'])}",
            )
        )
    if summary.get("photo"):
        ph = summary["photo"]
        rows.append(
            (
                f"POST /submissions with a photo, median of {ph['rounds']} rounds",
                f"{ph['ok_per_s']}/s (rounds: {ph['ok_per_s_each']}), p95 {ph['p95_ms']} ms",
                "",
            )
        )
    rows.append(("each run:", "", ""))
    for near in (r for r in report["runs"] if r["mode"] == "near"):
        floor = next(
            (
                r
                for r in report["runs"]
                if r["mode"] == "floor"
                and r["setting"] == near["setting"]
                and r.get("round") == near.get("round")
            ),
            None,
        )
        if not floor:
            continue
        label = f"{near['setting']}, round {near.get('round', 0) + 1}"
        n = next(iter(near["requests"].values()))
        f = next(iter(floor["requests"].values()))
        ratio = n["ok_per_s"] / f["ok_per_s"] if f["ok_per_s"] else 0.0
        rows.append(
            (
                f"GET /tasks near-me, gunicorn {label}",
                f"p50/p95/p99 {n['p50_ms']}/{n['p95_ms']}/{n['p99_ms']} ms, {n['ok_per_s']} req/s, "
                f"non-2xx {n['non_2xx']}, items {near.get('items_min_median_max')}",
                f"p95 < 50 ms: {target(n['p95_ms'] < TARGETS['near_p95_ms'])}",
            )
        )
        rows.append(
            (
                f"floor (bare Flask, fixed JSON), gunicorn {label}",
                f"p50/p95/p99 {f['p50_ms']}/{f['p95_ms']}/{f['p99_ms']} ms, {f['ok_per_s']} req/s",
                "",
            )
        )
        rows.append(
            (
                f"near-me / floor throughput, gunicorn {label}",
                f"{ratio:.1%}",
                f">= 40 %: {target(ratio >= TARGETS['near_vs_floor'])}",
            )
        )
        for title, run in (("near-me", near), ("floor", floor)):
            rows.append((f"  CPU, {title} run ({label})", _cpu_line(run["cpu"]), ""))
    for run in (r for r in report["runs"] if r["mode"] in ("submit", "photo")):
        mode = run["mode"]
        title = ("no photo" if mode == "submit" else "with a ~300 KB photo") + (
            f", round {run.get('round', 0) + 1}"
        )
        subs = next(v for k, v in run["requests"].items() if k.startswith("POST /submissions"))
        rows.append(
            (
                f"POST /submissions, {title}, gunicorn {run['setting']}",
                f"{subs['ok_per_s']}/s, p50/p95/p99 {subs['p50_ms']}/{subs['p95_ms']}/"
                f"{subs['p99_ms']} ms, non-2xx {subs['non_2xx']}",
                f">= 300/s: {target(subs['ok_per_s'] >= TARGETS['submit_per_s'])}"
                if mode == "submit"
                else "",
            )
        )
        up = run["requests"].get("POST /attachments (300 KB JPEG)")
        if up:
            rows.append(
                (
                    "  … of which POST /attachments",
                    f"p50/p95/p99 {up['p50_ms']}/{up['p95_ms']}/{up['p99_ms']} ms, "
                    f"non-2xx {up['non_2xx']}",
                    "",
                )
            )
        rows.append((f"  CPU, {mode} run", _cpu_line(run["cpu"]), ""))
    p = report.get("profile", {})
    if p:
        rows.append(
            (
                "near-me in process, one at a time: service / whole request p50",
                f"{p['service_near_me_p50_ms']} / {p['request_near_me_p50_ms']} ms",
                "",
            )
        )
        for item in p.get("statements", []):
            if "planning_ms" in item:
                rows.append(
                    (
                        f"  SQL {item['statement'][:60]}",
                        f"{item['planning_ms']} + {item['execution_ms']} ms (plan + execute)",
                        "",
                    )
                )
    w1 = max(len(r[0]) for r in rows)
    w2 = max(len(r[1]) for r in rows)
    for a, b, t in rows:
        print(f"{a:<{w1}}  {b:<{w2}}  {t}")
    problems = report.get("answer_problems", [])
    if problems:
        print(f"\nnear-me answers that failed the check: {len(problems)}; first: {problems[0]}")
    print(f"\ntotal {report['total_s']} s")
    print(f"command: {report['command']}")


def _cpu_line(cpu: dict[str, Any]) -> str:
    per = cpu["cpu_ms_per_request"]
    return (
        f"cores: locust {cpu['locust_cores']}, gunicorn {cpu['gunicorn_cores']}, PostgreSQL "
        f"{cpu['postgres_cores']}, other {cpu['other_cores']}; ms/request: gunicorn "
        f"{per['gunicorn']}, PostgreSQL {per['postgres']}, locust {per['locust']}"
    )


def _command(base_url: str) -> str:
    shown = make_url(base_url).render_as_string(hide_password=True)
    exe = os.path.relpath(sys.executable) if sys.executable else "python"
    return f"DATABASE_URL={shlex.quote(shown)} {shlex.join([exe, *sys.argv])}"


def _cpu_probe_ms(runs: int = 5) -> float:
    """The best of `runs` timings of a fixed pure-Python loop, in ms: lets runs made on
    different days be compared for the machine's own speed (a shared VM's moves by 2x)."""
    best = math.inf
    for _ in range(runs):
        t0 = time.perf_counter()
        total = 0
        for i in range(2_000_000):
            total += i
        best = min(best, time.perf_counter() - t0)
    return round(best * 1000, 1)


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def _machine_static() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "mem_gib": round(psutil.virtual_memory().total / 2**30),
        "python": platform.python_version(),
    }


def _machine_db(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return {
            "postgresql": conn.scalar(text("SHOW server_version")),
            "postgis": conn.scalar(text("SELECT postgis_lib_version()")),
        }


def _grant_app_role(owner: Engine, app_url: str, owner_url: str) -> None:
    """The scratch database is migrated without an app role; grant it what migration 0002's
    `grant_runtime_role` grants, so the app serves as the least-privileged role, as deployed."""
    role = make_url(app_url).username
    if not role or role == make_url(owner_url).username:
        return
    quoted = '"' + role.replace('"', '""') + '"'
    with owner.begin() as conn:
        for sql in (
            f"GRANT USAGE ON SCHEMA public TO {quoted}",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {quoted}",
            f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}",
            f"REVOKE UPDATE, DELETE, TRUNCATE ON audit_event FROM {quoted}",
            f"REVOKE ALL ON alembic_version FROM {quoted}",
            f"GRANT SELECT ON alembic_version TO {quoted}",
        ):
            conn.execute(text(sql))


if __name__ == "__main__":
    sys.exit(main())
