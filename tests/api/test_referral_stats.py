"""The 三率 of 74號 item 11 from GET /api/v1/referrals/stats equal a hand count.

One real referral comes through the phone (so finding and referral are shaped as in
production); the rest of the table is written beside it, each row a finding type, the
department and the result the department reported."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.api.test_referrals import do_task, world  # noqa: F401  (fixture)

# (finding type, department, result or None while open)
TABLE = [
    ("unlicensed_operation", "SAMR", "case_opened"),
    ("unlicensed_operation", "SAMR", "no_violation"),
    ("unlicensed_operation", "SAMR", None),
    ("permit_missing", "SAMR", "permit_issued"),
    ("permit_missing", "SAMR", "case_opened"),
    ("address_unreachable", "SAMR", "listed_abnormal"),
    ("address_unreachable", "SAMR", "case_opened"),  # a case, but not from a lead of 无照/无证
    ("sign_mismatch", "SAMR", "rectified"),
    ("license_not_displayed", "SAMR", None),
    ("permit_missing", "POLICE", "permit_issued"),
    ("permit_missing", "POLICE", None),
    ("sign_mismatch", "POLICE", "case_opened"),
]

# counted by hand from TABLE
EXPECTED = {
    "SAMR": {
        "received": 9,
        "with_feedback": 7,
        "feedback_rate": round(7 / 9, 4),
        "cases_opened": 3,
        "unlicensed_referrals": 5,
        "unlicensed_cases_opened": 2,
        "case_conversion_rate": 0.4,
        "permit_referrals": 2,
        "permits_issued": 1,
        "permit_issue_rate": 0.5,
    },
    "POLICE": {
        "received": 3,
        "with_feedback": 2,
        "feedback_rate": round(2 / 3, 4),
        "cases_opened": 1,
        "unlicensed_referrals": 2,
        "unlicensed_cases_opened": 0,
        "case_conversion_rate": 0.0,
        "permit_referrals": 2,
        "permits_issued": 1,
        "permit_issue_rate": 0.5,
    },
}


@pytest.fixture()
def table(client, world, session):  # noqa: F811
    answer = do_task(
        client,
        world["worker"],
        "license_check",
        {"permits_needed": ["药品经营许可证"], "permits_shown": []},
    )
    (finding,) = answer["findings"]
    real = session.execute(
        text(
            "SELECT f.task_id, f.submission_id, f.entity_id, r.id AS referral_id "
            "FROM finding f JOIN referral r ON r.finding_id = f.id WHERE f.id = :f"
        ),
        {"f": finding["id"]},
    ).one()
    # the phone's referral is not part of the table: take it out of the counted period
    session.execute(
        text("UPDATE referral SET created_at = '2001-01-01' WHERE id = :r"),
        {"r": real.referral_id},
    )
    for kind, department, result in TABLE:
        session.execute(
            text(
                "WITH f AS (INSERT INTO finding (type, task_id, submission_id, entity_id) "
                "VALUES (:kind, :task, :sub, :entity) RETURNING id) "
                "INSERT INTO referral (finding_id, entity_id, department_code, town_code, "
                "status, due_on, result, concluded_at) "
                "SELECT f.id, :entity, :dept, '441900003', "
                "CASE WHEN CAST(:result AS text) IS NULL THEN 'accepted' ELSE 'concluded' END, "
                "DATE '2030-01-10', :result, "
                "CASE WHEN CAST(:result AS text) IS NULL THEN NULL ELSE now() END FROM f"
            ),
            {
                "kind": kind,
                "task": real.task_id,
                "sub": real.submission_id,
                "entity": real.entity_id,
                "dept": department,
                "result": result,
            },
        )


def test_three_rates_equal_a_hand_count(client, admin_headers, table):
    resp = client.get(
        "/api/v1/referrals/stats?from=2020-01-01&to=2035-12-31&by=department",
        headers=admin_headers,
    )
    assert resp.status_code == 200, resp.get_json()
    rows = {r["department_code"]: r for r in resp.get_json()["rows"]}
    assert set(rows) == set(EXPECTED)
    for department, expected in EXPECTED.items():
        got = {k: rows[department][k] for k in expected}
        assert got == expected, department


def test_a_rate_without_a_denominator_is_null(client, admin_headers, table, session):
    session.execute(text("DELETE FROM referral WHERE department_code = 'POLICE'"))
    session.execute(
        text(
            "UPDATE referral SET department_code = 'POLICE' WHERE id = (SELECT r.id FROM "
            "referral r JOIN finding f ON f.id = r.finding_id WHERE f.type = 'sign_mismatch' "
            "AND r.created_at > '2020-01-01' LIMIT 1)"
        )
    )
    rows = client.get(
        "/api/v1/referrals/stats?from=2020-01-01&to=2035-12-31&by=department",
        headers=admin_headers,
    ).get_json()["rows"]
    police = next(r for r in rows if r["department_code"] == "POLICE")
    assert police["received"] == 1
    assert police["case_conversion_rate"] is None and police["permit_issue_rate"] is None
