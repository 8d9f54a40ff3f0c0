"""Photos as evidence: the file itself, for whoever may see what it documents."""

from __future__ import annotations

from typing import Any

from flask import Response, request
from flask.views import MethodView

from backend.api.blueprint import Blueprint
from backend.api.security import ANY_ROLE, current_principal, requires
from backend.services import attachments
from backend.services.storage import storage_from_env
from backend.web import db_session

blp = Blueprint(
    "attachments", __name__, url_prefix="/api/v1/attachments", description="Photos (evidence)"
)


@blp.route("/<int:attachment_id>")
class Attachment(MethodView):
    @requires(ANY_ROLE)
    @blp.response(200, description="the photo (image/jpeg, image/png or image/heic)")
    def get(self, attachment_id: int) -> Any:
        """The photo: for its uploader, city-wide roles, the dispatchers of the territory of
        the task it documents, and the officers whose referral it is evidence of (404 for
        everyone else). Immutable: the ETag is its SHA-256."""
        row = attachments.readable(db_session(), attachment_id, current_principal())
        etag = row["sha256"]
        headers = {"ETag": f'"{etag}"', "Cache-Control": "private, max-age=86400, immutable"}
        if request.if_none_match.contains(etag):
            return Response(status=304, headers=headers)
        with storage_from_env().open(row["storage_key"]) as handle:
            data = handle.read()
        return Response(data, mimetype=row["mime"], headers=headers)
