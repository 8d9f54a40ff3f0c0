"""Permit types as a code list (issue 13): what the phone sends is a code (a name or alias is
taken as its code, anything else is refused with the codes), findings and rules hold codes,
each permit is routed to the department that issues it, and an industry's permits come from
the permit requirements. Also the Dongguan corrections: drug retail → 市场监管, 成品油零售 →
商务, a petrol station's 危险化学品经营许可 → 应急管理."""

from __future__ import annotations

import csv
import io
import uuid
from importlib.resources import files

import pytest
from sqlalchemy import text

from backend.domain.permits import PermitCatalog, permit_key
from backend.services import routing
from tests.api.test_referrals import SHOP, do_task, world  # noqa: F401  (fixture)

PROBLEM = "application/problem+json"


def seed(name: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO((files("backend") / "data" / name).read_text("utf-8"))))


def _submit(client, worker, task_type: str, outcome: dict, sid: str):
    """Accept, check in and submit the task of `task_type` at the shop; the raw answer."""
    tasks = client.get(
        f"/api/mobile/v1/tasks?lon={SHOP[0]}&lat={SHOP[1]}&crs=cgcs2000", headers=worker
    ).get_json()
    task = next(t for t in tasks if t["type"] == task_type)
    if task["status"] == "assigned":
        client.post(f"/api/mobile/v1/tasks/{task['id']}/accept", headers=worker)
    client.post(
        f"/api/mobile/v1/tasks/{task['id']}/check-in",
        json={"lon": SHOP[0], "lat": SHOP[1], "crs": "cgcs2000"},
        headers=worker,
    )
    body = {
        "id": sid,
        "task_id": task["id"],
        "outcome": outcome,
        "point": {"lon": SHOP[0], "lat": SHOP[1], "crs": "cgcs2000"},
    }
    return task, client.post("/api/mobile/v1/submissions", json=body, headers=worker)


# --------------------------------------------------------------------------- outcomes


def test_a_name_without_zheng_goes_to_the_food_rule(client, world, session):  # noqa: F811
    answer = do_task(
        client,
        world["worker"],
        "license_check",
        {"permits_needed": ["食品经营许可 ", "food_business"], "permits_shown": []},
    )
    (finding,) = answer["findings"]  # both spellings are one permit
    assert finding["permit_type"] == "FOOD_BUSINESS"
    referral = session.execute(
        text(
            "SELECT r.department_code, r.town_code, x.permit_type, x.finding_type, x.note "
            "FROM referral r JOIN routing_rule x ON x.id = r.rule_id WHERE r.id = :r"
        ),
        {"r": finding["referral_id"]},
    ).one()
    # SAMR's food rule, not the catch-all "permit not listed" rule
    assert referral.department_code == "SAMR"
    assert (referral.finding_type, referral.permit_type) == ("permit_missing", "FOOD_BUSINESS")
    stored = session.scalar(
        text(
            "SELECT outcome FROM submission s JOIN finding f ON f.submission_id = s.id "
            "WHERE f.id = :f"
        ),
        {"f": finding["id"]},
    )
    assert stored["permits_needed"] == ["FOOD_BUSINESS"]
    assert "食品经营许可证" in finding["notice"]["text"]


def test_unknown_permit_text_is_422_and_writes_nothing(client, world, session):  # noqa: F811
    sid = str(uuid.uuid4())
    task, resp = _submit(
        client,
        world["worker"],
        "license_check",
        {"permits_needed": ["食品经营许可证", "卫生许可证"], "permits_shown": ["营业执照"]},
        sid,
    )
    assert resp.status_code == 422 and resp.mimetype == PROBLEM, resp.get_json()
    problem = resp.get_json()
    for code in ("FOOD_BUSINESS", "OIL_RETAIL", "HAZCHEM_TRADE", "DRUG_BUSINESS"):
        assert code in problem["detail"]
    assert [e["field"] for e in problem["errors"]] == [
        "outcome.permits_needed.1",
        "outcome.permits_shown.0",
    ]
    assert "卫生许可证" in problem["errors"][0]["messages"][0]
    assert "FOOD_BUSINESS" in problem["errors"][0]["messages"][0]
    assert session.scalar(text("SELECT count(*) FROM submission WHERE id = :s"), {"s": sid}) == 0
    assert session.scalar(text("SELECT count(*) FROM finding")) == 0
    status = session.scalar(text("SELECT status FROM patrol_task WHERE id = :t"), {"t": task["id"]})
    assert status == "in_progress"

    # the same through an offline sync: that item is refused, nothing written
    synced = client.post(
        "/api/mobile/v1/sync",
        json={
            "submissions": [
                {
                    "id": sid,
                    "task_id": task["id"],
                    "outcome": {"permits_needed": ["无此许可"], "permits_shown": []},
                    "point": {"lon": SHOP[0], "lat": SHOP[1], "crs": "cgcs2000"},
                }
            ]
        },
        headers=world["worker"],
    ).get_json()
    (item,) = synced["results"]
    assert item["status"] == 422
    assert item["problem"]["errors"][0]["field"] == "outcome.permits_needed.0"
    assert session.scalar(text("SELECT count(*) FROM submission WHERE id = :s"), {"s": sid}) == 0


