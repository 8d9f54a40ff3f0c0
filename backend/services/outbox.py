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
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from backend.services import audit
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


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a delivery: the signed body never goes elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def http_post(url: str, body: bytes, headers: dict[str, str], timeout: float = TIMEOUT_S) -> int:
    """POST with the standard library; the HTTP status (any), or an exception for a transport
    failure (timeout, refused, DNS, TLS)."""
    if not url.lower().startswith(("http://", "https://")):
        raise ValueError("only http(s) webhook URLs are allowed")
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _opener.open(request, timeout=timeout) as response:
            response.read(4096)  # let the server finish; what it says is not kept
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


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
) -> dict[str, int]:
    """Claim, POST and record one batch of due events; counts by outcome.

    `now` stands in for the database clock when choosing what is due and when the next try
    is (tests); `department` limits the run to one department. Results are recorded only if
    the claim is still this runner's (same `attempts`), so a runner that outlived its lease
    cannot overwrite a newer claim; a POST is not started unless it can end within the lease,
    so two runners never send one event at the same time."""
    send = post or http_post
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
        outcome, error = _attempt(event, send, timeout)
        if outcome == "failed":
            outcome = "dead" if event.attempts >= max_attempts else "retrying"
        if _record(sessions, event, outcome, error, now):
            counts[outcome] += 1
        else:
            counts["stale"] += 1
    return counts


def _attempt(event: Claimed, send: Post, timeout: float) -> tuple[str, str | None]:
    if not event.webhook_url:
        return "skipped", "the department has no webhook_url"
    if not event.webhook_secret:
        return "failed", "the department has no webhook_secret; nothing was sent"
    if not event.webhook_url.lower().startswith(("http://", "https://")):
        return "failed", "the webhook_url is not http(s); nothing was sent"
    body, headers = build_request(event)
    try:
        status = send(event.webhook_url, body, headers, timeout)
    except Exception as exc:  # any transport failure is a failed attempt, never a crash
        return "failed", _describe(exc)[:MAX_ERROR_CHARS]
    if 200 <= status < 300:
        return "delivered", None
    return "failed", f"HTTP {status}"


_RECORD = {
    "delivered": (
        "status = 'delivered', delivered_at = now(), last_error = NULL",
        False,
    ),
    "skipped": ("status = 'skipped', last_error = :error", False),
    "dead": ("status = 'dead', last_error = :error", False),
    "retrying": (
        "last_error = :error, next_attempt_at = COALESCE(CAST(:now AS timestamptz), now()) "
        "+ CAST(:delay AS float8) * interval '1 second'",
        True,
    ),
}


def _record(
    sessions: sessionmaker[Session],
    event: Claimed,
    outcome: str,
    error: str | None,
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
            "  next_attempt_at = now(), last_error = NULL "
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
) -> tuple[list[dict[str, Any]], int]:
    """Events newest first, with their payloads (never a department's secret); the total."""
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
                "attempts, next_attempt_at, last_error, created_at, delivered_at "
                f"FROM outbox_event WHERE {clause} ORDER BY created_at DESC, id DESC "
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
