"""Marshmallow schemas of the grid API (they also generate its OpenAPI)."""

from __future__ import annotations

import codecs

from flask_smorest.fields import Upload
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from backend.api.fields import Crs, SafeString


class StrictQuery(Schema):
    class Meta:
        unknown = EXCLUDE


class ListQuery(StrictQuery):
    town = SafeString(
        validate=validate.Regexp(r"^[0-9]{9}$"), metadata={"description": "town code (9 digits)"}
    )
    community = SafeString(
        validate=validate.Regexp(r"^[0-9]{12}$"),
        metadata={"description": "community code (12 digits)"},
    )
    bbox = SafeString(
        metadata={
            "description": "minLon,minLat,maxLon,maxLat (CGCS2000)",
            "example": "113.70,22.95,113.80,23.05",
        }
    )
    geometry = fields.Boolean(
        load_default=True, metadata={"description": "false leaves geometry out (lighter)"}
    )


class FeatureSchema(Schema):
    type = fields.String(metadata={"example": "Feature"})
    id = fields.Raw()
    geometry = fields.Dict(allow_none=True)
    properties = fields.Dict()


class FeatureCollectionSchema(Schema):
    type = fields.String(metadata={"example": "FeatureCollection"})
    features = fields.List(fields.Nested(FeatureSchema))
    numberMatched = fields.Integer()
    numberReturned = fields.Integer()


class LocateQuery(StrictQuery):
    lon = fields.Float(required=True, validate=validate.Range(-180, 180), allow_nan=False)
    lat = fields.Float(required=True, validate=validate.Range(-90, 90), allow_nan=False)
    crs = Crs(load_default="wgs84")


class NamedCode(Schema):
    code = fields.String()
    name = fields.String()


class LocateSchema(Schema):
    point = fields.Dict(metadata={"description": "the point in CGCS2000"})
    town = fields.Nested(NamedCode)
    community = fields.Nested(NamedCode)
    cell = fields.Nested(NamedCode)
    on_boundary = fields.Boolean()
    rule = fields.String()


class QaQuery(StrictQuery):
    level = fields.List(
        SafeString(validate=validate.OneOf(["city", "town", "community", "cell"])),
        metadata={"description": "levels to check (repeatable); default town, community, cell"},
    )
    tolerance_m2 = fields.Float(
        load_default=1.0,
        validate=validate.Range(0, 1e6),
        metadata={"description": "overlaps/gaps below this are noise"},
    )
    sliver_m2 = fields.Float(
        load_default=100.0,
        validate=validate.Range(0, 1e7),
        metadata={"description": "polygon parts below this are slivers"},
    )
    limit = fields.Integer(
        load_default=200,
        validate=validate.Range(1, 5000),
        metadata={"description": "max items per list (counts stay complete)"},
    )


def _known_encoding(name: str) -> None:
    try:
        codecs.lookup(name)
    except LookupError:
        raise ValidationError(f"Unknown encoding {name!r}; e.g. GBK, GB18030, UTF-8.") from None


class ImportRequest(Schema):
    """One multipart body: the file and the parameters of its import."""

    file = Upload(
        required=True,
        metadata={"description": "GeoJSON (.geojson/.json) or zipped Shapefile (.zip)"},
    )
    level = SafeString(
        required=True, validate=validate.OneOf(["city", "town", "community", "cell"])
    )
    code_field = SafeString(load_default="code", validate=validate.Length(1, 64))
    name_field = SafeString(load_default="name", validate=validate.Length(1, 64))
    parent_field = SafeString(
        load_default="parent_code",
        validate=validate.Length(0, 64),
        metadata={"description": "property with the parent's code; empty → found spatially"},
    )
    crs = Crs(load_default="wgs84")
    repair = fields.Boolean(
        load_default=False,
        metadata={
            "description": "repair invalid rings, cut overlaps, clip to parent, fill gaps, accept"
        },
    )
    partial = fields.Boolean(
        load_default=False,
        metadata={"description": "apply valid features even when others are rejected"},
    )
    dry_run = fields.Boolean(load_default=False)
    encoding = SafeString(
        validate=[validate.Length(1, 32), _known_encoding],
        metadata={"description": "attribute encoding of a Shapefile without .cpg, e.g. GBK"},
    )
    tolerance_m2 = fields.Float(load_default=1.0, validate=validate.Range(0, 1e6))
    sliver_m2 = fields.Float(load_default=100.0, validate=validate.Range(0, 1e7))


class ImportSchema(Schema):
    id = fields.Integer()
    level = fields.String()
    source_name = fields.String()
    source_crs = fields.String()
    status = fields.String(metadata={"description": "applied | rejected | dry_run"})
    options = fields.Dict()
    report = fields.Dict()
    created_by = fields.Integer(allow_none=True)
    created_at = fields.DateTime()


class ImportSummarySchema(Schema):
    id = fields.Integer()
    level = fields.String()
    source_name = fields.String()
    status = fields.String()
    created_at = fields.DateTime()


class RosterEntrySchema(Schema):
    user_id = fields.Integer()
    username = fields.String()
    display_name = fields.String()
    duty = fields.String()
    assigned_at = fields.DateTime()
    is_active = fields.Boolean()


class CellWorkersSchema(Schema):
    cell_code = fields.String()
    primary = fields.Nested(RosterEntrySchema, allow_none=True)
    backups = fields.List(fields.Nested(RosterEntrySchema))


class SetCellWorkersSchema(Schema):
    primary = fields.Integer(
        allow_none=True,
        load_default=None,
        strict=True,
        validate=validate.Range(1, 2**31 - 1),
        metadata={"description": "user id of the primary worker, or null"},
    )
    backups = fields.List(
        fields.Integer(strict=True, validate=validate.Range(1, 2**31 - 1)),
        load_default=list,
        validate=validate.Length(0, 50),
    )


class CellOfWorkerSchema(Schema):
    cell_code = fields.String()
    name = fields.String()
    community_code = fields.String()
    town_code = fields.String()
    duty = fields.String(metadata={"description": "primary | backup"})
    assigned_at = fields.DateTime()
