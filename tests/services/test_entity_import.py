"""Registry import: an exact report, no partial rows, no good row lost; encodings and XLSX."""

from __future__ import annotations

import io

import pytest
from openpyxl import Workbook
from sqlalchemy import text

from backend.domain.uscc import make_code
from backend.services.entity_import import import_registry
from backend.services.errors import InvalidInput
from tests.grid_fixtures import load_small_grid

HEADER = "统一社会信用代码,名称,住所,登记状态,行业代码,成立日期,法定代表人,联系电话,经度,纬度"


def code(n: int, kind: str = "2") -> str:
    return make_code("9", kind, "441900", f"MA{n:07d}")


def csv_bytes(lines: list[str], encoding: str = "utf-8") -> io.BytesIO:
    return io.BytesIO(("\n".join([HEADER, *lines]) + "\n").encode(encoding))


@pytest.fixture()
def grid(client, admin_headers):
    load_small_grid(client, admin_headers)


def test_report_is_exact_and_good_rows_survive_bad_ones(grid, session):
    good = [code(i) for i in range(1, 5)]
    bad_check = code(9)[:-1] + ("0" if code(9)[-1] != "0" else "1")
    lines = [
        f"{good[0]},东莞市东城阿强士多店,东莞市东城街道东城中路1号,存续,5211,2019-03-01,张三,"
        f"13800138000,113.705,23.005",
        f"{bad_check},坏码商店,东莞市东城街道东城中路2号,存续,5211,2019-03-01,李四,,,",
        f"{good[1]},东莞市南城某某电子有限公司,东莞市南城街道鸿福路106号,在业,C3971,"
        f"2020/01/02,王五,,113.805,23.045",
        f"{good[0]},重复的店,东莞市东城街道东城中路3号,存续,5211,2019-03-01,张三,,,",
        f"{good[2]},远方的店,广州市天河区,存续,5211,2019-03-01,赵六,,114.5,23.3",
        f"{good[3]},日期坏了,东莞市莞城街道,存续,5211,昨天,钱七,,,",
        f"{code(6)},,东莞市莞城街道,存续,5211,,孙八,,,",
        "",
        f"{code(7)},没有经纬度的店,东莞市莞城街道罗沙路1号之3,注销,8040,2001年2月3日,周九,,,",
    ]
    report = import_registry(session, csv_bytes(lines), filename="registry.csv")
    assert report.encoding == "utf-8"
    assert (report.rows, report.created, report.updated, report.unchanged, report.rejected) == (
        8,
        3,
        0,
        0,
        5,
    )
    by_row = {r["row"]: " ".join(r["reasons"]) for r in report.rejected_rows}
    assert set(by_row) == {3, 5, 6, 7, 8}
    assert f"check character should be '{code(9)[-1]}'" in by_row[3]
    assert "duplicate in file (first at row 2)" in by_row[5]
    assert "outside the city" in by_row[6]
    assert "unparseable date" in by_row[7]
    assert "name is empty" in by_row[8]
    rows = session.execute(
        text(
            "SELECT e.uscc, e.kind, e.industry_code, e.established_on::text, "
            "(SELECT code FROM grid_cell WHERE id = p.cell_id) AS cell_code "
            "FROM market_entity e LEFT JOIN entity_placement p ON p.entity_id = e.id "
            "ORDER BY e.uscc"
        )
    ).all()
    assert {r.uscc for r in rows} == {good[0], good[1], code(7)}
    placed = {r.uscc: r.cell_code for r in rows}
    assert placed[good[0]] == "441900003001001" and placed[good[1]] == "441900004002004"
    assert placed[code(7)] is None  # no coordinates: unplaced, to be geocoded
    detail = {r.uscc: r for r in rows}
    assert detail[good[1]].industry_code == "3971"  # the section letter is dropped
    assert detail[code(7)].established_on == "2001-02-03"
    assert detail[good[0]].kind == "个体工商户"  # from the code's second character


