"""Read boundary files (GeoJSON, zipped Shapefile, or anything GDAL reads) into plain features.

Reading never raises for one bad feature: it is returned with `error` set so the caller can
report it by index. A file that cannot be read at all raises `ReadError`.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

MAX_FEATURES = 200_000


class ReadError(ValueError):
    """The file as a whole cannot be read."""


@dataclass
class RawFeature:
    index: int  # 0-based position in the file
    properties: dict[str, Any]
    geometry: BaseGeometry | None
    error: str | None = None


@dataclass
class ReadResult:
    features: list[RawFeature]
    driver: str
    source_crs: str | None = None  # as declared by the file, when it declares one
    notes: list[str] = field(default_factory=list)


def read_features(data: bytes, filename: str = "", encoding: str | None = None) -> ReadResult:
    """Detect the format from the content (zip magic or JSON), falling back to GDAL."""
    head = data[:4]
    if head.startswith(b"PK"):
        return _read_zip(data, encoding)
    stripped = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]  # a UTF-8 BOM is common
    if stripped in (b"{", b"["):
        return _read_geojson(data)
    if filename.lower().endswith((".geojson", ".json")):
        raise ReadError("The file is not valid JSON.")
    return _read_with_gdal(data, filename or "upload", encoding)


def _read_geojson(data: bytes) -> ReadResult:
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReadError(f"The file is not valid GeoJSON: {exc}.") from exc
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        items = doc.get("features")
    elif isinstance(doc, dict) and doc.get("type") == "Feature":
        items = [doc]
    else:
        raise ReadError("Expected a GeoJSON FeatureCollection or Feature.")
    if not isinstance(items, list):
        raise ReadError("`features` must be an array.")
    if len(items) > MAX_FEATURES:
        raise ReadError(f"Too many features ({len(items)}); the limit is {MAX_FEATURES}.")
    notes = []
    crs = doc.get("crs") if isinstance(doc, dict) else None
    if crs:
        notes.append("The GeoJSON `crs` member is ignored (RFC 7946); `crs` parameter applies.")
    return ReadResult(
        [_geojson_feature(i, item) for i, item in enumerate(items)], "GeoJSON", None, notes
    )


def _geojson_feature(index: int, item: Any) -> RawFeature:
    if not isinstance(item, dict) or item.get("type") != "Feature":
        return RawFeature(index, {}, None, "not a GeoJSON Feature")
    props = item.get("properties") or {}
    if not isinstance(props, dict):
        return RawFeature(index, {}, None, "`properties` must be an object")
    geometry = item.get("geometry")
    if geometry is None:
        return RawFeature(index, props, None, "the feature has no geometry")
    try:
        geom = shape(geometry)
    except Exception as exc:  # shapely raises several types for malformed coordinates
        return RawFeature(index, props, None, f"malformed geometry: {exc}")
    return RawFeature(index, props, geom)


def _read_zip(data: bytes, encoding: str | None) -> ReadResult:
    try:
        with zipfile.ZipFile(BytesIO(data)) as archive:
            names = [n for n in archive.namelist() if not n.startswith("__MACOSX/")]
            shps = [n for n in names if n.lower().endswith(".shp")]
            if len(shps) != 1:
                raise ReadError(
                    f"A zipped Shapefile must contain exactly one .shp file; found {len(shps)}."
                )
            with tempfile.TemporaryDirectory(prefix="gridpatrol-") as tmp:
                for name in names:
                    target = Path(tmp) / Path(name).name  # flatten: no path traversal
                    if not name.endswith("/"):
                        target.write_bytes(archive.read(name))
                shp = Path(tmp) / Path(shps[0]).name
                return _read_path(str(shp), encoding, "ESRI Shapefile")
    except zipfile.BadZipFile as exc:
        raise ReadError(f"The zip archive is damaged: {exc}.") from exc


def _read_with_gdal(data: bytes, filename: str, encoding: str | None) -> ReadResult:
    suffix = Path(filename).suffix or ".dat"
    with tempfile.NamedTemporaryFile(suffix=suffix) as handle:
        handle.write(data)
        handle.flush()
        return _read_path(handle.name, encoding, None)


def _read_path(path: str, encoding: str | None, driver: str | None) -> ReadResult:
    import pyogrio  # imported lazily: GDAL start-up is slow and GeoJSON does not need it
    from pyogrio.errors import DataLayerError, DataSourceError

    try:
        meta, _fids, wkbs, field_data = pyogrio.raw.read(path, encoding=encoding)
    except (DataSourceError, DataLayerError, OSError, ValueError) as exc:
        raise ReadError(f"GDAL could not read the file: {exc}.") from exc
    if len(wkbs) > MAX_FEATURES:
        raise ReadError(f"Too many features ({len(wkbs)}); the limit is {MAX_FEATURES}.")
    names = list(meta["fields"])
    features = []
    for i, wkb in enumerate(wkbs):
        props = {name: _plain(field_data[j][i]) for j, name in enumerate(names)}
        if wkb is None:
            features.append(RawFeature(i, props, None, "the feature has no geometry"))
            continue
        try:
            features.append(RawFeature(i, props, shapely.from_wkb(wkb)))
        except shapely.errors.GEOSException as exc:
            features.append(RawFeature(i, props, None, f"malformed geometry: {exc}"))
    return ReadResult(features, driver or meta.get("driver") or "GDAL", meta.get("crs"))


def _plain(value: Any) -> Any:
    """numpy scalars → Python values, so properties serialise as JSON."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:  # NaN from an empty numeric field
        return None
    return value
