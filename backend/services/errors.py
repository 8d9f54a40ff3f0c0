"""Domain errors raised by services; the web layer turns them into problem+json answers."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """Base class: `status` is the HTTP status the web layer should answer with."""

    status = 400
    title = "Bad request"
    type_suffix = "bad-request"

    def __init__(self, detail: str, *, errors: list[dict[str, Any]] | None = None, **extra: Any):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.extra = extra


class InvalidInput(ServiceError):
    status = 422
    title = "Invalid input"
    type_suffix = "invalid-input"


class NotFound(ServiceError):
    status = 404
    title = "Not found"
    type_suffix = "not-found"


class Conflict(ServiceError):
    status = 409
    title = "Conflict"
    type_suffix = "conflict"


class PreconditionFailed(ServiceError):
    status = 412
    title = "Precondition failed"
    type_suffix = "precondition-failed"


class Unauthorized(ServiceError):
    status = 401
    title = "Unauthorized"
    type_suffix = "unauthorized"


class Forbidden(ServiceError):
    status = 403
    title = "Forbidden"
    type_suffix = "forbidden"


class TooManyRequests(ServiceError):
    """Throttled; `retry_after` (seconds) becomes the Retry-After header."""

    status = 429
    title = "Too many requests"
    type_suffix = "too-many-requests"

    def __init__(self, detail: str, *, retry_after: int):
        super().__init__(detail, retry_after=retry_after)
        self.retry_after = retry_after


class PreconditionRequired(ServiceError):
    status = 428
    title = "Precondition required"
    type_suffix = "precondition-required"
