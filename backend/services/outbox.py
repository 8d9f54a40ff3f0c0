"""The outbox: changes that departments' own systems must hear about, delivered by webhook.

`emit` writes an event in the caller's transaction, so an event exists if and only if the
change it describes was committed. `deliver_due` (run by `gridpatrol outbox run`, as many
at once as you like) claims due events with FOR UPDATE SKIP LOCKED in a short transaction that
also leases them (`next_attempt_at` moves `LEASE_S` ahead, `attempts` goes up) and commits;
then POSTs each outside any transaction; then records the outcome in another short
transaction. A runner that dies after claiming leaves its events to come back when the lease
runs out: delivery is at least once, and receivers dedupe on the event id.

What a department's endpoint receives (documented for the departments)::

    POST <webhook_url>
    Content-Type: application/json
    X-Gridpatrol-Event-Id: <uuid, the same on every retry>
    X-Gridpatrol-Timestamp: <unix seconds when this attempt was signed>
    X-Gridpatrol-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>

    {"event_id":"…","event_type":"…","occurred_at":"2026-03-01T02:03:04.123456+00:00",
     "department":"SAMR","payload":{…}}

The body is compact UTF-8 JSON (not ASCII-escaped) and is the same bytes on every retry;
only the timestamp and signature change. Check the signature over the raw body bytes as
received, before parsing them — `verify_signature` below shows how. Answer any 2xx once the
event is stored; anything else (or no answer within `TIMEOUT_S`) is retried with exponential
backoff, and after `MAX_ATTEMPTS` the event is dead-lettered for an admin to replay.
Redirects are not followed.

Where a webhook may point is backend/services/webhook_policy.py's to say (docs/webhooks.md):
`http_post` resolves the host once, checks every address and connects to a vetted one, with
the original host in the Host header and TLS SNI. A delivery the policy refuses is a failed
attempt whose `last_error` is "refused by policy" (auditors read that); which address and why
is kept in `policy_detail`, shown to admins only.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import http.client
import json
import logging
import random
import socket
import ssl
import time
import urllib.error
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from backend.services import audit, webhook_policy
from backend.services.errors import InvalidInput

log = logging.getLogger(__name__)

STATUSES = ("pending", "delivered", "dead", "skipped")
MAX_ATTEMPTS = 10
LEASE_S = 60.0  # a claimed event is due again this long after its claim, if not recorded
TIMEOUT_S = 10.0  # per socket operation of one POST
BACKOFF_BASE_S = 30.0  # delay after the n-th failed attempt: min(2**n * base, cap) + jitter
BACKOFF_CAP_S = 6 * 3600.0
JITTER = 0.25  # up to this fraction of the delay is added at random
SIGNATURE_TOLERANCE_S = 300
MAX_ERROR_CHARS = 300
USER_AGENT = "gridpatrol-outbox/1"

# post(url, body, headers, timeout) -> HTTP status; raises on a transport failure
Post = Callable[[str, bytes, dict[str, str], float], int]


# --------------------------------------------------------------------------- writing


def emit(
    session: Session, department_code: str | None, event_type: str, payload: dict[str, Any]
) -> uuid.UUID:
    """Queue an event in the caller's transaction (no commit); its event id.

    Events for a department without a webhook URL (or for no department) are written with
    status `skipped`: kept for the record, never sent (the department reads its inbox)."""
    if not event_type or len(event_type) > 100:
        raise InvalidInput("An outbox event needs an event_type of 1 to 100 characters.")
    if not isinstance(payload, dict):
        raise InvalidInput("An outbox event's payload must be a JSON object.")
    has_webhook = False
    if department_code is not None:
        row = session.execute(
            text("SELECT webhook_url FROM department WHERE code = :code"),
            {"code": department_code},
        ).one_or_none()
        if row is None:
            raise InvalidInput(f"No department {department_code!r}.")
        has_webhook = bool(row.webhook_url)
    event_id = session.scalar(
        text(
            "INSERT INTO outbox_event (department_code, event_type, payload, status) "
            "VALUES (:department, :event_type, CAST(:payload AS jsonb), :status) "
            "RETURNING event_id"
        ),
        {
            "department": department_code,
            "event_type": event_type,
            "payload": _dumps(payload),
            "status": "pending" if has_webhook else "skipped",
        },
    )
    return uuid.UUID(str(event_id))


# --------------------------------------------------------------------------- signing


def sign(secret: str, timestamp: int | str, body: bytes | str) -> str:
    """The X-Gridpatrol-Signature value: `sha256=` + hex HMAC-SHA256 of `{timestamp}.{body}`."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + raw, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    secret: str,
    timestamp: int | str | None,
    body: bytes | str,
    header: str | None,
    tolerance_s: int = SIGNATURE_TOLERANCE_S,
    *,
    now: float | None = None,
) -> bool:
    """How a receiver checks a delivery: True only if `header` (X-Gridpatrol-Signature) is
    the HMAC of `timestamp` (X-Gridpatrol-Timestamp) and the raw `body` bytes with the
    department's secret, and the timestamp is within `tolerance_s` of the receiver's clock
    (so a captured request cannot be replayed later). Constant-time comparison.

        ok = verify_signature(secret, request.headers["X-Gridpatrol-Timestamp"],
                              request.get_data(), request.headers["X-Gridpatrol-Signature"])

    Also drop event ids you have already stored: a retry after a lost answer repeats one."""
    if not secret or not header or timestamp is None:
        return False
    try:
        ts = int(str(timestamp).strip())
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        return False
    try:
        expected = sign(secret, ts, body)
    except (UnicodeError, TypeError):
        return False
    return hmac.compare_digest(expected.encode("ascii"), header.strip().encode("utf-8"))


