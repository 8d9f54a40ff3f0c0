"""Liveness and readiness: is the database there, and which PostgreSQL/PostGIS is it."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields
from sqlalchemy.exc import OperationalError

from backend.api.blueprint import Blueprint
from backend.api.security import public
from backend.errors import problem
from backend.services.health import database_versions
from backend.web import db_session

blp = Blueprint("health", __name__, url_prefix="/", description="Service health")


class HealthSchema(Schema):
    status = fields.String(metadata={"example": "ok"})
    version = fields.String()
    database = fields.String(metadata={"description": "PostgreSQL server version"})
    postgis = fields.String(metadata={"description": "PostGIS version"})
    geos = fields.String()
    proj = fields.String()


@blp.route("/healthz")
class Health(MethodView):
    @public
    @blp.doc(security=[])
    @blp.response(200, HealthSchema)
    @blp.alt_response(503, description="The database is unreachable (problem+json)")
    def get(self):  # type: ignore[no-untyped-def]
        """Report service, database and PostGIS versions; 503 when the database is unreachable."""
        try:
            return {"status": "ok", **database_versions(db_session())}
        except OperationalError:
            return problem(503, "The database is unreachable.", headers={"Retry-After": "5"})