# --------------------------------------------------------------------------- routing


@pytest.mark.parametrize(
    ("finding_type", "permit", "industry", "department"),
    [
        ("permit_missing", "DRUG_BUSINESS", "5251", "SAMR"),
        ("permit_missing", "药品经营许可证", None, "SAMR"),
        ("unlicensed_operation", None, "5251", "SAMR"),
        ("unlicensed_operation", None, "5252", "SAMR"),
        ("permit_missing", "OIL_RETAIL", "5265", "COMMERCE"),
        ("permit_missing", "成品油零售经营批准证书", None, "COMMERCE"),
        ("permit_missing", "HAZCHEM_TRADE", "5265", "EMERGENCY"),
        ("permit_missing", "FOOD_BUSINESS", "5212", "SAMR"),
    ],
)
def test_drug_oil_and_hazchem_routing(
    client, admin_headers, finding_type, permit, industry, department
):
    body = {"finding_type": finding_type, "town_code": "441900003"}
    if permit:
        body["permit_type"] = permit
    if industry:
        body["industry_code"] = industry
    resp = client.post("/api/v1/routing/explain", json=body, headers=admin_headers)
    assert resp.status_code == 200, resp.get_json()
    answer = resp.get_json()
    assert answer["department_code"] == department, answer
    assert answer["rule"]["department_code"] == department
    if permit:
        assert answer["rule"]["permit_type"] == answer["finding"]["permit_type"]
        assert answer["finding"]["permit_type"].isascii()  # the name became its code


def test_the_drug_administration_is_kept_inactive_with_no_live_rule(client, admin_headers, session):
    row = session.execute(text("SELECT active, name FROM department WHERE code = 'DRUG'")).one()
    assert row.active is False  # referrals may name it; never deleted
    assert not session.scalar(
        text("SELECT count(*) FROM routing_rule WHERE active AND department_code = 'DRUG'")
    )
    listed = client.get("/api/v1/departments", headers=admin_headers).get_json()
    codes = {d["code"] for d in listed}
    assert "DRUG" not in codes and {"COMMERCE", "SAMR", "EMERGENCY"} <= codes


def test_unknown_permit_in_explain_is_422(client, admin_headers):
    resp = client.post(
        "/api/v1/routing/explain",
        json={"finding_type": "permit_missing", "permit_type": "卫生许可证"},
        headers=admin_headers,
    )
    assert resp.status_code == 422 and resp.mimetype == PROBLEM
    assert "FOOD_BUSINESS" in resp.get_json()["detail"]


def test_every_permit_type_has_a_permit_missing_rule_to_its_issuing_department(session):
    types = session.execute(
        text("SELECT code, department_code FROM permit_type WHERE active ORDER BY code")
    ).all()
    assert len(types) == len(seed("permit_types.csv"))
    for code, department in types:
        decision = routing.route(session, "permit_missing", permit_type=code)
        assert decision["rule"]["permit_type"] == code, code
        assert decision["department_code"] == department, code
    # and the seed files say the same
    issuing = {r["code"]: r["department"] for r in seed("permit_types.csv")}
    rules = {
        r["permit_type"]: r["department"]
        for r in seed("routing_rules.csv")
        if r["finding_type"] == "permit_missing" and r["permit_type"]
    }
    assert rules == issuing


def test_seed_rows_cite_their_legal_basis_and_name_known_codes(session):
    codes = {r["code"] for r in seed("permit_types.csv")}
    departments = {r["code"] for r in seed("departments.csv")}
    assert "DRUG" not in departments and "COMMERCE" in departments
    for name in ("departments.csv", "routing_rules.csv", "permit_requirements.csv"):
        for row in seed(name):
            assert row["legal_basis"].startswith(("《", "成品油")), (name, row)
            if row.get("permit_type"):
                assert row["permit_type"] in codes, (name, row)
    for row in seed("permit_types.csv"):
        assert row["legal_basis"].startswith("《") and row["department"] in departments
    # no spelling names two permits
    catalog = PermitCatalog.of(
        (r["code"], r["name"], r["aliases"].split("|")) for r in seed("permit_types.csv")
    )
    spellings = [
        permit_key(t)
        for r in seed("permit_types.csv")
        for t in (r["code"], r["name"], *r["aliases"].split("|"))
    ]
    assert len(spellings) == len(set(spellings))
    assert catalog.resolve("烟花爆竹经营(零售)许可证") == "FIREWORKS_RETAIL"  # ASCII brackets
    # the database holds what the files say
    assert session.scalar(text("SELECT count(*) FROM routing_rule WHERE legal_basis IS NULL")) == 0
    assert (
        session.scalar(text("SELECT count(*) FROM permit_requirement WHERE legal_basis IS NULL"))
        == 0
    )


