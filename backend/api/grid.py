"""Grid geography API: towns, communities, cells; locate; topology QA; boundary imports."""

from __future__ import annotations

from typing import Any

from flask import current_app, request
from flask.views import MethodView
from sqlalchemy import select

from backend.api.blueprint import Blueprint
from backend.api.grid_schemas import (
    CellWorkersSchema,
    FeatureCollectionSchema,
    FeatureSchema,
    ImportRequest,
    ImportSchema,
    ImportSummarySchema,
    ListQuery,
    LocateQuery,
    LocateSchema,
    QaQuery,
    SetCellWorkersSchema,
)
from backend.api.security import (
    ANY_ROLE,
    DISPATCHERS,
    current_principal,
    current_scope,
    requires,
)
from backend.errors import problem
from backend.models import GridImport
from backend.services import grid_query, roster
from backend.services.errors import InvalidInput, NotFound
from backend.services.grid_import import ImportOptions, import_boundaries
from backend.services.grid_qa import QaThresholds, grid_qa
from backend.web import db_session

blp = Blueprint(
    "grid",
    __name__,
    url_prefix="/api/v1/grid",
    description="The city's grid: 镇街 → 村(社区) → 基础网格",
)

COLLECTIONS = {"towns": "town", "communities": "community", "cells": "cell"}
READERS = (ANY_ROLE,)


def _collection_views(collection: str, level: str) -> None:
    """Register list / item / history views for one level (same shape at every level)."""

    class ListView(MethodView):
        @requires(*READERS)
        @blp.arguments(ListQuery, location="query")
        @blp.response(200, FeatureCollectionSchema)
        @blp.paginate(page_size=100, max_page_size=1000)
        def get(self, args: dict[str, Any], pagination_parameters: Any) -> dict[str, Any]:
            features, total = grid_query.list_features(
                db_session(),
                level,
                town=args.get("town"),
                community=args.get("community"),
                bbox=grid_query.parse_bbox(args.get("bbox")),
                scope=current_scope(),
                offset=pagination_parameters.first_item,
                limit=pagination_parameters.page_size,
                with_geometry=args["geometry"],
            )
            pagination_parameters.item_count = total
            return {
                "type": "FeatureCollection",
                "features": features,
                "numberMatched": total,
                "numberReturned": len(features),
            }

    class ItemView(MethodView):
        @requires(*READERS)
        @blp.response(200, FeatureSchema)
        def get(self, code: str) -> dict[str, Any]:
            return grid_query.get_feature(db_session(), level, code, current_scope())

    class HistoryView(MethodView):
        @requires(*READERS)
        @blp.response(200, FeatureCollectionSchema)
        def get(self, code: str) -> dict[str, Any]:
            features = grid_query.boundary_history(db_session(), level, code, current_scope())
            return {
                "type": "FeatureCollection",
                "features": features,
                "numberMatched": len(features),
                "numberReturned": len(features),
            }

    ListView.get.__doc__ = f"List {collection} as a paginated GeoJSON FeatureCollection."
    ItemView.get.__doc__ = f"One {level} with its parents, area (m²)" + (
        " and neighbour cells." if level == "cell" else " and neighbours."
    )
    HistoryView.get.__doc__ = f"Every boundary a {level} has had (newest first)."
    for view, suffix, name in (
        (ListView, "", "list"),
        (ItemView, "/<code>", "item"),
        (HistoryView, "/<code>/history", "history"),
    ):
        view.__name__ = f"{level.title()}{name.title()}"
        blp.route(f"/{collection}{suffix}", endpoint=f"{level}_{name}")(view)


for _collection, _level in COLLECTIONS.items():
    _collection_views(_collection, _level)


