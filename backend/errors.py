"""RFC 9457 problem+json for every error the app can answer with: no HTML error pages."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, json, request
from sqlalchemy.exc import DBAPIError, OperationalError
from werkzeug.exceptions import HTTPException

from backend.services.errors import ServiceError

PROBLEM_BASE = "https://gridpatrol.example/problems/"
PROBLEM_MIMETYPE = "application/problem+json"
log = logging.getLogger(__name__)


def problem(
    status: int,
    detail: str | None = None,
    *,
    title: str | None = None,
    type_suffix: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (type_suffix or phrase.lower().replace(" ", "-").replace("'", "")),
        "title": title or phrase,
        "status": status,
    }
    if detail:
        body["detail"] = detail
    body["instance"] = request.path if request else None
    body.update({k: v for k, v in extra.items() if v is not None})
    resp = Response(json.dumps(body, ensure_ascii=False), status=status, mimetype=PROBLEM_MIMETYPE)
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


def flatten_messages(messages: Any) -> list[dict[str, Any]]:
    """webargs/marshmallow nest messages as {location: {field: [msg]}}; list each bad field."""
    out: list[dict[str, Any]] = []

    def walk(node: Any, location: str, path: list[str]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, location, [*path, str(key)])
        elif isinstance(node, list) and all(isinstance(m, str) for m in node):
            out.append({"in": location, "field": ".".join(path) or None, "messages": node})
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, location, [*path, str(i)])
        else:
            out.append({"in": location, "field": ".".join(path) or None, "messages": [str(node)]})

    if isinstance(messages, dict):
        for location, fields in messages.items():
            walk(fields, location, [])
    else:
        walk(messages, "body", [])
    return out


def http_exception_problem(error: HTTPException) -> Response:
    status = error.code or 500
    data = getattr(error, "data", None) or {}
    messages = data.get("messages")
    headers = dict(data.get("headers") or {})
    if getattr(error, "description", None) and status == 405:
        headers.setdefault("Allow", ", ".join(getattr(error, "valid_methods", None) or []))
    if messages is not None:
        return problem(
            status,
            "The request has invalid fields; see `errors`.",
            title="Invalid input" if status == 422 else None,
            type_suffix="invalid-input" if status == 422 else None,
            errors=flatten_messages(messages),
            headers=headers,
        )
    detail = data.get("message") or error.description
    if status == 404 and detail and detail.startswith("The requested URL was not found"):
        detail = f"No resource at {request.path}."
    return problem(status, detail, headers=headers)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def _service_error(error: ServiceError) -> Response:
        headers = {}
        if "retry_after" in error.extra:
            headers["Retry-After"] = str(error.extra["retry_after"])
        if error.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="gridpatrol"'
        return problem(
            error.status,
            error.detail,
            title=error.title,
            type_suffix=error.type_suffix,
            errors=error.errors,
            headers=headers,
            **error.extra,
        )

    @app.errorhandler(OperationalError)
    def _db_unavailable(error: OperationalError) -> Response:
        log.error("database unavailable: %s", error.orig)
        return problem(
            503, "The database is unavailable; try again shortly.", headers={"Retry-After": "5"}
        )

    @app.errorhandler(DBAPIError)
    def _db_error(error: DBAPIError) -> Response:
        # Data errors that slipped past validation are the client's (bad value), not a crash.
        sqlstate = getattr(error.orig, "pgcode", None) or ""
        if sqlstate == "23505" or sqlstate.startswith("40"):
            log.warning("concurrent change: %s", error.orig)
            return problem(
                409,
                "A concurrent change got there first; reload and retry.",
                type_suffix="conflict",
                title="Conflict",
            )
        if sqlstate.startswith(("22", "23")):
            log.warning("database rejected input: %s", error.orig)
            return problem(
                422,
                "The database rejected a value in the request.",
                type_suffix="invalid-input",
                title="Invalid input",
            )
        log.exception("database error")
        return problem(500, "An unexpected database error occurred.")

    @app.errorhandler(RecursionError)
    def _too_deep(_error: RecursionError) -> Response:
        return problem(400, "The request body is nested too deeply.")

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        if isinstance(error, HTTPException):
            return http_exception_problem(error)
        log.exception("unhandled error")
        return problem(500, "An unexpected error occurred; it has been logged.")
