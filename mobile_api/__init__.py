"""The phone app's API (`/api/mobile/v1`): auth, where-am-I; tasks and submissions come later."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import EXCLUDE, Schema, fields, validate

from backend.api.auth import register_auth_routes
from backend.api.blueprint import Blueprint
from backend.api.fields import Crs
from backend.api.security import ANY_ROLE, current_scope, requires
from backend.services import grid_query
from backend.services.errors import NotFound
from backend.web import db_session

auth_blp = Blueprint(
    "mobile_auth",
    __name__,
    url_prefix="/api/mobile/v1/auth",
    description="Phone app login (the same tokens as /api/v1/auth)",
)
register_auth_routes(auth_blp)

blp = Blueprint(
    "mobile",
    __name__,
    url_prefix="/api/mobile/v1",
    description="Phone app (grid workers); coordinates default to GCJ-02 here",
)


class WhereQuery(Schema):
    class Meta:
        unknown = EXCLUDE

    lon = fields.Float(required=True, validate=validate.Range(-180, 180), allow_nan=False)
    lat = fields.Float(required=True, validate=validate.Range(-90, 90), allow_nan=False)
    # Amap and Tencent map SDKs report GCJ-02, so that is the phone's default.
    crs = Crs(load_default="gcj02")


@blp.route("/whereami")
class WhereAmI(MethodView):
    @requires(ANY_ROLE)
    @blp.arguments(WhereQuery, location="query")
    @blp.response(200)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Where the phone stands: its cell when that cell is in your territory; otherwise
        only whether it is inside the city's grid at all."""
        session = db_session()
        try:
            found = grid_query.locate(
                session, args["lon"], args["lat"], args["crs"], current_scope()
            )
        except NotFound:
            try:
                grid_query.locate(session, args["lon"], args["lat"], args["crs"])
            except NotFound:
                return {"in_territory": False, "inside_grid": False}
            return {"in_territory": False, "inside_grid": True}
        return {"in_territory": True, "inside_grid": True, **found}