@blp.route("/locate")
class Locate(MethodView):
    @requires(*READERS)
    @blp.arguments(LocateQuery, location="query")
    @blp.response(200, LocateSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Town, community and cell of a point (404 outside the grid).

        A point on a boundary shared by several cells belongs to the cell whose code sorts first.
        """
        return grid_query.locate(
            db_session(), args["lon"], args["lat"], args["crs"], current_scope()
        )


@blp.route("/qa")
class Qa(MethodView):
    @requires("admin", "city_dispatcher", "auditor")
    @blp.arguments(QaQuery, location="query")
    @blp.response(200)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Topology QA: invalid geometries, overlaps, gaps, outside-parent parts, slivers."""
        thresholds = QaThresholds(args["tolerance_m2"], args["sliver_m2"], args["limit"])
        session = db_session()
        report = grid_qa(session, args.get("level"), thresholds)
        session.rollback()  # drop the temp relations
        return report


@blp.route("/imports")
class Imports(MethodView):
    @requires("admin")
    @blp.response(200, ImportSummarySchema(many=True))
    @blp.paginate(page_size=50, max_page_size=500)
    def get(self, pagination_parameters: Any) -> list[GridImport]:
        """Past imports, newest first."""
        session = db_session()
        pagination_parameters.item_count = session.query(GridImport).count()
        return list(
            session.scalars(
                select(GridImport)
                .order_by(GridImport.id.desc())
                .offset(pagination_parameters.first_item)
                .limit(pagination_parameters.page_size)
            )
        )

    @requires("admin")
    @blp.arguments(ImportRequest, location="form_and_files")
    @blp.response(201, ImportSchema)
    @blp.alt_response(422, description="Rejected import (report inside) or invalid parameters")
    def post(self, form: dict[str, Any]) -> Any:
        """Import one level of boundaries (GeoJSON or zipped Shapefile), all-or-nothing.

        The answer is the import report: features read, created, updated, rejected with reasons
        (feature index and code), and the topology QA. A rejected import answers 422 with the
        same report and changes nothing.
        """
        upload = form["file"]
        data = upload.read()
        if not data:
            raise InvalidInput(
                "The uploaded file is empty.",
                errors=[{"in": "files", "field": "file", "messages": ["empty"]}],
            )
        options = ImportOptions(
            level=form["level"],
            code_field=form["code_field"],
            name_field=form["name_field"],
            parent_field=form["parent_field"] or None,
            crs=form["crs"],
            repair=form["repair"],
            partial=form["partial"],
            dry_run=form["dry_run"],
            encoding=form.get("encoding"),
            tolerance_m2=form["tolerance_m2"],
            sliver_m2=form["sliver_m2"],
        )
        session = db_session()
        record = import_boundaries(
            session, data, upload.filename or "upload", options, user_id=current_principal().user_id
        )
        session.commit()
        current_app.logger.info("grid import %s: %s", record.id, record.status)
        location = {"Location": f"{request.path}/{record.id}"}
        if record.status == "rejected":
            return problem(
                422,
                " ".join(record.report["reasons"]),
                title="Import rejected",
                type_suffix="import-rejected",
                headers=location,
                import_id=record.id,
                report=record.report,
            )
        return record, 201, location


@blp.route("/imports/<int:import_id>")
class ImportItem(MethodView):
    @requires("admin")
    @blp.response(200, ImportSchema)
    def get(self, import_id: int) -> GridImport:
        """One import with its full report."""
        record = db_session().get(GridImport, import_id)
        if record is None:
            raise NotFound(f"No grid import {import_id}.")
        return record


@blp.route("/cells/<code>/workers")
class CellWorkers(MethodView):
    @requires(*READERS)
    @blp.response(200, CellWorkersSchema)
    def get(self, code: str) -> dict[str, Any]:
        """The cell's primary grid worker and backups."""
        return roster.cell_workers(db_session(), code, current_scope())

    @requires("admin", *DISPATCHERS)
    @blp.arguments(SetCellWorkersSchema)
    @blp.response(200, CellWorkersSchema)
    @blp.alt_response(409, description="The primary is already primary in another cell")
    def put(self, body: dict[str, Any], code: str) -> dict[str, Any]:
        """Set the cell's workers: one primary (or none) and any backups. A worker is primary
        in at most one cell."""
        session = db_session()
        result = roster.set_cell_workers(
            session, code, body.get("primary"), body["backups"], current_scope()
        )
        session.commit()
        return result
