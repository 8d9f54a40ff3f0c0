"""Departments as data (issue 13): admins add, change and deactivate them through the API and
the CLI (audited; If-Match); only admins see webhook URLs, nobody sees a secret; webhook URLs
pass the webhook policy when they are set; a deactivated department leaves routing."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from backend.cli_departments import departments_group
from tests.conftest import make_token

PROBLEM = "application/problem+json"
SECRET = "a-department-secret-0123456789"
URL = "https://hooks.maritime.example/gridpatrol"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(autouse=True)
def no_allow_list(monkeypatch) -> None:
    monkeypatch.delenv("GRIDPATROL_WEBHOOK_ALLOW", raising=False)


@pytest.fixture()
def roles(client, session) -> dict[str, dict[str, str]]:
    return {
        role: bearer(make_token(client, session, role, **scope))
        for role, scope in (
            ("admin", {}),
            ("auditor", {}),
            ("city_dispatcher", {}),
            ("grid_worker", {}),
            ("department_officer", {"department_code": "SAMR"}),
        )
    }


def create(client, headers, **body: Any) -> Any:
    return client.post(
        "/api/v1/departments",
        json={"code": "MARITIME", "name": "东莞海事局", **body},
        headers=headers,
    )


def audit_events(session, code: str) -> list[Any]:
    return session.execute(
        text(
            "SELECT action, actor_role, changes FROM audit_event "
            "WHERE object_type = 'department' AND object_id = :c ORDER BY id"
        ),
        {"c": code},
    ).all()


def count(session) -> int:
    return session.scalar(text("SELECT count(*) FROM department"))


# --------------------------------------------------------------------------- reading


def test_only_admins_see_webhook_urls_and_nobody_sees_a_secret(client, roles):
    made = create(
        client, roles["admin"], webhook_url=URL, webhook_secret=SECRET, town_branches=True
    )
    assert made.status_code == 201, made.get_json()
    for role, headers in roles.items():
        resp = client.get("/api/v1/departments", headers=headers)
        assert resp.status_code == 200, (role, resp.get_json())
        raw = resp.get_data(as_text=True)
        assert SECRET not in raw and "webhook_secret" not in raw, role
        listed = {d["code"]: d for d in resp.get_json()}
        assert listed["MARITIME"]["has_webhook"] is True
        assert listed["SAMR"]["has_webhook"] is False
        one = client.get("/api/v1/departments/MARITIME", headers=headers)
        assert one.status_code == 200 and one.headers["ETag"] == '"1"'
        assert SECRET not in one.get_data(as_text=True)
        if role == "admin":
            assert listed["MARITIME"]["webhook_url"] == URL
            assert one.get_json()["webhook_url"] == URL
        else:
            assert "webhook_url" not in listed["MARITIME"], role
            assert URL not in raw and URL not in one.get_data(as_text=True), role
    assert client.get("/api/v1/departments").status_code == 401
    assert client.get("/api/v1/departments/NOSUCH", headers=roles["admin"]).status_code == 404


# --------------------------------------------------------------------------- creating


def test_admins_add_a_department(client, roles, session):
    before = count(session)
    resp = create(client, roles["admin"], webhook_url=URL, webhook_secret=SECRET)
    assert resp.status_code == 201, resp.get_json()
    assert resp.headers["ETag"] == '"1"'
    body = resp.get_json()
    assert body["code"] == "MARITIME" and body["name"] == "东莞海事局"
    assert body["active"] is True and body["town_branches"] is False
    assert body["has_webhook"] is True and body["version"] == 1
    assert "webhook_secret" not in body
    assert count(session) == before + 1
    ((action, role, changes),) = audit_events(session, "MARITIME")
    assert (action, role) == ("create", "admin")
    assert changes["name"] == {"from": None, "to": "东莞海事局"}
    assert changes["webhook_secret"] == {"from": None, "to": "(set)"}
    assert SECRET not in str(changes)
    # the new department can be routed to
    rule = client.post(
        "/api/v1/routing/rules",
        json={"finding_type": "ship_unlicensed", "department_code": "MARITIME"}
        | {"time_limit_days": 10},
        headers=roles["admin"],
    )
    assert rule.status_code == 201, rule.get_json()
    explained = client.post(
        "/api/v1/routing/explain", json={"finding_type": "ship_unlicensed"}, headers=roles["admin"]
    ).get_json()
    assert explained["department_code"] == "MARITIME"


@pytest.mark.parametrize(
    "body",
    [
        {"code": "maritime"},
        {"code": "M"},
        {"code": "9MARITIME"},
        {"code": "M" * 33},
        {"code": "MARI-TIME"},
        {"name": ""},
        {"name": "名" * 101},
        {"name": None},
        {"town_branches": "sometimes"},
        {"webhook_secret": "short"},
        {"unknown": 1},
    ],
)
def test_bad_bodies_are_422_and_write_nothing(client, roles, session, body):
    before = count(session)
    resp = create(client, roles["admin"], **body)
    assert resp.status_code == 422, resp.get_json()
    assert resp.mimetype == PROBLEM and resp.get_json()["errors"]
    assert count(session) == before


def test_blank_names_and_a_url_without_a_secret_are_422(client, roles, session):
    before = count(session)
    for body in ({"name": "   "}, {"webhook_url": URL}):
        resp = create(client, roles["admin"], **body)
        assert resp.status_code == 422, (body, resp.get_json())
        assert resp.mimetype == PROBLEM
    assert count(session) == before


def test_taken_codes_and_names_are_409(client, roles, session):
    assert create(client, roles["admin"]).status_code == 201
    before = count(session)
    for body in (
        {"code": "MARITIME", "name": "另一个名字"},
        {"code": "SAMR", "name": "新的市场监管"},
        {"code": "MARITIME2", "name": "东莞海事局"},
        {"code": "DRUG2", "name": "东莞市药品监督管理局"},
    ):
        resp = client.post("/api/v1/departments", json=body, headers=roles["admin"])
        assert resp.status_code == 409, (body, resp.get_json())
        assert resp.mimetype == PROBLEM
    assert count(session) == before


def test_only_admins_write(client, roles, session):
    before = count(session)
    for role, headers in roles.items():
        if role == "admin":
            continue
        assert create(client, headers).status_code == 403, role
        resp = client.patch(
            "/api/v1/departments/SAMR",
            json={"name": "x"},
            headers={**headers, "If-Match": '"1"'},
        )
        assert resp.status_code == 403, role
    assert count(session) == before
    assert create(client, {}).status_code == 401


# --------------------------------------------------------------------------- webhook policy


REFUSED_URLS = [
    "https://127.0.0.1/hook",
    "http://127.0.0.1:8080/hook",
    "https://localhost/hook",
    "https://hooks.localhost/hook",
    "https://[::1]/hook",
    "https://0.0.0.0/hook",
    "https://2130706433/hook",
    "https://0x7f.1/hook",
    "https://017700000001/hook",
    "https://169.254.169.254/latest/meta-data/",
    "https://10.0.0.8/hook",
    "https://[::ffff:127.0.0.1]/hook",
    "http://hooks.maritime.example/hook",  # https is required
    "ftp://hooks.maritime.example/hook",
    "not a url",
]


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_webhook_urls_refused_by_policy_are_422(client, roles, session, url):
    before = count(session)
    resp = create(client, roles["admin"], webhook_url=url, webhook_secret=SECRET)
    assert resp.status_code == 422, resp.get_json()
    assert resp.mimetype == PROBLEM
    problem = resp.get_json()
    assert problem["detail"].startswith("The webhook URL is refused")
    assert [e["field"] for e in problem["errors"]] == ["webhook_url"]
    assert count(session) == before
    # the same on a change, which leaves the department as it was
    samr = client.get("/api/v1/departments/SAMR", headers=roles["admin"]).get_json()
    resp = client.patch(
        "/api/v1/departments/SAMR",
        json={"webhook_url": url, "webhook_secret": SECRET},
        headers={**roles["admin"], "If-Match": f'"{samr["version"]}"'},
    )
    assert resp.status_code == 422 and resp.mimetype == PROBLEM
    after = client.get("/api/v1/departments/SAMR", headers=roles["admin"]).get_json()
    assert after == samr


def test_the_allow_list_admits_private_http_webhooks(client, roles, monkeypatch):
    monkeypatch.setenv("GRIDPATROL_WEBHOOK_ALLOW", "10.0.0.0/8, hooks.gov.lan")
    for n, url in enumerate(("http://10.0.0.8:8080/hook", "http://hooks.gov.lan/hook")):
        resp = client.post(
            "/api/v1/departments",
            json={"code": f"LAN{n}", "name": f"内网部门{n}", "webhook_url": url}
            | {"webhook_secret": SECRET},
            headers=roles["admin"],
        )
        assert resp.status_code == 201, resp.get_json()
        assert resp.get_json()["webhook_url"] == url
    assert create(client, roles["admin"], webhook_url="http://127.0.0.1/").status_code == 422


# --------------------------------------------------------------------------- changing


def test_patch_needs_if_match_and_is_audited(client, roles, session):
    assert create(client, roles["admin"]).status_code == 201
    admin = roles["admin"]
    change = {"name": "东莞海事局（新）", "town_branches": True}
    assert client.patch("/api/v1/departments/MARITIME", json=change, headers=admin).status_code == (
        428
    )
    stale = client.patch(
        "/api/v1/departments/MARITIME", json=change, headers={**admin, "If-Match": '"7"'}
    )
    assert stale.status_code == 412 and stale.mimetype == PROBLEM
    resp = client.patch(
        "/api/v1/departments/MARITIME",
        json={**change, "webhook_url": URL, "webhook_secret": SECRET},
        headers={**admin, "If-Match": '"1"'},
    )
    assert resp.status_code == 200, resp.get_json()
    assert resp.headers["ETag"] == '"2"'
    body = resp.get_json()
    assert (body["name"], body["town_branches"], body["webhook_url"]) == (
        "东莞海事局（新）",
        True,
        URL,
    )
    events = audit_events(session, "MARITIME")
    assert [e.action for e in events] == ["create", "update"]
    assert events[1].changes["webhook_secret"] == {"from": None, "to": "(set)"}
    assert events[1].changes["name"]["to"] == "东莞海事局（新）"
    # removing the webhook
    resp = client.patch(
        "/api/v1/departments/MARITIME",
        json={"webhook_url": None},
        headers={**admin, "If-Match": '"2"'},
    )
    assert resp.status_code == 200 and resp.get_json()["has_webhook"] is False
    unknown = client.patch(
        "/api/v1/departments/NOSUCH", json={"name": "x"}, headers={**admin, "If-Match": '"1"'}
    )
    assert unknown.status_code == 404 and unknown.mimetype == PROBLEM


def test_deactivating_a_department_rules_point_at_is_409(client, roles, session):
    admin = roles["admin"]
    assert create(client, admin).status_code == 201
    rule = client.post(
        "/api/v1/routing/rules",
        json={"finding_type": "ship_unlicensed", "department_code": "MARITIME"}
        | {"time_limit_days": 10},
        headers=admin,
    ).get_json()
    resp = client.patch(
        "/api/v1/departments/MARITIME",
        json={"active": False},
        headers={**admin, "If-Match": '"1"'},
    )
    assert resp.status_code == 409 and resp.mimetype == PROBLEM
    assert resp.get_json()["active_rules"] == [rule["id"]]
    assert session.scalar(text("SELECT active FROM department WHERE code = 'MARITIME'"))
    # the rule is deactivated first; then the department can be
    off = client.patch(
        f"/api/v1/routing/rules/{rule['id']}",
        json={"active": False},
        headers={**admin, "If-Match": f'"{rule["version"]}"'},
    )
    assert off.status_code == 200, off.get_json()
    resp = client.patch(
        "/api/v1/departments/MARITIME",
        json={"active": False},
        headers={**admin, "If-Match": '"1"'},
    )
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["active"] is False
    assert audit_events(session, "MARITIME")[-1].changes == {"active": {"from": True, "to": False}}
    # out of the lists, unless asked for; still readable, never deleted
    listed = client.get("/api/v1/departments", headers=roles["grid_worker"]).get_json()
    assert "MARITIME" not in {d["code"] for d in listed}
    listed = client.get("/api/v1/departments?include_inactive=true", headers=admin).get_json()
    assert {d["code"]: d["active"] for d in listed}["MARITIME"] is False
    # no rule may point at it now: new, re-pointed, or reactivated
    for method, url, body, version in (
        ("POST", "/api/v1/routing/rules", {"finding_type": "boat", "time_limit_days": 5}, None),
        ("PATCH", "/api/v1/routing/rules/1", {}, 1),
        ("PATCH", f"/api/v1/routing/rules/{rule['id']}", {"active": True}, 2),
    ):
        if method == "POST" or not body:
            body = {**body, "department_code": "MARITIME"}
        headers = admin if version is None else {**admin, "If-Match": f'"{version}"'}
        resp = client.open(url, method=method, json=body, headers=headers)
        assert resp.status_code == 422, (url, body, resp.get_json())
        assert "inactive" in resp.get_json()["detail"]
    # nor may a dispatcher re-route a referral to it
    rerouted = client.post(
        "/api/v1/referrals/999999/reroute",
        json={"department_code": "MARITIME", "reason": "海事归海事局"},
        headers={**admin, "If-Match": '"1"'},
    )
    assert rerouted.status_code == 422 and "No active department" in rerouted.get_json()["detail"]
    unknown = client.post(
        "/api/v1/routing/rules",
        json={"finding_type": "boat", "time_limit_days": 5, "department_code": "NOSUCH"},
        headers=admin,
    )
    assert unknown.status_code == 422
    # reactivated: the rule may come back
    back = client.patch(
        "/api/v1/departments/MARITIME", json={"active": True}, headers={**admin, "If-Match": '"2"'}
    )
    assert back.status_code == 200 and back.get_json()["active"] is True


def test_routing_never_picks_a_rule_of_an_inactive_department(client, roles, session):
    """A department deactivated while a rule still pointed at it (e.g. by an operator in SQL,
    with its audit event): its rules stop matching; the default rule takes over."""
    admin = roles["admin"]
    assert create(client, admin).status_code == 201
    client.post(
        "/api/v1/routing/rules",
        json={"finding_type": "ship_unlicensed", "department_code": "MARITIME"}
        | {"time_limit_days": 10},
        headers=admin,
    )
    ask = {"finding_type": "ship_unlicensed"}
    explained = client.post("/api/v1/routing/explain", json=ask, headers=admin).get_json()
    assert explained["department_code"] == "MARITIME"
    session.execute(text("UPDATE department SET active = false WHERE code = 'MARITIME'"))
    from backend.services import audit

    audit.record(session, "update", "department", "MARITIME", changes={"active": {"to": False}})
    session.commit()
    explained = client.post("/api/v1/routing/explain", json=ask, headers=admin).get_json()
    assert explained["department_code"] == "SAMR" and "default" in explained["why"]
    assert "MARITIME" not in {c["department_code"] for c in explained["other_candidates"]}


def test_a_department_write_without_its_audit_event_is_refused_by_the_database(engine):
    with engine.connect() as conn:
        trans = conn.begin()
        conn.execute(text("INSERT INTO department (code, name) VALUES ('UNAUDITED', '无审计')"))
        with pytest.raises(DBAPIError, match="no audit event"):
            trans.commit()
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM department WHERE code = 'UNAUDITED'")) == 0


def test_the_openapi_document_describes_the_operations(client):
    paths = client.get("/api/openapi.json").get_json()["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/departments"])
    assert {"get", "patch"} <= set(paths["/api/v1/departments/{code}"])
    assert "delete" not in paths["/api/v1/departments/{code}"]  # never deleted


# --------------------------------------------------------------------------- CLI


def test_cli_list_add_update_deactivate(app, session):
    runner = CliRunner()
    obj = {"session_factory": app.extensions["gridpatrol.sessionmaker"]}
    result = runner.invoke(
        departments_group,
        ["add", "MARITIME", "东莞海事局", "--town-branches", "--webhook-url", URL],
        obj=obj,
        input=SECRET + "\n",
    )
    assert result.exit_code == 0, result.output
    assert "MARITIME" in result.output and SECRET not in result.output
    row = session.execute(
        text("SELECT town_branches, webhook_url, webhook_secret FROM department WHERE code = :c"),
        {"c": "MARITIME"},
    ).one()
    assert tuple(row) == (True, URL, SECRET)
    events = audit_events(session, "MARITIME")
    assert [(e.action, e.actor_role) for e in events] == [("create", "system")]
    actor = session.scalar(
        text(
            "SELECT actor_username FROM audit_event WHERE object_type = 'department' "
            "AND object_id = 'MARITIME'"
        )
    )
    assert actor.startswith("cli:")

    result = runner.invoke(departments_group, ["list", "--json"], obj=obj)
    assert result.exit_code == 0 and '"MARITIME"' in result.output and SECRET not in result.output

    result = runner.invoke(
        departments_group, ["update", "MARITIME", "--name", "海事局", "--no-town-branches"], obj=obj
    )
    assert result.exit_code == 0, result.output
    assert session.scalar(text("SELECT name FROM department WHERE code = 'MARITIME'")) == "海事局"

    refused = runner.invoke(
        departments_group, ["update", "MARITIME", "--webhook-url", "http://127.0.0.1/"], obj=obj
    )
    assert refused.exit_code == 1 and "refused" in refused.output
    stale = runner.invoke(
        departments_group, ["update", "MARITIME", "--name", "x", "--if-version", "1"], obj=obj
    )
    assert stale.exit_code == 1 and "changed since version 1" in stale.output
    taken = runner.invoke(departments_group, ["add", "SAMR", "重复"], obj=obj)
    assert taken.exit_code == 1 and "already exists" in taken.output

    result = runner.invoke(departments_group, ["deactivate", "MARITIME"], obj=obj)
    assert result.exit_code == 0, result.output
    assert "INACTIVE" in result.output
    listed = runner.invoke(departments_group, ["list"], obj=obj).output
    assert "MARITIME" not in listed
    assert "MARITIME" in runner.invoke(departments_group, ["list", "--all"], obj=obj).output
    # SAMR's rules still point at it: refused, with the rule ids
    busy = runner.invoke(departments_group, ["deactivate", "SAMR"], obj=obj)
    assert busy.exit_code == 1 and "rules" in busy.output
    assert session.scalar(text("SELECT active FROM department WHERE code = 'SAMR'"))
    assert [e.action for e in audit_events(session, "MARITIME")] == ["create", "update", "update"]
