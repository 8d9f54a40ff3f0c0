"""flask-smorest's Api, answering (and documenting) its errors as RFC 9457 problem+json."""

from __future__ import annotations

from flask import Response
from flask_smorest import Api
from flask_smorest.spec import prepare_response
from marshmallow import Schema, fields
from werkzeug.exceptions import HTTPException

from backend.errors import PROBLEM_MIMETYPE, http_exception_problem


class FieldErrorSchema(Schema):
    in_ = fields.String(data_key="in", metadata={"example": "query"})
    field = fields.String(allow_none=True, metadata={"example": "lon"})
    messages = fields.List(fields.String())


class ProblemSchema(Schema):
    type = fields.String(metadata={"example": "https://gridpatrol.example/problems/not-found"})
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    instance = fields.String()
    errors = fields.List(
        fields.Nested(FieldErrorSchema),
        metadata={"description": "one item per bad field (validation)"},
    )


class ProblemApi(Api):
    ERROR_SCHEMA = ProblemSchema

    def handle_http_exception(self, error: HTTPException) -> Response:  # type: ignore[override]
        return http_exception_problem(error)

    def _register_responses(self) -> None:
        # Same as flask-smorest's, with the error content type we really send.
        import http

        for status in http.HTTPStatus:
            response: dict = {"description": status.phrase}
            if not (100 <= status < 200) and status not in (204, 304):
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, PROBLEM_MIMETYPE)
            self.spec.components.response(status.name, response, lazy=True)
        response = {"description": "Default error response", "schema": self.ERROR_SCHEMA}
        prepare_response(response, self.spec, PROBLEM_MIMETYPE)
        self.spec.components.response("DEFAULT_ERROR", response, lazy=True)