def build_request(event: Claimed, *, timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one delivery attempt (signed with the department's secret)."""
    body = json.dumps(
        {
            "event_id": str(event.event_id),
            "event_type": event.event_type,
            "occurred_at": event.occurred_at.astimezone(UTC).isoformat(),
            "department": event.department_code,
            "payload": event.payload,
        },
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode("utf-8")
    ts = int(time.time()) if timestamp is None else timestamp
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Gridpatrol-Event-Id": str(event.event_id),
        "X-Gridpatrol-Timestamp": str(ts),
        "X-Gridpatrol-Signature": sign(event.webhook_secret or "", ts, body),
    }
    return body, headers


# --------------------------------------------------------------------------- HTTP


class _PinnedHTTP(http.client.HTTPConnection):
    """HTTP to one vetted address; `host` (the URL's) is what the Host header says."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to one vetted address; the URL's host is the SNI, the name the certificate must
    carry, and the Host header."""

    def __init__(
        self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._tls = context

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        try:
            self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


def http_post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout: float = TIMEOUT_S,
    *,
    allow: webhook_policy.AllowList | None = None,
    resolver: webhook_policy.Resolver | None = None,
    context: ssl.SSLContext | None = None,
) -> int:
    """POST with the standard library to an address the policy accepts: the URL is checked,
    its host resolved once (`resolver`, default `socket.getaddrinfo`) and every address
    checked, then the connection goes to one of those addresses — never to a second lookup's.
    The HTTP status (any: redirects are not followed); `webhook_policy.Refused` before any
    connection; another exception for a transport failure (timeout, refused, DNS, TLS).
    `allow` defaults to GRIDPATROL_WEBHOOK_ALLOW; `context` to the system's CAs."""
    policy = allow if allow is not None else webhook_policy.allow_list_from_env()
    target = webhook_policy.check_url(url, policy)
    try:
        addresses = webhook_policy.resolve(target, policy, resolver)
    except socket.gaierror as exc:
        raise urllib.error.URLError(exc) from exc
    connection = _connect(target, addresses, timeout, context)
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(4096)  # let the server finish; what it says is not kept
        return int(response.status)
    finally:
        connection.close()


def _connect(
    target: webhook_policy.Target,
    addresses: list[tuple[int, str]],
    timeout: float,
    context: ssl.SSLContext | None,
) -> http.client.HTTPConnection:
    """A connection to the first vetted address that answers (a refused or unreachable one
    is skipped: nothing was sent to it)."""
    error: OSError | None = None
    for _, address in addresses:
        connection: http.client.HTTPConnection
        if target.https:
            tls = context or ssl.create_default_context()
            connection = _PinnedHTTPS(target.host, target.port, address, timeout, tls)
        else:
            connection = _PinnedHTTP(target.host, target.port, address, timeout)
        try:
            connection.connect()
            return connection
        except OSError as exc:
            connection.close()
            error = exc
    raise urllib.error.URLError(error or OSError("no address to connect to"))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        reason = exc.reason
        if isinstance(reason, TimeoutError | socket.timeout):
            return "timeout"
        if isinstance(reason, socket.gaierror):
            return f"DNS lookup failed: {reason}"
        return f"connection failed: {reason}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    return f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- delivering


@dataclass(frozen=True)
class Claimed:
    """One leased event, with its department's endpoint (the secret never leaves here)."""

    id: int
    event_id: uuid.UUID
    department_code: str | None
    event_type: str
    payload: dict[str, Any]
    occurred_at: datetime
    attempts: int  # including this one: the fencing token of this claim
    webhook_url: str | None
    webhook_secret: str | None


def claim(
    sessions: sessionmaker[Session],
    *,
    batch: int = 50,
    now: datetime | None = None,
    lease_s: float = LEASE_S,
    department: str | None = None,
) -> list[Claimed]:
    """Lease up to `batch` due events (committed): no other runner gets them until the lease
    runs out; a runner that dies holding them only delays them by the lease."""
    with sessions() as session:
        rows = session.execute(
            text(
                "WITH due AS ("
                "  SELECT id, department_code FROM outbox_event"
                "  WHERE status = 'pending'"
                "    AND next_attempt_at <= COALESCE(CAST(:now AS timestamptz), now())"
                "    AND (CAST(:department AS text) IS NULL OR department_code = :department)"
                "  ORDER BY next_attempt_at, id LIMIT :batch"
                "  FOR UPDATE SKIP LOCKED"
                ") "
                "UPDATE outbox_event o SET attempts = o.attempts + 1, "
                "  next_attempt_at = COALESCE(CAST(:now AS timestamptz), now()) "
                "    + CAST(:lease AS float8) * interval '1 second' "
                "FROM due LEFT JOIN department d ON d.code = due.department_code "
                "WHERE o.id = due.id "
                "RETURNING o.id, o.event_id, o.department_code, o.event_type, o.payload, "
                "  o.created_at, o.attempts, d.webhook_url, d.webhook_secret"
            ),
            {"now": now, "batch": batch, "lease": lease_s, "department": department},
        ).all()
        session.commit()
    claimed = [
        Claimed(
            id=r.id,
            event_id=uuid.UUID(str(r.event_id)),
            department_code=r.department_code,
            event_type=r.event_type,
            payload=r.payload,
            occurred_at=r.created_at,
            attempts=r.attempts,
            webhook_url=r.webhook_url,
            webhook_secret=r.webhook_secret,
        )
        for r in rows
    ]
    return sorted(claimed, key=lambda c: c.id)


def backoff_s(attempts: int, *, jitter: bool = True) -> float:
    """Delay before the next try after `attempts` failed ones."""
    delay = min(2 ** min(attempts, 32) * BACKOFF_BASE_S, BACKOFF_CAP_S)
    return delay + (random.uniform(0, delay * JITTER) if jitter else 0.0)


def deliver_due(
    sessions: sessionmaker[Session],
    *,
    batch: int = 50,
    now: datetime | None = None,
    post: Post | None = None,
    department: str | None = None,
    timeout: float = TIMEOUT_S,
    lease_s: float = LEASE_S,
    max_attempts: int = MAX_ATTEMPTS,
    allow: webhook_policy.AllowList | None = None,
) -> dict[str, int]:
    """Claim, POST and record one batch of due events; counts by outcome.

    `now` stands in for the database clock when choosing what is due and when the next try
    is (tests); `department` limits the run to one department. Results are recorded only if
    the claim is still this runner's (same `attempts`), so a runner that outlived its lease
    cannot overwrite a newer claim; a POST is not started unless it can end within the lease,
    so two runners never send one event at the same time. Every URL is checked against the
    webhook policy (`allow`, default GRIDPATROL_WEBHOOK_ALLOW) before `post` is called; the
    default `post` also checks the addresses it connects to."""
    policy = allow if allow is not None else webhook_policy.allow_list_from_env()
    send = post or functools.partial(http_post, allow=policy)
    lease_s = max(lease_s, 3 * timeout + 10)  # room for at least one POST per claim
    started = time.monotonic()
    events = claim(sessions, batch=batch, now=now, lease_s=lease_s, department=department)
    counts = {
        "claimed": len(events),
        "delivered": 0,
        "retrying": 0,
        "dead": 0,
        "skipped": 0,
        "released": 0,
        "stale": 0,
    }
    for index, event in enumerate(events):
        if time.monotonic() - started + 2 * timeout + 5 > lease_s:
            counts["released"] = _release(sessions, events[index:], now)
            break
        outcome, error, detail = _attempt(event, send, timeout, policy)
        if outcome == "failed":
            outcome = "dead" if event.attempts >= max_attempts else "retrying"
        if _record(sessions, event, outcome, error, detail, now):
            counts[outcome] += 1
        else:
            counts["stale"] += 1
    return counts


def _attempt(
    event: Claimed, send: Post, timeout: float, policy: webhook_policy.AllowList
) -> tuple[str, str | None, str | None]:
    """(outcome, last_error, policy_detail) of one attempt."""
    if not event.webhook_url:
        return "skipped", "the department has no webhook_url", None
    if not event.webhook_secret:
        return "failed", "the department has no webhook_secret; nothing was sent", None
    if not event.webhook_url.lower().startswith(("http://", "https://")):
        return "failed", "the webhook_url is not http(s); nothing was sent", None
    body, headers = build_request(event)
    try:
        webhook_policy.check_url(event.webhook_url, policy)
        status = send(event.webhook_url, body, headers, timeout)
    except webhook_policy.Refused as exc:  # nothing was sent
        log.warning("outbox event %s refused by policy: %s", event.event_id, exc.reason)
        return "failed", webhook_policy.REFUSED, exc.reason[:MAX_ERROR_CHARS]
    except Exception as exc:  # any transport failure is a failed attempt, never a crash
        return "failed", _describe(exc)[:MAX_ERROR_CHARS], None
    if 200 <= status < 300:
        return "delivered", None, None
    return "failed", f"HTTP {status}", None


_RECORD = {
    "delivered": (
        "status = 'delivered', delivered_at = now(), last_error = NULL, policy_detail = NULL",
        False,
    ),
    "skipped": ("status = 'skipped', last_error = :error, policy_detail = :detail", False),
    "dead": ("status = 'dead', last_error = :error, policy_detail = :detail", False),
    "retrying": (
        "last_error = :error, policy_detail = :detail, "
        "next_attempt_at = COALESCE(CAST(:now AS timestamptz), now()) "
        "+ CAST(:delay AS float8) * interval '1 second'",
        True,
    ),
}


def _record(
    sessions: sessionmaker[Session],
    event: Claimed,
    outcome: str,
    error: str | None,
    detail: str | None,
    now: datetime | None,
) -> bool:
    assignments, delayed = _RECORD[outcome]
    with sessions() as session:
        done = session.execute(
            text(
                f"UPDATE outbox_event SET {assignments} "
                "WHERE id = :id AND status = 'pending' AND attempts = :attempts"
            ),
            {
                "id": event.id,
                "attempts": event.attempts,
                "error": error,
                "detail": detail,
                "now": now,
                "delay": backoff_s(event.attempts) if delayed else None,
            },
        ).rowcount
        session.commit()
    if not done:
        log.warning("outbox event %s: claim lost before its result was recorded", event.event_id)
    return bool(done)


def _release(sessions: sessionmaker[Session], events: list[Claimed], now: datetime | None) -> int:
    """Give back claimed events not tried (the lease would run out): due again at once, the
    claim's attempt not counted."""
    with sessions() as session:
        released = session.execute(
            text(
                "UPDATE outbox_event o SET attempts = o.attempts - 1, "
                "next_attempt_at = COALESCE(CAST(:now AS timestamptz), now()) "
                "FROM unnest(CAST(:ids AS bigint[]), CAST(:attempts AS integer[])) "
                "AS r(id, attempts) "
                "WHERE o.id = r.id AND o.attempts = r.attempts AND o.status = 'pending'"
            ),
            {"ids": [e.id for e in events], "attempts": [e.attempts for e in events], "now": now},
        ).rowcount
        session.commit()
    return int(released)


# --------------------------------------------------------------------------- admin


def replay_events(session: Session, event_ids: Iterable[uuid.UUID | str]) -> list[uuid.UUID]:
    """Dead events back to pending (due now, attempts reset), audited; the ids replayed
    (ids unknown or not dead are left alone). In the caller's transaction."""
    ids = sorted({str(uuid.UUID(str(i))) for i in event_ids})
    if not ids:
        return []
    rows = session.execute(
        text(
            "WITH old AS ("
            "  SELECT id, attempts, last_error FROM outbox_event"
            "  WHERE event_id = ANY(CAST(:ids AS uuid[])) AND status = 'dead'"
            "  ORDER BY id FOR UPDATE"
            ") "
            "UPDATE outbox_event o SET status = 'pending', attempts = 0, "
            "  next_attempt_at = now(), last_error = NULL, policy_detail = NULL "
            "FROM old WHERE o.id = old.id AND o.status = 'dead' "
            "RETURNING o.event_id, old.attempts, old.last_error"
        ),
        {"ids": ids},
    ).all()
    if rows:
        audit.record_from_query(
            session,
            "replay",
            "outbox_event",
            "SELECT x->>'id' AS object_id, x->'changes' AS changes "
            "FROM jsonb_array_elements(CAST(:events AS jsonb)) x",
            {
                "events": _dumps(
                    [
                        {
                            "id": str(r.event_id),
                            "changes": {
                                "status": {"from": "dead", "to": "pending"},
                                "attempts": {"from": r.attempts, "to": 0},
                                "last_error": {"from": r.last_error, "to": None},
                            },
                        }
                        for r in rows
                    ]
                )
            },
        )
    return sorted(uuid.UUID(str(r.event_id)) for r in rows)


def replay(session: Session, event_ids: Iterable[uuid.UUID | str]) -> int:
    """Dead events back to pending, audited; how many (see `replay_events`)."""
    return len(replay_events(session, event_ids))


def list_events(
    session: Session,
    status: str | None = None,
    department: str | None = None,
    offset: int = 0,
    limit: int = 50,
    *,
    with_policy_detail: bool = False,
) -> tuple[list[dict[str, Any]], int]:
    """Events newest first, with their payloads (never a department's secret); the total.
    `policy_detail` (which address the webhook policy refused, and why) only when asked:
    admins see it, auditors read "refused by policy" in `last_error`."""
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"status must be one of: {', '.join(STATUSES)}.")
    where, params = ["true"], {}
    if status is not None:
        where.append("status = :status")
        params["status"] = status
    if department is not None:
        where.append("department_code = :department")
        params["department"] = department
    clause = " AND ".join(where)
    total = session.scalar(text(f"SELECT count(*) FROM outbox_event WHERE {clause}"), params)
    rows = (
        session.execute(
            text(
                "SELECT event_id, department_code AS department, event_type, payload, status, "
                "attempts, next_attempt_at, last_error, created_at, delivered_at"
                + (", policy_detail " if with_policy_detail else " ")
                + f"FROM outbox_event WHERE {clause} ORDER BY created_at DESC, id DESC "
                "OFFSET :offset LIMIT :limit"
            ),
            {**params, "offset": offset, "limit": limit},
        )
        .mappings()
        .all()
    )
    return [{**r, "event_id": uuid.UUID(str(r["event_id"]))} for r in rows], int(total or 0)


# --------------------------------------------------------------------------- helpers


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=_default)