def test_reimport_counts_unchanged_and_updates_only_what_differs(grid, session):
    lines = [
        f"{code(i)},店{i},东莞市东城街道东城中路{i}号,存续,5211,2019-03-01,张三,,113.705,23.005"
        for i in range(1, 4)
    ]
    import_registry(session, csv_bytes(lines))
    again = import_registry(session, csv_bytes(lines))
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
    lines[1] = (
        lines[1].replace("店2", "新店2").replace("113.705", "113.81").replace("23.005", "23.05")
    )
    changed = import_registry(session, csv_bytes(lines))
    assert (changed.created, changed.updated, changed.unchanged) == (0, 1, 2)
    row = session.execute(
        text(
            "SELECT e.name, e.version, "
            "(SELECT code FROM grid_cell WHERE id = p.cell_id) AS cell_code "
            "FROM market_entity e JOIN entity_placement p "
            "ON p.entity_id = e.id WHERE e.uscc = :u"
        ),
        {"u": code(2)},
    ).one()
    assert row.name == "新店2" and row.version == 2 and row.cell_code == "441900004002004"


def test_gb18030_file_is_detected(grid, session):
    lines = [
        f"{code(1)},东莞市虎门镇鑫记五金店,东莞市虎门镇连升路十二号,存续,5232,2018-05-06,黄一,,,"
    ]
    report = import_registry(session, csv_bytes(lines, "gb18030"), filename="导出.csv")
    assert report.encoding == "gb18030" and report.created == 1
    assert session.scalar(text("SELECT name FROM market_entity")) == "东莞市虎门镇鑫记五金店"


def test_xlsx_with_english_headers(grid, session):
    book = Workbook()
    sheet = book.active
    sheet.append(["uscc", "name", "registered_address", "established_on", "lon", "lat"])
    from datetime import datetime

    sheet.append([code(1), "Shop One", "东莞市东城街道", datetime(2021, 6, 1), 113.705, 23.005])
    sheet.append([code(2), "Shop Two", "东莞市东城街道", None, None, None])
    buf = io.BytesIO()
    book.save(buf)
    buf.seek(0)
    report = import_registry(session, buf, filename="registry.xlsx")
    assert (report.created, report.rejected) == (2, 0)


def test_gcj02_coordinates_are_converted(grid, session):
    from geo.crs import wgs84_to_gcj02

    x, y = wgs84_to_gcj02(113.81, 23.05)
    import_registry(session, csv_bytes([f"{code(1)},店,东莞,存续,5211,,,,{x},{y}"]), crs="gcj02")
    lon = session.scalar(text("SELECT ST_X(geom) FROM market_entity"))
    assert abs(lon - 113.81) < 1e-7


def test_a_worker_verified_location_is_not_overwritten_by_the_registry(grid, session):
    import_registry(session, csv_bytes([f"{code(1)},店,东莞,存续,5211,,,,113.705,23.005"]))
    session.execute(
        text(
            "UPDATE market_entity SET geom = ST_SetSRID(ST_MakePoint(113.71, "
            "23.01), 4490), location_source = 'worker_verified'"
        )
    )
    report = import_registry(session, csv_bytes([f"{code(1)},店,东莞,存续,5211,,,,113.8,23.05"]))
    assert report.unchanged == 1
    assert session.scalar(text("SELECT ST_X(geom) FROM market_entity")) == pytest.approx(113.71)


def test_bad_files_are_clear_errors(grid, session):
    with pytest.raises(InvalidInput, match="Missing required column"):
        import_registry(session, io.BytesIO("名称,住所\nx,y\n".encode()))
    with pytest.raises(InvalidInput, match="empty"):
        import_registry(session, io.BytesIO(b""))
    with pytest.raises(InvalidInput, match="XLSX"):
        import_registry(session, io.BytesIO(b"PK\x03\x04 not really a workbook"), filename="x.xlsx")
    assert session.scalar(text("SELECT count(*) FROM market_entity")) == 0
