"""Health, OpenAPI, problem+json errors and authentication basics, through HTTP."""

from __future__ import annotations

from backend.app import create_app
from backend.config import Settings

PROBLEM = "application/problem+json"


def test_healthz_reports_versions(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["status"] == "ok"
    assert body["database"].startswith("15") or body["database"][0].isdigit()
    assert body["postgis"].startswith("3.")
    assert resp.headers["X-Request-ID"]


def test_healthz_503_when_database_unreachable():
    app = create_app(
        Settings(
            database_url="postgresql://nobody@127.0.0.1:1/none",
            secret_key="k" * 40,
            environment="test",
        )
    )
    resp = app.test_client().get("/healthz")
    assert resp.status_code == 503
    assert resp.mimetype == PROBLEM
    assert resp.get_json()["status"] == 503


def test_request_id_is_echoed(client):
    resp = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert resp.headers["X-Request-ID"] == "abc-123"
    resp = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert resp.headers["X-Request-ID"] != "bad id with spaces"


def test_openapi_document_and_docs(client):
    spec = client.get("/api/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert "/api/v1/grid/locate" in spec["paths"]
    assert "/api/v1/grid/imports" in spec["paths"]
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert spec["paths"]["/healthz"]["get"]["security"] == []
    page = client.get("/api/docs")
    assert page.status_code == 200
    assert b"/api/docs/assets/swagger-ui-bundle.js" in page.data  # no CDN needed
    asset = client.get("/api/docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200 and len(asset.data) > 100_000
    assert client.get("/api/docs/assets/../../app.py").status_code == 404


def test_unknown_route_is_problem_json(client):
    resp = client.get("/no/such/thing")
    assert resp.status_code == 404
    assert resp.mimetype == PROBLEM
    body = resp.get_json()
    assert body["status"] == 404 and body["title"] == "Not Found"
    assert "no/such/thing" in body["detail"]


def test_wrong_method_is_problem_json(client):
    resp = client.delete("/healthz")
    assert resp.status_code == 405
    assert resp.mimetype == PROBLEM


def test_malformed_json_is_400_problem(client):
    resp = client.post("/api/v1/auth/login", data=b"{not json", content_type="application/json")
    assert resp.status_code == 400
    assert resp.mimetype == PROBLEM


def test_validation_errors_list_each_field(client):
    resp = client.post("/api/v1/auth/login", json={"username": 5})
    assert resp.status_code == 422
    assert resp.mimetype == PROBLEM
    fields = {e["field"] for e in resp.get_json()["errors"]}
    assert fields == {"username", "password"}


def test_protected_route_needs_a_token(client):
    resp = client.get("/api/v1/grid/cells")
    assert resp.status_code == 401
    assert resp.mimetype == PROBLEM
    resp = client.get("/api/v1/grid/cells", headers={"Authorization": "Bearer nonsense"})
    assert resp.status_code == 401


def test_login_wrong_password_is_401(client, session):
    from backend.services.users import create_user

    create_user(session, "someone", "right-password-1", "admin")
    session.commit()
    resp = client.post(
        "/api/v1/auth/login", json={"username": "someone", "password": "wrong-password-1"}
    )
    assert resp.status_code == 401
    assert resp.mimetype == PROBLEM


def test_admin_only_route_forbids_a_worker(client, worker_headers):
    resp = client.get("/api/v1/grid/imports", headers=worker_headers)
    assert resp.status_code == 403
    assert resp.mimetype == PROBLEM


def test_expired_token_is_rejected(app, client, admin_headers):
    import jwt

    from backend.models import AppUser
    from backend.services.auth import issue_access_token

    token = admin_headers["Authorization"].split()[1]
    claims = jwt.decode(token, options={"verify_signature": False})
    user = AppUser(id=int(claims["sub"]), role="admin")
    expired, _ = issue_access_token(user, claims["sid"], app.config["SECRET_KEY"], minutes=-1)
    resp = client.get("/api/v1/grid/cells", headers={"Authorization": f"Bearer {expired}"})
    assert resp.status_code == 401
    assert "expired" in resp.get_json()["detail"]
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