# --------------------------------------------------------------------------- the lists


def codes_of(resp) -> dict[str, str]:
    assert resp.status_code == 200, resp.get_json()
    return {p["code"]: p["department_code"] for p in resp.get_json()}


def test_the_permits_an_industry_needs(client, worker_headers, admin_headers):
    get = client.get
    assert codes_of(get("/api/v1/permit-types?industry=5265", headers=worker_headers)) == {
        "OIL_RETAIL": "COMMERCE",
        "HAZCHEM_TRADE": "EMERGENCY",
    }
    assert codes_of(get("/api/v1/permit-types?industry=6110", headers=admin_headers)) == {
        "FOOD_BUSINESS": "SAMR",
        "SPECIAL_TRADE": "POLICE",
    }
    assert codes_of(get("/api/v1/permit-types?industry=6210", headers=admin_headers)) == {
        "FOOD_BUSINESS": "SAMR"  # 餐饮业, by the prefix 62
    }
    assert codes_of(get("/api/v1/permit-types?industry=5251", headers=admin_headers)) == {
        "DRUG_BUSINESS": "SAMR"
    }
    # 食用农产品 and pre-packaged food: no 食品经营许可 (备案 at most)
    for industry in ("5223", "5224", "5225", "5226"):
        assert (
            codes_of(get(f"/api/v1/permit-types?industry={industry}", headers=admin_headers)) == {}
        )
    everything = get("/api/v1/permit-types", headers=worker_headers).get_json()
    assert len(everything) == len(seed("permit_types.csv"))
    food = next(p for p in everything if p["code"] == "FOOD_BUSINESS")
    assert food["name"] == "食品经营许可证" and "食品经营许可" in food["aliases"]
    assert food["legal_basis"] == "《中华人民共和国食品安全法》第三十五条"
    bad = get("/api/v1/permit-types?industry=52a1", headers=admin_headers)
    assert bad.status_code == 422 and bad.mimetype == PROBLEM


def test_the_phone_gets_the_pick_list(client, world):  # noqa: F811
    worker = world["worker"]
    listed = client.get("/api/mobile/v1/permit-types?industry=5265", headers=worker)
    assert set(codes_of(listed)) == {"OIL_RETAIL", "HAZCHEM_TRADE"}
    tasks = client.get(
        f"/api/mobile/v1/tasks?lon={SHOP[0]}&lat={SHOP[1]}&crs=cgcs2000", headers=worker
    ).get_json()
    check = next(t for t in tasks if t["type"] == "license_check")
    assert "permit_types" not in check  # the near-me rows stay short
    detail = client.get(f"/api/mobile/v1/tasks/{check['id']}", headers=worker).get_json()
    assert {p["code"] for p in detail["permit_types"]} == {"OIL_RETAIL", "HAZCHEM_TRADE"}
    other = next(t for t in tasks if t["type"] != "license_check")
    assert (
        "permit_types"
        not in client.get(f"/api/mobile/v1/tasks/{other['id']}", headers=worker).get_json()
    )


# --------------------------------------------------------------------------- rules


def test_rules_take_permit_codes_and_carry_their_legal_basis(client, admin_headers, session):
    rules = client.get("/api/v1/routing/rules", headers=admin_headers).get_json()
    oil = next(r for r in rules if r["permit_type"] == "OIL_RETAIL")
    assert oil["department_code"] == "COMMERCE" and "国务院令第412号" in oil["legal_basis"]
    new = {
        "finding_type": "permit_missing",
        "industry_prefix": "5265",
        "department_code": "EMERGENCY",
        "time_limit_days": 3,
    }
    bad = client.post(
        "/api/v1/routing/rules", json={**new, "permit_type": "加油许可"}, headers=admin_headers
    )
    assert bad.status_code == 422 and bad.mimetype == PROBLEM
    assert "OIL_RETAIL" in bad.get_json()["detail"]
    made = client.post(
        "/api/v1/routing/rules",
        json={**new, "permit_type": "HAZCHEM_TRADE", "legal_basis": "《危险化学品安全管理条例》"},
        headers=admin_headers,
    )
    assert made.status_code == 201, made.get_json()
    rule = made.get_json()
    assert rule["legal_basis"] == "《危险化学品安全管理条例》"
    changed = client.patch(
        f"/api/v1/routing/rules/{rule['id']}",
        json={"legal_basis": "《危险化学品安全管理条例》第三十三条"},
        headers={**admin_headers, "If-Match": f'"{rule["version"]}"'},
    )
    assert changed.status_code == 200, changed.get_json()
    assert changed.get_json()["legal_basis"].endswith("第三十三条")
    # a name is taken as its code
    by_name = client.post(
        "/api/v1/routing/rules",
        json={**new, "industry_prefix": "5162", "permit_type": "危险化学品经营许可证"},
        headers=admin_headers,
    )
    assert by_name.status_code == 201 and by_name.get_json()["permit_type"] == "HAZCHEM_TRADE"
