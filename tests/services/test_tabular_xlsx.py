"""Hostile workbooks (XML bombs, external entities, zip bombs, broken XML) are refused as
"not a valid workbook": a failed import job or a 422, never a traceback, nothing loaded."""

from __future__ import annotations

import io
import logging
import zipfile

import pytest
from openpyxl import Workbook

from backend.domain.uscc import make_code
from backend.services.errors import InvalidInput
from backend.services.import_jobs import run_next
from backend.services.tabular import read_table
from tests.grid_fixtures import load_small_grid

GOOD = make_code("9", "2", "441900", "MA0000007")

LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol%s;" % (i - 1 if i > 1 else "")) * 10}">' for i in range(1, 10)
    )
    + "]>"
)
XXE = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'


def workbook() -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.append(["统一社会信用代码", "名称", "住所", "经度", "纬度"])
    sheet.append([GOOD, "测试店", "东莞", 113.705, 23.005])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def rewrite(data: bytes, member: str, edit) -> bytes:
    """The workbook with one member's XML changed by `edit`."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename == member:
                body = edit(body.decode()).encode()
            dst.writestr(info.filename, body)
    return out.getvalue()


def with_doctype(prolog: str, entity: str):
    def edit(xml: str) -> str:
        body = xml.split("?>", 1)[1] if xml.startswith("<?xml") else xml
        return prolog + body.replace("测试店", entity, 1)

    return edit


def hostile() -> dict[str, bytes]:
    """openpyxl writes inline strings, so the sheet itself carries the entity; the workbook
    part is parsed at load time, the sheet while rows stream."""
    base = workbook()
    sheet = "xl/worksheets/sheet1.xml"
    bomb_stream = io.BytesIO()
    with zipfile.ZipFile(bomb_stream, "w", zipfile.ZIP_DEFLATED) as z:
        src = zipfile.ZipFile(io.BytesIO(base))
        for n in src.namelist():
            z.writestr(n, src.read(n))
        z.writestr("xl/media/huge.bin", b"\0" * (64 << 20))  # 64 MiB of zeros, ~64 KiB zipped
    return {
        "billion laughs in the sheet": rewrite(base, sheet, with_doctype(LAUGHS, "&lol9;")),
        "external entity in the sheet": rewrite(base, sheet, with_doctype(XXE, "&xxe;")),
        "external entity in the workbook part": rewrite(
            base, "xl/workbook.xml", with_doctype(XXE, "")
        ),
        "broken sheet XML": rewrite(base, sheet, lambda x: x[: len(x) // 2]),
        "zip bomb member": bomb_stream.getvalue(),
        "truncated archive": base[: len(base) // 2],
    }


CASES = hostile()


@pytest.mark.parametrize("name", sorted(CASES))
def test_read_table_refuses_hostile_workbooks(name):
    rows, _ = read_table(io.BytesIO(CASES[name]), "登记.xlsx", None)
    with pytest.raises(InvalidInput) as refused:
        list(rows)
    assert "not a valid workbook" in refused.value.detail
    assert "root:" not in refused.value.detail  # /etc/passwd never leaks into a message


def test_a_plain_workbook_still_reads():
    rows, encoding = read_table(io.BytesIO(workbook()), "登记.xlsx", None)
    assert encoding is None
    assert list(rows)[1][:2] == (GOOD, "测试店")


@pytest.mark.parametrize("name", ["billion laughs in the sheet", "external entity in the sheet"])
def test_import_job_fails_with_a_reason_and_no_traceback(app, client, admin_headers, caplog, name):
    load_small_grid(client, admin_headers)
    resp = client.post(
        "/api/v1/entities/imports",
        data={"file": (io.BytesIO(CASES[name]), "登记.xlsx"), "crs": "wgs84"},
        headers=admin_headers,
        content_type="multipart/form-data",
    )
    assert resp.status_code == 202, resp.get_json()
    job_id = resp.get_json()["id"]
    with caplog.at_level(logging.ERROR):
        run_next(app.extensions["gridpatrol.sessionmaker"], app.extensions["gridpatrol.engine"])
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    job = client.get(f"/api/v1/entities/imports/{job_id}", headers=admin_headers).get_json()
    assert job["status"] == "failed" and "not a valid workbook" in job["error"]
    assert client.get(f"/api/v1/entities?q={GOOD}", headers=admin_headers).get_json() == []


def test_calendar_upload_of_a_hostile_workbook_is_422(client, admin_headers):
    resp = client.post(
        "/api/v1/calendar/imports",
        data={"file": (io.BytesIO(CASES["external entity in the sheet"]), "2031.xlsx")},
        headers=admin_headers,
        content_type="multipart/form-data",
    )
    assert resp.status_code == 422 and resp.mimetype == "application/problem+json"
    assert "not a valid workbook" in resp.get_json()["detail"]
