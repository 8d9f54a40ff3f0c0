"""Login, refresh rotation with reuse detection, logout, throttling, through HTTP."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from backend.services.users import create_user

PROBLEM = "application/problem+json"
PASSWORD = "a-good-password-1"


@pytest.fixture()
def alice(session):
    user = create_user(session, "alice", PASSWORD, "city_dispatcher", phone="13812345678")
    session.commit()
    return user


def login(client, username="alice", password=PASSWORD, prefix="/api/v1", **kw):
    return client.post(
        f"{prefix}/auth/login", json={"username": username, "password": password}, **kw
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("prefix", ["/api/v1", "/api/mobile/v1"])
def test_login_refresh_logout_cycle(client, alice, prefix):
    resp = login(client, prefix=prefix)
    assert resp.status_code == 200, resp.get_json()
    first = resp.get_json()
    assert first["token_type"] == "Bearer" and first["user"]["role"] == "city_dispatcher"
    assert "password" not in resp.get_data(as_text=True)
    me = client.get(f"{prefix}/auth/me", headers=bearer(first["access_token"])).get_json()
    assert me["username"] == "alice" and me["phone"] == "13812345678"  # one's own: unmasked
    assert first["expires_at"][:4].isdigit() and "T" in first["expires_at"]  # ISO 8601

    resp = client.post(f"{prefix}/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert resp.status_code == 200
    second = resp.get_json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (
        client.get(f"{prefix}/auth/me", headers=bearer(second["access_token"])).status_code == 200
    )

    resp = client.post(f"{prefix}/auth/logout", headers=bearer(second["access_token"]))
    assert resp.status_code == 204
    # the access token dies with its session, not at its expiry; the refresh token too
    resp = client.get(f"{prefix}/auth/me", headers=bearer(second["access_token"]))
    assert resp.status_code == 401 and resp.mimetype == PROBLEM
    resp = client.post(f"{prefix}/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert resp.status_code == 401


def test_reused_refresh_token_revokes_the_family(client, alice, session):
    first = login(client).get_json()
    second = client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    ).get_json()
    # the first token is replayed (stolen): refused, and the whole session ends
    replay = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401 and "already used" in replay.get_json()["detail"]
    assert (
        client.post(
            "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
        ).status_code
        == 401
    )
    assert client.get("/api/v1/auth/me", headers=bearer(second["access_token"])).status_code == 401
    reason = session.scalar(
        text(
            "SELECT revoked_reason FROM auth_session s JOIN app_user u "
            "ON u.id = s.user_id WHERE u.username = 'alice'"
        )
    )
    assert reason == "refresh token reused"
    events = session.scalar(
        text("SELECT count(*) FROM audit_event WHERE action = 'refresh_token_reused'")
    )
    assert events == 1
    # a fresh login still works
    assert login(client).status_code == 200


def test_bad_refresh_tokens_are_401(client):
    for token in ("x" * 64, "not-a-token-at-all"):
        resp = client.post("/api/v1/auth/refresh", json={"refresh_token": token})
        assert resp.status_code == 401 and resp.mimetype == PROBLEM


def test_access_token_is_not_a_refresh_token_and_vice_versa(client, alice):
    pair = login(client).get_json()
    assert client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["access_token"][:200]}
    ).status_code in (401, 422)
    assert client.get("/api/v1/auth/me", headers=bearer(pair["refresh_token"])).status_code == 401


def test_tampered_token_is_401(client, alice):
    token = login(client).get_json()["access_token"]
    head, body, sig = token.split(".")
    forged = f"{head}.{body}.{sig[:-2]}AA"
    assert client.get("/api/v1/auth/me", headers=bearer(forged)).status_code == 401


def test_disabling_an_account_ends_its_sessions(client, alice, admin_headers):
    token = login(client).get_json()["access_token"]
    user = client.get(f"/api/v1/users/{alice.id}", headers=admin_headers)
    resp = client.patch(
        f"/api/v1/users/{alice.id}",
        json={"is_active": False},
        headers={**admin_headers, "If-Match": user.headers["ETag"]},
    )
    assert resp.status_code == 200, resp.get_json()
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 401
    assert login(client).status_code == 401


def test_wrong_passwords_slow_down_then_lock(client, alice, session):
    for _ in range(3):  # free failures
        assert login(client, password="wrong-password-9").status_code == 401
    resp = login(client, password="wrong-password-9")
    assert resp.status_code == 429 and resp.mimetype == PROBLEM
    assert int(resp.headers["Retry-After"]) >= 1
    # even the right password is refused while cooling down: no oracle for the attacker
    assert login(client).status_code == 429
    # let the back-off pass each time (moving the last failure into the past) until locked
    for _ in range(20):
        session.execute(
            text(
                "UPDATE login_throttle SET last_failure_at = now() - "
                "interval '6 minutes' WHERE key = 'user:alice'"
            )
        )
        session.commit()
        resp = login(client, password="wrong-password-9")
        if resp.status_code == 429:
            break
        assert resp.status_code == 401
    locked_until = session.scalar(
        text("SELECT locked_until - now() FROM login_throttle WHERE key = 'user:alice'")
    )
    assert locked_until is not None and locked_until.total_seconds() > 800
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) > 800
    assert login(client).status_code == 429  # locked: the right password does not help
    # other accounts from another address are not affected
    create_user(session, "bob", PASSWORD, "auditor")
    session.commit()
    assert login(client, "bob", environ_base={"REMOTE_ADDR": "10.9.9.9"}).status_code == 200


def test_one_address_trying_many_accounts_is_throttled(client, session):
    env = {"REMOTE_ADDR": "192.0.2.7"}
    statuses = [
        login(client, f"nobody{i}", "wrong-password-9", environ_base=env).status_code
        for i in range(12)
    ]
    assert statuses[:10] == [401] * 10
    assert 429 in statuses[10:]
    # another address is fine
    assert (
        login(
            client, "nobody99", "wrong-password-9", environ_base={"REMOTE_ADDR": "192.0.2.8"}
        ).status_code
        == 401
    )


def test_a_success_resets_the_account_count(client, alice, session):
    for _ in range(2):
        login(client, password="wrong-password-9")
    assert login(client).status_code == 200
    assert session.scalar(text("SELECT count(*) FROM login_throttle WHERE key = 'user:alice'")) == 0


def test_login_and_failures_are_audited(client, alice, session):
    login(client, password="wrong-password-9", environ_base={"REMOTE_ADDR": "198.51.100.4"})
    login(client, headers={"X-Request-ID": "req-42", "X-Device-Location": "113.75,23.02"})
    rows = session.execute(
        text(
            "SELECT action, actor_username, client_addr, request_id, "
            "ST_X(device_location) AS lon FROM audit_event "
            "WHERE action IN ('login', 'login_failed') ORDER BY id"
        )
    ).all()
    assert [(r.action, r.actor_username) for r in rows] == [
        ("login_failed", "anonymous"),
        ("login", "alice"),
    ]
    assert rows[0].client_addr == "198.51.100.4"
    assert rows[1].request_id == "req-42"
    assert 113.74 < rows[1].lon < 113.75  # GCJ-02 by default, stored as CGCS2000


def test_malformed_device_location_is_400ish(client, alice):
    resp = login(client, headers={"X-Device-Location": "east,north"})
    assert resp.status_code == 422 and resp.mimetype == PROBLEM


def test_access_tokens_expire_even_once_verified(client, alice, app):
    """The signature check is cached per process; the expiry is checked on every call."""
    import time as _time

    import jwt

    from backend.services.auth import JWT_ISSUER, decode_access_token
    from backend.services.errors import Unauthorized

    secret = app.config["SECRET_KEY"]
    token = login(client).get_json()["access_token"]
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 200
    expires = jwt.decode(token, secret, algorithms=["HS256"], issuer=JWT_ISSUER)["exp"]
    user_id, _ = decode_access_token(token, secret, now=expires - 1)
    assert user_id == alice.id
    with pytest.raises(Unauthorized, match="expired"):
        decode_access_token(token, secret, now=expires)
    # an expired token through HTTP: 401 problem, saying so
    claims = jwt.decode(token, secret, algorithms=["HS256"], issuer=JWT_ISSUER)
    claims.update(iat=int(_time.time()) - 3600, exp=int(_time.time()) - 60)
    old = jwt.encode(claims, secret, algorithm="HS256")
    resp = client.get("/api/v1/auth/me", headers=bearer(old))
    assert resp.status_code == 401 and resp.mimetype == PROBLEM
    assert "expired" in resp.get_json()["detail"]
    # signed with another key, or with claims that are not an access token's: invalid
    for forged in (
        jwt.encode({**claims, "exp": int(_time.time()) + 600}, "x" * 64, algorithm="HS256"),
        jwt.encode({**claims, "exp": int(_time.time()) + 600, "typ": "refresh"}, secret),
        jwt.encode({**claims, "exp": int(_time.time()) + 600, "sub": "1; drop"}, secret),
        jwt.encode({**claims, "exp": int(_time.time()) + 600, "iss": "elsewhere"}, secret),
    ):
        for _ in range(2):  # a refusal is not cached as a success
            resp = client.get("/api/v1/auth/me", headers=bearer(forged))
            assert resp.status_code == 401 and "invalid" in resp.get_json()["detail"]
