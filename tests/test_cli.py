"""The `gridpatrol` command as a user runs it, against a second, empty database of its own:
the same code serves any DATABASE_URL."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.conftest import drop_database

GRIDPATROL = str(Path(sys.executable).with_name("gridpatrol"))


@pytest.fixture(scope="module")
def cli_env(database_url: str, owner_url: str) -> Iterator[dict[str, str]]:
    base, owner = make_url(database_url), make_url(owner_url)
    name = f"gridpatrol_cli_{uuid.uuid4().hex[:8]}"
    admin = create_engine(owner.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE gridpatrol_template'))
    env = {
        **os.environ,
        "DATABASE_URL": base.set(database=name).render_as_string(False),
        "GRIDPATROL_MIGRATION_URL": owner.set(database=name).render_as_string(False),
        "GRIDPATROL_SECRET_KEY": "cli-test-" + "k" * 40,
        "GRIDPATROL_DEMO_PASSWORD": "cli-demo-pass-1",
    }
    try:
        yield env
    finally:
        drop_database(admin, name)
        admin.dispose()


def run(env: dict[str, str], *args: str, expect: int = 0) -> str:
    proc = subprocess.run(
        [GRIDPATROL, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == expect, (args, proc.stdout, proc.stderr)
    return proc.stdout + proc.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_end_to_end(cli_env: dict[str, str], tmp_path: Path) -> None:
    assert "is at head" in run(cli_env, "db", "upgrade")
    assert "is at head" in run(cli_env, "db", "upgrade")  # idempotent

    out = run(cli_env, "demo", "load")
    assert "loaded: 32 towns, 590 communities, 2900 cells" in out
    assert "'admin' (admin), password 'cli-demo-pass-1'" in out
    assert "already present" in run(cli_env, "demo", "load")

    qa = run(cli_env, "grid", "qa")
    assert qa.count("— OK") == 4, qa
    report = json.loads(run(cli_env, "grid", "qa", "--level", "cell", "--json"))
    cells = report["levels"]["cell"]
    assert cells["features"] == 2900 and cells["ok"]
    assert 2_380e6 < cells["area_m2"] < 2_540e6  # the size of Dongguan
    assert report["city_coverage"] == {
        "ok": True,
        "uncovered": [],
        "uncovered_count": 0,
        "outside_city": [],
        "outside_city_count": 0,
    }

    # a town file whose second feature is broken: rejected as a whole, exit status 2
    towns = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"code": "441900003", "name": "东城街道"},
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[113.7, 23.0], [113.8, 23.0], [113.8, 23.1], [113.7, 23.0]]],
                },
            },
            {
                "type": "Feature",
                "properties": {"code": "bad", "name": "x"},
                "geometry": {"type": "Point", "coordinates": [113.7, 23.0]},
            },
        ],
    }
    path = tmp_path / "towns.geojson"
    path.write_text(json.dumps(towns, ensure_ascii=False), encoding="utf-8")
    out = run(
        cli_env,
        "grid",
        "import",
        str(path),
        "--level",
        "town",
        "--dry-run",
        "--report",
        str(tmp_path / "report.json"),
        expect=2,
    )
    assert "rejected" in out and "feature 1 (bad)" in out
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["status"] == "rejected" and saved["features"]["read"] == 2

    # the registry, as a GB18030 CSV the way registration systems export it
    from backend.domain.uscc import make_code

    good = make_code("9", "2", "441900", "MA1234567")
    registry = tmp_path / "登记.csv"
    registry.write_bytes(
        f"统一社会信用代码,名称,住所,经度,纬度\n{good},莞城测试店,东莞市莞城街道,113.75,23.02\n"
        f"BAD,坏店,东莞,,\n".encode("gb18030")
    )
    out = run(cli_env, "entities", "import", str(registry))
    assert "created 1, updated 0, unchanged 0, rejected 1 (encoding gb18030)" in out
    assert "row 3 (BAD)" in out

    env = {**cli_env, "GRIDPATROL_NEW_PASSWORD": "ops-password-1"}
    assert "created user 'ops'" in run(env, "users", "create", "ops", "--role", "city_dispatcher")
    assert "taken" in run(env, "users", "create", "ops", "--role", "admin", expect=1)

    port = free_port()
    server = subprocess.Popen(
        [GRIDPATROL, "serve", "--port", str(port), "--workers", "1"],
        env=cli_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        body = None
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    body = json.loads(r.read())
                break
            except OSError:
                time.sleep(0.1)
        assert body is not None and body["status"] == "ok"
        login = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/auth/login",
            data=json.dumps({"username": "ops", "password": "ops-password-1"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(login, timeout=5) as r:
            token = json.loads(r.read())["access_token"]
        locate = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/grid/locate?lon=113.75&lat=23.02",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(locate, timeout=5) as r:
            assert json.loads(r.read())["town"]["name"] == "莞城街道"
    finally:
        server.terminate()
        server.wait(timeout=10)
