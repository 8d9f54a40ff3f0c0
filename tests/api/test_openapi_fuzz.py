"""Fuzz the HTTP API from its own OpenAPI document (schemathesis), plus regression tests for the
malformed inputs that were found, by hand, to answer 500 instead of a 4xx problem+json.

DESIGN §5: bad input gets a 4xx `application/problem+json`, never a 500 and never an HTML page.
Everything runs in-process against the Flask app, inside the test's rolled-back transaction.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode
from sqlalchemy import text

from tests.grid_fixtures import cells_fc, load_small_grid

PROBLEM = "application/problem+json"
# Per operation and generation mode; keeps the whole fuzz test well under 30 s.
MAX_EXAMPLES = 12
# Logging out would end the admin session every later case runs with (tested in test_auth).
NOT_FUZZED = {"POST /api/v1/auth/logout", "POST /api/mobile/v1/auth/logout"}


# --------------------------------------------------------------------------- helpers


def assert_problem_4xx(resp: Any, *, what: str = "") -> dict[str, Any]:
    """The answer is a 4xx application/problem+json whose body says the same status."""
    body = resp.get_data(as_text=True)
    assert 400 <= resp.status_code < 500, f"{what}: expected a 4xx, got {resp.status_code}: {body}"
    assert resp.mimetype == PROBLEM, f"{what}: expected {PROBLEM}, got {resp.mimetype}: {body}"
    problem = resp.get_json()
    assert problem["status"] == resp.status_code
    assert problem.get("title") and problem.get("type")
    return problem


def grid_counts(session: Any) -> dict[str, int]:
    return {
        t: session.scalar(text(f"SELECT count(*) FROM {t}"))
        for t in ("town", "community", "grid_cell", "grid_boundary_version")
    }


def zip_bytes(entries: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buf.getvalue()


def raw_upload(client: Any, headers: dict, data: bytes, filename: str, **form: str) -> Any:
    payload: dict[str, Any] = {"level": "cell", **form, "file": (io.BytesIO(data), filename)}
    return client.post(
        "/api/v1/grid/imports", data=payload, headers=headers, content_type="multipart/form-data"
    )


# --------------------------------------------------------------------------- schemathesis


def _fuzz(
    operation: Any, mode: GenerationMode, headers: dict[str, str], seen: dict[str, set[int]]
) -> str | None:
    """Run one operation in one generation mode; the (shrunk) failure message, or None."""
    label = f"{operation.label} [{mode.value}]"

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,  # the same cases every run: a failure is a bug, not bad luck
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case: Any) -> None:
        # identity: schemathesis' in-process WSGI transport would read a gzipped body as text
        # (it sends Accept-Encoding: gzip but does not decode); gzip: test_worker_day.py
        response = case.call(headers={**headers, "Accept-Encoding": "identity"})
        seen.setdefault(case.operation.label, set()).add(response.status_code)
        content_type = (response.headers.get("content-type") or [""])[0].split(";")[0].strip()
        where = (
            f"{label}\n  {case.as_curl_command()}\n  -> {response.status_code} "
            f"{content_type}: {response.text[:300]}"
        )
        assert response.status_code < 500, f"server error: {where}"
        if response.status_code >= 400:
            assert content_type == PROBLEM, f"4xx that is not problem+json: {where}"

    try:
        call()
    except Unsatisfiable:
        return None  # e.g. nothing to violate in an operation that takes no input
    except AssertionError as exc:
        return str(exc).split("\n\nFalsifying")[0]
    return None


def test_api_never_answers_5xx_and_4xx_are_problem_json(
    app: Any, client: Any, connection: Any, admin_headers: dict[str, str]
) -> None:
    """Every operation of /api/openapi.json, with schema-valid and schema-violating inputs
    (schemathesis, positive and negative modes), as admin: never a 5xx, every 4xx problem+json.

    The app's sessionmaker is bound to this test's transaction (`connection`), so whatever the
    generated requests write is rolled back. All failures are collected and reported together.
    """
    load_small_grid(client, admin_headers)  # so item / history / locate / QA reach real rows
    spec = client.get("/api/openapi.json").get_json()
    schema = schemathesis.openapi.from_dict(spec)
    schema.app = app  # in-process WSGI calls, through the same app and transaction

    seen: dict[str, set[int]] = {}
    failures = [
        failure
        for result in schema.get_all_operations()
        if result.ok().label not in NOT_FUZZED
        for mode in GenerationMode
        if (failure := _fuzz(result.ok(), mode, admin_headers, seen))
    ]

    # The fuzzer must really have reached every operation, and valid requests got through.
    expected = {
        f"{method.upper()} {path}"
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    } - NOT_FUZZED
    assert set(seen) == expected, f"operations never called: {expected - set(seen)}"
    succeeded = {op for op, statuses in seen.items() if any(s < 300 for s in statuses)}
    for op in ("GET /api/v1/grid/cells", "GET /api/v1/grid/qa", "GET /api/v1/grid/imports"):
        assert op in succeeded, f"{op} never answered 2xx: {sorted(seen.get(op, ()))}"
    assert not failures, f"{len(failures)} failing operation(s):\n\n" + "\n\n".join(failures)


# --------------------------------------------------------------------------- OpenAPI document


def test_import_form_fields_are_documented_in_the_body(client: Any) -> None:
    """OpenAPI 3 has no `formData` parameters: POST /grid/imports' form fields (`level`...)
    must be properties of the multipart/form-data request body, beside `file`."""
    spec = client.get("/api/openapi.json").get_json()
    op = spec["paths"]["/api/v1/grid/imports"]["post"]
    bad = [
        p["name"]
        for p in op.get("parameters", [])
        if p.get("in") not in ("query", "header", "path", "cookie")
    ]
    assert not bad, f"parameters in a location OpenAPI 3 does not have: {bad}"
    body = op["requestBody"]["content"]["multipart/form-data"]["schema"]
    if "$ref" in body:
        body = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    assert {"file", "level", "crs", "dry_run"} <= set(body["properties"])
    assert {"file", "level"} <= set(body.get("required", []))


def test_error_responses_are_documented_as_problem_json(client: Any) -> None:
    """Errors are application/problem+json (DESIGN §5); the document must say so, not
    application/json, or generated clients and contract tests reject every error."""
    spec = client.get("/api/openapi.json").get_json()
    wrong = {
        name: sorted(resp.get("content", {}))
        for name, resp in spec["components"]["responses"].items()
        if resp.get("content") and PROBLEM not in resp["content"]
    }
    assert not wrong, f"error responses not documented as {PROBLEM}: {wrong}"


# --------------------------------------------------------------------------- NUL / surrogates


@pytest.mark.parametrize("collection", ["towns", "communities", "cells"])
@pytest.mark.parametrize("suffix", ["", "/history"])
@pytest.mark.parametrize("code", ["%00", "a%00b"])
def test_nul_in_area_code_is_4xx(client, admin_headers, collection, suffix, code) -> None:
    resp = client.get(f"/api/v1/grid/{collection}/{code}{suffix}", headers=admin_headers)
    assert_problem_4xx(resp, what=f"GET {collection}/{code}{suffix}")


@pytest.mark.parametrize(
    "body",
    [
        b'{"username": "a\\u0000", "password": "whatever-123"}',
        b'{"username": "\\ud800", "password": "whatever-123"}',
        b'{"username": "nobody", "password": "\\ud800"}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=["nul-username", "surrogate-username", "surrogate-password", "deeply-nested-json"],
)
def test_malformed_login_is_4xx(client, connection, body) -> None:
    resp = client.post("/api/v1/auth/login", data=body, content_type="application/json")
    assert_problem_4xx(resp, what="POST /auth/login")


def test_surrogate_password_of_existing_user_is_4xx(client, admin_headers, session) -> None:
    username = session.scalar(text("SELECT username FROM app_user ORDER BY id LIMIT 1"))
    body = json.dumps({"username": username, "password": "\ud800"}).encode()
    resp = client.post("/api/v1/auth/login", data=body, content_type="application/json")
    assert_problem_4xx(resp, what="POST /auth/login (existing user, surrogate password)")


# --------------------------------------------------------------------------- imports


def _one_cell(**props: Any) -> bytes:
    fc = cells_fc()
    fc["features"] = fc["features"][:1]
    fc["features"][0]["properties"].update(props)
    return json.dumps(fc).encode()


IMPORT_CASES: dict[str, tuple[bytes, str]] = {
    # zip entries whose basename is "..", "" or "." make _read_zip write to a directory
    "zip-entry-dotdot": (zip_bytes([("a.shp", b"x"), ("..", b"y")]), "a.zip"),
    "zip-entry-dir-dotdot": (zip_bytes([("a.shp", b"x"), ("d/..", b"y")]), "a.zip"),
    "zip-entry-dot": (zip_bytes([("a.shp", b"x"), (".", b"y")]), "a.zip"),
    # name containing NUL: cannot even be a temp file name
    "nul-in-filename": (b"\x01\x02 not a known format", "a.\x00bin"),
    # Python refuses integers over 4300 digits (ValueError, not JSONDecodeError)
    "huge-integer-json": (
        b'{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"code":'
        + b"9" * 5000
        + b',"name":"x"},"geometry":null}]}',
        "a.geojson",
    ),
    # RecursionError from json.loads
    "deeply-nested-json": (b"[" * 100_000 + b"]" * 100_000, "a.geojson"),
    "deeply-nested-features": (
        b'{"type":"FeatureCollection","features":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "a.geojson",
    ),
    # text PostgreSQL cannot store (psycopg2 raises ValueError / UnicodeEncodeError)
    "nul-in-name": (_one_cell(name="a\x00b"), "a.geojson"),
    "nul-in-parent": (_one_cell(parent_code="441900003\x00"), "a.geojson"),
    "surrogate-in-name": (
        _one_cell(name="SURROGATE").replace(b'"SURROGATE"', b'"\\ud800"'),
        "a.geojson",
    ),
}


def _encrypted_zip() -> bytes:
    data = bytearray(zip_bytes([("a.shp", b"A" * 100)]))
    data[6] |= 1  # general purpose flag bit 0 (encrypted), local header
    central = data.find(b"PK\x01\x02")
    data[central + 8] |= 1  # and in the central directory
    return bytes(data)


def _zip_with_unknown_compression() -> bytes:
    data = bytearray(zip_bytes([("a.shp", b"A" * 100)]))
    data[8:10] = struct.pack("<H", 99)  # AES / unknown method
    central = data.find(b"PK\x01\x02")
    data[central + 10 : central + 12] = struct.pack("<H", 99)
    return bytes(data)


IMPORT_CASES["zip-encrypted"] = (_encrypted_zip(), "a.zip")
IMPORT_CASES["zip-unknown-compression"] = (_zip_with_unknown_compression(), "a.zip")


@pytest.mark.parametrize("case", sorted(IMPORT_CASES))
def test_malformed_import_is_4xx_and_changes_nothing(client, admin_headers, session, case) -> None:
    data, filename = IMPORT_CASES[case]
    before = grid_counts(session)
    resp = raw_upload(client, admin_headers, data, filename)
    assert_problem_4xx(resp, what=f"import {case}")
    assert grid_counts(session) == before


def test_import_does_not_read_server_files_through_gdal(client, admin_headers, tmp_path) -> None:
    """Anything that is neither JSON nor a zip goes to GDAL, which follows references: a VRT
    makes the server read (and echo, in the QA report) any local CSV-like file, or a URL via
    /vsicurl/. Only the documented formats (GeoJSON, zipped Shapefile) may be read."""
    secret = tmp_path / "server_side.csv"
    secret.write_text(
        'code,name,WKT\nLEAKED_SERVER_FILE,x,"POLYGON((113.70 23.00,113.71 23.00,'
        '113.71 23.01,113.70 23.00))"\n'
    )
    vrt = (
        f'<OGRVRTDataSource><OGRVRTLayer name="server_side"><SrcDataSource>{secret}'
        "</SrcDataSource><GeometryType>wkbPolygon</GeometryType>"
        '<GeometryField encoding="WKT" field="WKT"/></OGRVRTLayer></OGRVRTDataSource>'
    ).encode()
    resp = raw_upload(client, admin_headers, vrt, "boundaries.vrt", dry_run="true", parent_field="")
    assert "LEAKED_SERVER_FILE" not in resp.get_data(as_text=True)
    assert_problem_4xx(resp, what="VRT upload")


# --------------------------------------------------------------------------- headers


def test_request_id_with_trailing_newline_is_replaced_not_500(client) -> None:
    """`^...$` also matches before a trailing newline, so "abc\\n" passes the X-Request-ID check
    and the response header then cannot be set (500). gunicorn rejects such a header itself,
    but any WSGI server that passes it on gets a 500 from /healthz."""
    resp = client.get("/healthz", environ_overrides={"HTTP_X_REQUEST_ID": "abc\n"})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert "\n" not in resp.headers["X-Request-ID"]
