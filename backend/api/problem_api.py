"""flask-smorest's Api, answering its own errors (validation, 404, 405...) as problem+json."""

from __future__ import annotations

from flask import Response
from flask_smorest import Api
from werkzeug.exceptions import HTTPException

from backend.errors import http_exception_problem


class ProblemApi(Api):
    def handle_http_exception(self, error: HTTPException) -> Response:  # type: ignore[override]
        return http_exception_problem(error)
