"""The phone app's API (`/api/mobile/v1`): auth, where-am-I; tasks and submissions come later."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import EXCLUDE, Schema, fields, validate

from backend.api.blueprint import Blueprint
from backend.api.fields import Crs
from backend.api.security import ANY_ROLE, requires
from backend.services import grid_query
from backend.web import db_session

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
        """The town, community and grid cell the phone is standing in."""
        return grid_query.locate(db_session(), args["lon"], args["lat"], args["crs"])
