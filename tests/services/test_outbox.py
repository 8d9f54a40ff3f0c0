"""The outbox and its delivery to departments' webhooks, against a real local HTTP server that
checks signatures the way a department would.

`deliver_due` opens its own sessions and commits, so these tests commit their rows (a
department with a unique code pointing at the local server) and delete them afterwards.

The local server is on 127.0.0.1, which the webhook policy refuses unless it is allow-listed:
every test here runs with GRIDPATROL_WEBHOOK_ALLOW=127.0.0.1/32 (the `allow_local` fixture),
except those that show what happens without it."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from backend.cli_outbox import outbox_group
from backend.services import audit, outbox
from backend.services.errors import InvalidInput
from tests.services.test_webhook_policy import lookup

SECRET = "dept-secret-" + "s" * 24


@pytest.fixture(autouse=True)
def allow_local(monkeypatch) -> None:
    """The local test server's address, allow-listed as an operator would."""
    monkeypatch.setenv("GRIDPATROL_WEBHOOK_ALLOW", "127.0.0.1/32")


def audited(s: Session, code: str, action: str = "update") -> None:
    """The audit event a department write needs in its transaction (raw SQL writes here)."""
    audit.record(s, action, "department", code, changes={"test": {"from": None, "to": action}})


class Receiver:
    """A department's endpoint: verifies each request's signature (401 if wrong), records
    it, and answers with the next scripted status (then 200)."""

    def __init__(self, secret: str = SECRET, statuses: list[int] | None = None, delay: float = 0):
        self.secret = secret
        self.statuses = list(statuses or [])
        self.delay = delay
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                verified = outbox.verify_signature(
                    receiver.secret,
                    self.headers.get("X-Gridpatrol-Timestamp"),
                    body,
                    self.headers.get("X-Gridpatrol-Signature"),
                    tolerance_s=300,
                )
                with receiver.lock:
                    receiver.requests.append(
                        {"headers": self.headers, "body": body, "verified": verified}
                    )
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                if receiver.delay:
                    time.sleep(receiver.delay)
                self.send_response(status if verified else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/gridpatrol"

    def hits(self) -> Counter[str]:
        with self.lock:
            return Counter(r["headers"]["X-Gridpatrol-Event-Id"] for r in self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture()
def sessions(engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@pytest.fixture()
def department(sessions) -> Iterator[Any]:
    """make(url, secret=SECRET) -> a committed department's code; all deleted afterwards."""
    codes: list[str] = []

    def make(url: str | None, secret: str | None = SECRET) -> str:
        code = f"T{uuid.uuid4().hex[:12].upper()}"
        with sessions() as s:
            s.execute(
                text(
                    "INSERT INTO department (code, name, webhook_url, webhook_secret) "
                    "VALUES (:c, '测试部门 ' || :c, :u, :s)"
                ),
                {"c": code, "u": url, "s": secret},
            )
            audited(s, code, "create")
            s.commit()
        codes.append(code)
        return code

    yield make
    with sessions() as s:
        s.execute(text("DELETE FROM outbox_event WHERE department_code = ANY(:c)"), {"c": codes})
        s.execute(text("DELETE FROM department WHERE code = ANY(:c)"), {"c": codes})
        for code in codes:
            audited(s, code, "delete")
        s.commit()


def emit_committed(sessions, code: str, n: int = 1, **payload: Any) -> list[uuid.UUID]:
    with sessions() as s:
        ids = [
            outbox.emit(
                s, code, "referral.created", {"referral_id": i, "摘要": "无照经营", **payload}
            )
            for i in range(n)
        ]
        s.commit()
    return ids


def row(sessions, event_id: uuid.UUID) -> Any:
    with sessions() as s:
        return s.execute(
            text(
                "SELECT status, attempts, last_error, next_attempt_at, delivered_at, "
                "clock_timestamp() AS db_now FROM outbox_event WHERE event_id = :e"
            ),
            {"e": str(event_id)},
        ).one()


def db_now(sessions) -> Any:
    with sessions() as s:
        return s.scalar(text("SELECT clock_timestamp()"))


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/down"


# --------------------------------------------------------------------------- signatures


def test_signature_verification():
    body = '{"event_id":"x","payload":{"名称":"店"}}'.encode()
    ts = int(time.time())
    header = outbox.sign(SECRET, ts, body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert outbox.verify_signature(SECRET, ts, body, header)
    assert outbox.verify_signature(SECRET, str(ts), body.decode(), header)  # str forms too
    assert not outbox.verify_signature(SECRET, ts, body.replace(b"x", b"y"), header)  # tampered
    assert not outbox.verify_signature("another-secret", ts, body, header)  # wrong secret
    assert not outbox.verify_signature(SECRET, ts + 1, body, header)  # timestamp is signed
    stale = ts - 301
    old = outbox.sign(SECRET, stale, body)
    assert not outbox.verify_signature(SECRET, stale, body, old)  # older than the tolerance
    assert outbox.verify_signature(SECRET, stale, body, old, tolerance_s=400)
    future = ts + 301
    assert not outbox.verify_signature(SECRET, future, body, outbox.sign(SECRET, future, body))
    assert not outbox.verify_signature(
        SECRET, ts, body, outbox.sign(SECRET, ts, body), now=ts + 1e6
    )
    for bad in (None, "", "sha256=", header.upper(), header[:-1], "md5=" + header[7:], "签名"):
        assert not outbox.verify_signature(SECRET, ts, body, bad), bad
    for bad_ts in (None, "", "abc", "1e9"):
        assert not outbox.verify_signature(SECRET, bad_ts, body, header), bad_ts
    assert not outbox.verify_signature("", ts, body, header)


def test_backoff_grows_to_a_cap_with_jitter():
    assert outbox.backoff_s(1, jitter=False) == 2 * outbox.BACKOFF_BASE_S
    assert outbox.backoff_s(3, jitter=False) == 8 * outbox.BACKOFF_BASE_S
    assert outbox.backoff_s(40, jitter=False) == outbox.BACKOFF_CAP_S
    delays = {outbox.backoff_s(2) for _ in range(20)}
    base = 4 * outbox.BACKOFF_BASE_S
    assert all(base <= d <= base * (1 + outbox.JITTER) for d in delays) and len(delays) > 1


# --------------------------------------------------------------------------- emit


def test_emit_without_a_webhook_is_skipped(session):
    session.execute(
        text(
            "INSERT INTO department (code, name, webhook_url, webhook_secret) VALUES "
            "('TNOHOOK', '无接口部门', NULL, NULL), "
            "('THOOK', '有接口部门', 'https://dept.example/hook', :s)"
        ),
        {"s": SECRET},
    )
    audited(session, "TNOHOOK", "create")
    audited(session, "THOOK", "create")
    skipped = outbox.emit(session, "TNOHOOK", "referral.created", {"referral_id": 1})
    nobody = outbox.emit(session, None, "system.note", {"n": 1})
    pending = outbox.emit(session, "THOOK", "referral.created", {"referral_id": 1})
    statuses = dict(
        session.execute(
            text(
                "SELECT event_id::text, status FROM outbox_event "
                "WHERE event_id = ANY(CAST(:e AS uuid[]))"
            ),
            {"e": [str(skipped), str(nobody), str(pending)]},
        ).all()
    )
    assert statuses == {str(skipped): "skipped", str(nobody): "skipped", str(pending): "pending"}
    events, total = outbox.list_events(session, status="skipped", department="TNOHOOK")
    assert total == 1 and events[0]["event_id"] == skipped
    assert events[0]["payload"] == {"referral_id": 1} and "webhook_secret" not in events[0]
    with pytest.raises(InvalidInput):
        outbox.emit(session, "TNOSUCHDEPT", "referral.created", {})
    with pytest.raises(InvalidInput):
        outbox.emit(session, "THOOK", "", {})
    with pytest.raises(InvalidInput):
        outbox.list_events(session, status="lost")


def test_emit_is_part_of_the_callers_transaction(sessions, department, receiver):
    code = department(receiver.url)
    with sessions() as s:
        event_id = outbox.emit(s, code, "referral.created", {"referral_id": 1})
        s.rollback()  # the change was not committed: neither is its event
    counts = outbox.deliver_due(sessions, department=code)
    assert counts["claimed"] == 0 and receiver.hits() == Counter()
    with sessions() as s:
        assert (
            s.scalar(
                text("SELECT count(*) FROM outbox_event WHERE event_id = :e"), {"e": str(event_id)}
            )
            == 0
        )


# --------------------------------------------------------------------------- delivery


def test_delivery_to_a_real_server(sessions, department, receiver):
    code = department(receiver.url)
    (event_id,) = emit_committed(sessions, code, occurred={"when": "现在"})
    before = int(time.time())
    counts = outbox.deliver_due(sessions, department=code)
    assert counts["claimed"] == 1 and counts["delivered"] == 1
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request["verified"]
    headers = request["headers"]
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Gridpatrol-Event-Id"] == str(event_id)
    assert before - 1 <= int(headers["X-Gridpatrol-Timestamp"]) <= time.time() + 1
    assert headers["X-Gridpatrol-Signature"] == outbox.sign(
        SECRET, headers["X-Gridpatrol-Timestamp"], request["body"]
    )
    body = json.loads(request["body"])
    assert set(body) == {"event_id", "event_type", "occurred_at", "department", "payload"}
    assert body["event_id"] == str(event_id)
    assert body["event_type"] == "referral.created"
    assert body["department"] == code
    assert body["payload"] == {"referral_id": 0, "摘要": "无照经营", "occurred": {"when": "现在"}}
    assert body["occurred_at"].endswith("+00:00")
    # compact UTF-8, not ASCII-escaped
    assert "无照经营".encode() in request["body"] and b"\\u" not in request["body"]
    assert b": " not in request["body"] and b", " not in request["body"]
    r = row(sessions, event_id)
    assert (r.status, r.attempts, r.last_error) == ("delivered", 1, None)
    assert r.delivered_at is not None
    # delivered is final
    assert outbox.deliver_due(sessions, department=code)["claimed"] == 0


def test_server_error_then_success_is_retried_with_backoff(sessions, department):
    receiver = Receiver(statuses=[500, 200])
    try:
        code = department(receiver.url)
        (event_id,) = emit_committed(sessions, code)
        counts = outbox.deliver_due(sessions, department=code)
        assert counts["retrying"] == 1
        r = row(sessions, event_id)
        assert (r.status, r.attempts, r.last_error) == ("pending", 1, "HTTP 500")
        delay = (r.next_attempt_at - r.db_now).total_seconds()
        first = outbox.backoff_s(1, jitter=False)
        assert first - 5 <= delay <= first * (1 + outbox.JITTER) + 1, delay
        # not due yet
        assert outbox.deliver_due(sessions, department=code)["claimed"] == 0
        counts = outbox.deliver_due(
            sessions, department=code, now=r.next_attempt_at + timedelta(seconds=1)
        )
        assert counts["delivered"] == 1
        r = row(sessions, event_id)
        assert (r.status, r.attempts, r.last_error) == ("delivered", 2, None)
        assert receiver.hits() == Counter({str(event_id): 2})
        first_body, second_body = (q["body"] for q in receiver.requests)
        assert first_body == second_body  # a retry repeats the same bytes
    finally:
        receiver.close()


def test_a_down_server_dead_letters_after_the_limit_then_replay(sessions, department, receiver):
    code = department(closed_port_url())
    (event_id,) = emit_committed(sessions, code)
    when = db_now(sessions)
    for attempt in range(1, outbox.MAX_ATTEMPTS + 1):
        counts = outbox.deliver_due(sessions, department=code, now=when)
        assert counts["claimed"] == 1, attempt
        r = row(sessions, event_id)
        assert r.attempts == attempt
        assert "connection failed" in r.last_error and "refused" in r.last_error.lower()
        if attempt < outbox.MAX_ATTEMPTS:
            assert r.status == "pending" and counts["retrying"] == 1
            assert r.next_attempt_at - when >= timedelta(
                seconds=outbox.backoff_s(attempt, jitter=False)
            )
            when = r.next_attempt_at + timedelta(seconds=1)
    assert r.status == "dead" and counts["dead"] == 1
    assert outbox.deliver_due(sessions, department=code, now=when + timedelta(days=30)) == {
        "claimed": 0,
        "delivered": 0,
        "retrying": 0,
        "dead": 0,
        "skipped": 0,
        "released": 0,
        "stale": 0,
    }
    with sessions() as s:
        dead, total = outbox.list_events(s, status="dead", department=code)
        assert total == 1 and dead[0]["event_id"] == event_id
    # the department fixes its endpoint; an admin replays the dead letter
    with sessions() as s:
        s.execute(
            text("UPDATE department SET webhook_url = :u WHERE code = :c"),
            {"u": receiver.url, "c": code},
        )
        audited(s, code)
        audit.set_actor(s, audit.Actor(None, "outbox-test-admin", "admin"))
        assert outbox.replay(s, [event_id, uuid.uuid4()]) == 1
        s.commit()
    r = row(sessions, event_id)
    assert (r.status, r.attempts, r.last_error) == ("pending", 0, None)
    with sessions() as s:
        event = s.execute(
            text(
                "SELECT actor_username, changes FROM audit_event WHERE action = 'replay' "
                "AND object_type = 'outbox_event' AND object_id = :e"
            ),
            {"e": str(event_id)},
        ).one()
        assert event.actor_username == "outbox-test-admin"
        assert event.changes["status"] == {"from": "dead", "to": "pending"}
        assert event.changes["attempts"] == {"from": outbox.MAX_ATTEMPTS, "to": 0}
        assert outbox.replay(s, [event_id]) == 0  # not dead any more
        s.rollback()
    assert outbox.deliver_due(sessions, department=code)["delivered"] == 1
    assert receiver.hits() == Counter({str(event_id): 1})
    assert row(sessions, event_id).status == "delivered"


def test_a_slow_server_is_a_timeout(sessions, department):
    receiver = Receiver(delay=1.5)
    try:
        code = department(receiver.url)
        (event_id,) = emit_committed(sessions, code)
        counts = outbox.deliver_due(sessions, department=code, timeout=0.3)
        assert counts["retrying"] == 1
        assert row(sessions, event_id).last_error == "timeout"
    finally:
        receiver.close()


def test_a_wrong_secret_is_refused_by_the_receiver(sessions, department, receiver):
    code = department(receiver.url, secret="not-the-secret-the-department-has")
    (event_id,) = emit_committed(sessions, code)
    assert outbox.deliver_due(sessions, department=code)["retrying"] == 1
    assert row(sessions, event_id).last_error == "HTTP 401"
    assert receiver.requests[0]["verified"] is False


def test_dns_failure_and_missing_webhook_at_delivery_time(sessions, department):
    code = department("https://no-such-host.invalid/hook")
    (failing,) = emit_committed(sessions, code)
    assert outbox.deliver_due(sessions, department=code)["retrying"] == 1
    assert row(sessions, failing).last_error.startswith(("DNS lookup failed", "connection"))
    # the webhook is removed after the event was queued: it is skipped, not sent
    with sessions() as s:
        s.execute(text("UPDATE department SET webhook_url = NULL WHERE code = :c"), {"c": code})
        audited(s, code)
        s.execute(
            text("UPDATE outbox_event SET next_attempt_at = now() WHERE event_id = :e"),
            {"e": str(failing)},
        )
        s.commit()
    assert outbox.deliver_due(sessions, department=code)["skipped"] == 1
    r = row(sessions, failing)
    assert (r.status, r.last_error) == ("skipped", "the department has no webhook_url")


def test_two_runners_at_once_deliver_each_event_exactly_once(sessions, department):
    receiver = Receiver(delay=0.02)
    try:
        code = department(receiver.url)
        ids = emit_committed(sessions, code, n=20)
        start = threading.Barrier(2)
        delivered: dict[str, int] = {}
        errors: list[BaseException] = []

        def runner(name: str) -> None:
            try:
                start.wait(5)
                total = 0
                while True:
                    counts = outbox.deliver_due(sessions, batch=3, department=code)
                    if not counts["claimed"]:
                        break
                    total += counts["delivered"]
                delivered[name] = total
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=runner, args=(n,)) for n in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        assert receiver.hits() == Counter({str(i): 1 for i in ids})
        assert sum(delivered.values()) == 20
        assert delivered["a"] > 0 and delivered["b"] > 0, delivered  # both really ran
        with sessions() as s:
            assert dict(
                s.execute(
                    text(
                        "SELECT status, count(*) FROM outbox_event WHERE department_code = :c "
                        "GROUP BY status"
                    ),
                    {"c": code},
                ).all()
            ) == {"delivered": 20}
    finally:
        receiver.close()


def test_a_runner_that_crashes_after_claiming_is_redelivered_after_the_lease(
    sessions, department, receiver
):
    code = department(receiver.url)
    (event_id,) = emit_committed(sessions, code)
    claimed = outbox.claim(sessions, department=code)  # ... and the runner dies here
    assert [c.event_id for c in claimed] == [event_id]
    assert claimed[0].attempts == 1
    r = row(sessions, event_id)
    assert r.status == "pending"
    assert (r.next_attempt_at - r.db_now).total_seconds() > outbox.LEASE_S - 5
    # leased: another runner leaves it alone
    assert outbox.deliver_due(sessions, department=code)["claimed"] == 0
    assert receiver.hits() == Counter()
    # the lease runs out: it is delivered (at least once)
    later = r.next_attempt_at + timedelta(seconds=1)
    assert outbox.deliver_due(sessions, department=code, now=later)["delivered"] == 1
    assert receiver.hits() == Counter({str(event_id): 1})
    r = row(sessions, event_id)
    assert (r.status, r.attempts) == ("delivered", 2)


def test_a_runner_that_outlived_its_lease_does_not_overwrite_the_newer_claim(sessions, department):
    code = department("http://127.0.0.1:9/never-called")
    (event_id,) = emit_committed(sessions, code)
    taken_over: list[Any] = []

    def slow_post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        # while this runner is still posting, its lease runs out and another runner claims
        later = db_now(sessions) + timedelta(seconds=outbox.LEASE_S + 10)
        taken_over.extend(outbox.claim(sessions, department=code, now=later))
        return 200

    counts = outbox.deliver_due(sessions, department=code, post=slow_post)
    assert counts["stale"] == 1 and counts["delivered"] == 0
    assert [c.attempts for c in taken_over] == [2]
    r = row(sessions, event_id)
    assert (r.status, r.attempts) == ("pending", 2)  # the newer claim's to record


def test_a_transport_exception_from_post_is_a_failed_attempt(sessions, department):
    code = department("https://dept.example/hook")
    (event_id,) = emit_committed(sessions, code)

    def broken(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        raise ConnectionResetError("reset by peer")

    assert outbox.deliver_due(sessions, department=code, post=broken)["retrying"] == 1
    assert row(sessions, event_id).last_error == "ConnectionResetError: reset by peer"


def test_cli_run_list_and_replay(sessions, department, receiver):
    code = department(receiver.url)
    (event_id,) = emit_committed(sessions, code)
    runner = CliRunner()
    obj = {"sessionmaker": sessions}
    result = runner.invoke(outbox_group, ["run", "--once", "--department", code], obj=obj)
    assert result.exit_code == 0, result.output
    assert "delivered 1" in result.output
    assert receiver.hits() == Counter({str(event_id): 1})
    result = runner.invoke(
        outbox_group, ["list", "--status", "delivered", "--department", code], obj=obj
    )
    assert result.exit_code == 0, result.output
    assert str(event_id) in result.output and "delivered" in result.output
    result = runner.invoke(outbox_group, ["replay", str(event_id)], obj=obj)
    assert result.exit_code == 0, result.output
    assert "replayed 0 of 1" in result.output and "not replayed" in result.output
    result = runner.invoke(outbox_group, ["replay", "not-a-uuid"], obj=obj)
    assert result.exit_code == 2


# --------------------------------------------------------------------------- webhook policy


def policy_row(sessions, event_id: uuid.UUID) -> Any:
    with sessions() as s:
        return s.execute(
            text(
                "SELECT status, attempts, last_error, policy_detail FROM outbox_event "
                "WHERE event_id = :e"
            ),
            {"e": str(event_id)},
        ).one()


def test_without_the_allow_list_a_loopback_webhook_is_refused_and_never_called(
    sessions, department, receiver, monkeypatch
):
    monkeypatch.delenv("GRIDPATROL_WEBHOOK_ALLOW")
    port = receiver.server.server_address[1]
    urls = {
        receiver.url: "127.0.0.1 is a loopback address",
        f"https://127.0.0.1:{port}/hook": "127.0.0.1 is a loopback address",
        f"http://localhost:{port}/hook": "localhost is a local name",
        f"http://sub.localhost:{port}/hook": "sub.localhost is a local name",
        f"http://2130706433:{port}/hook": "numeric host",
        f"http://0x7f.1:{port}/hook": "numeric host",
        f"http://017700000001:{port}/hook": "numeric host",
        f"http://[::ffff:127.0.0.1]:{port}/hook": "loopback address",
        f"https://0.0.0.0:{port}/hook": "unspecified address",
        "https://169.254.169.254/latest/meta-data/": "link-local address",
        "https://10.1.2.3/hook": "private address",
        "https://100.64.0.1/hook": "private address",
    }
    events = {}
    for url in urls:
        code = department(url)
        (events[url],) = emit_committed(sessions, code)
        counts = outbox.deliver_due(sessions, department=code)
        assert counts["retrying"] == 1, (url, counts)
    assert receiver.requests == []  # no connection was made for any of them
    for url, why in urls.items():
        r = policy_row(sessions, events[url])
        assert (r.status, r.attempts, r.last_error) == ("pending", 1, "refused by policy"), url
        assert why in r.policy_detail, (url, r.policy_detail)
    # what an auditor reads (list_events without the detail) says only "refused by policy"
    with sessions() as s:
        listed = [outbox.list_events(s, department=c)[0] for c in codes_of(s, events)]
    mine = [e for page in listed for e in page]
    assert mine and all("policy_detail" not in e for e in mine)
    assert {e["last_error"] for e in mine} == {"refused by policy"}


def test_allow_listing_the_address_lets_the_retry_through(
    sessions, department, receiver, monkeypatch
):
    monkeypatch.delenv("GRIDPATROL_WEBHOOK_ALLOW")
    code = department(receiver.url)
    (event_id,) = emit_committed(sessions, code)
    assert outbox.deliver_due(sessions, department=code)["retrying"] == 1
    r = policy_row(sessions, event_id)
    assert r.last_error == "refused by policy" and "127.0.0.1" in r.policy_detail
    assert receiver.requests == []
    # the operator allow-lists the network; the retry is delivered and the detail cleared
    monkeypatch.setenv("GRIDPATROL_WEBHOOK_ALLOW", "10.0.0.0/8, 127.0.0.0/8")
    later = db_now(sessions) + timedelta(hours=1)
    assert outbox.deliver_due(sessions, department=code, now=later)["delivered"] == 1
    r = policy_row(sessions, event_id)
    assert (r.status, r.last_error, r.policy_detail) == ("delivered", None, None)
    assert receiver.hits() == Counter({str(event_id): 1})


def test_a_refused_url_is_never_handed_to_the_sender(sessions, department, monkeypatch):
    monkeypatch.delenv("GRIDPATROL_WEBHOOK_ALLOW")
    code = department("http://127.0.0.1:9/never-called")
    (event_id,) = emit_committed(sessions, code)
    called: list[str] = []

    def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        called.append(url)
        return 200

    assert outbox.deliver_due(sessions, department=code, post=post)["retrying"] == 1
    assert called == []
    assert policy_row(sessions, event_id).last_error == "refused by policy"


def codes_of(s: Session, events: dict[str, uuid.UUID]) -> list[str]:
    return list(
        s.scalars(
            text(
                "SELECT DISTINCT department_code FROM outbox_event "
                "WHERE event_id = ANY(CAST(:e AS uuid[]))"
            ),
            {"e": [str(e) for e in events.values()]},
        )
    )


def fake_resolver(answers: list[str], calls: list[str]) -> Any:
    return lookup(*answers, calls=calls)


def test_a_name_that_resolves_to_loopback_is_refused_before_connecting(receiver):
    from backend.services import webhook_policy

    port = receiver.server.server_address[1]
    for answers in (["127.0.0.1"], ["93.184.216.34", "127.0.0.1"], ["::1"], ["10.9.8.7"]):
        calls: list[str] = []
        with pytest.raises(webhook_policy.Refused) as refused:
            outbox.http_post(
                f"https://hooks.dept.example:{port}/hook",
                b"{}",
                {},
                2.0,
                allow=webhook_policy.AllowList(),
                resolver=fake_resolver(answers, calls),
            )
        assert calls == ["hooks.dept.example"]
        assert "hooks.dept.example resolves to" in refused.value.reason
    assert receiver.requests == []


def test_the_connection_goes_to_the_vetted_address_with_the_original_host(receiver):
    """One lookup; the connection is made to the address that was checked (no second lookup a
    rebinding DNS could answer differently), with the URL's host in the Host header."""
    from backend.services import webhook_policy

    port = receiver.server.server_address[1]
    calls: list[str] = []
    allow = webhook_policy.AllowList.parse("hooks.dept.example, 127.0.0.1/32")
    body, headers = b'{"x":1}', {"Content-Type": "application/json"}
    status = outbox.http_post(
        f"http://hooks.dept.example:{port}/hooks/gridpatrol?v=1",
        body,
        {**headers, "X-Gridpatrol-Signature": "sha256=00"},
        2.0,
        allow=allow,
        resolver=fake_resolver(["127.0.0.1"], calls),
    )
    assert status == 401  # the receiver checks signatures; it was reached
    assert calls == ["hooks.dept.example"]
    (request,) = receiver.requests
    assert request["headers"]["Host"] == f"hooks.dept.example:{port}"
    assert request["body"] == body
    # a host name alone on the list unlocks http and private addresses, not loopback
    with pytest.raises(webhook_policy.Refused, match="loopback"):
        outbox.http_post(
            f"http://hooks.dept.example:{port}/",
            body,
            headers,
            2.0,
            allow=webhook_policy.AllowList.parse("hooks.dept.example"),
            resolver=fake_resolver(["127.0.0.1"], []),
        )
    assert len(receiver.requests) == 1


def test_https_to_the_vetted_address_checks_the_certificate_for_the_url_host(tmp_path):
    """TLS to the pinned address sends the URL's host as SNI and checks the certificate
    against it: a certificate for hooks.dept.test is good for https://hooks.dept.test, and not
    for the same server reached as https://127.0.0.1."""
    import ssl
    import subprocess

    from backend.services import webhook_policy

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *(
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ),
            *("-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2"),
            *("-subj", "/CN=hooks.dept.test", "-addext", "subjectAltName=DNS:hooks.dept.test"),
        ],
        check=True,
        capture_output=True,
    )
    seen: dict[str, Any] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen["host"] = self.headers["Host"]
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)

    def sni(sock: Any, name: str | None, ctx: Any) -> None:
        seen["sni"] = name

    server_tls.sni_callback = sni
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        client_tls = ssl.create_default_context(cafile=str(cert))
        allow = webhook_policy.AllowList.parse("127.0.0.1/32")  # the address, not the name
        status = outbox.http_post(
            f"https://hooks.dept.test:{port}/hook",
            b"{}",
            {"Content-Type": "application/json"},
            5.0,
            allow=allow,
            resolver=fake_resolver(["127.0.0.1"], []),
            context=client_tls,
        )
        assert status == 204
        assert seen == {"sni": "hooks.dept.test", "host": f"hooks.dept.test:{port}"}
        with pytest.raises(Exception, match=r"CERTIFICATE_VERIFY_FAILED|match"):
            outbox.http_post(
                f"https://127.0.0.1:{port}/hook", b"{}", {}, 5.0, allow=allow, context=client_tls
            )
    finally:
        server.shutdown()
        server.server_close()


def test_a_redirect_is_an_answer_not_followed(sessions, department):
    receiver = Receiver(statuses=[302])
    try:
        code = department(receiver.url)
        (event_id,) = emit_committed(sessions, code)
        assert outbox.deliver_due(sessions, department=code)["retrying"] == 1
        assert policy_row(sessions, event_id).last_error == "HTTP 302"
        assert len(receiver.requests) == 1
    finally:
        receiver.close()
