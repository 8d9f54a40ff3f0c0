"""Read boundary files (GeoJSON or a zipped Shapefile) into plain features.

Reading never raises for one bad feature: it is returned with `error` set so the caller can
report it by index. A file that cannot be read at all raises `ReadError`.
"""

from __future__ import annotations

import json
import tempfile
import zipfile
import zlib
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
    """Detect the format from the content: a zip (Shapefile) or JSON (GeoJSON).

    Nothing else goes to GDAL: formats such as VRT can make it read files on the server.
    """
    if data[:4] == b"PK\x03\x04":
        return _read_zip(data, encoding)
    stripped = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]  # a UTF-8 BOM is common
    if stripped in (b"{", b"["):
        return _read_geojson(data)
    raise ReadError("Upload a GeoJSON file or a zipped Shapefile (.shp, .shx, .dbf, .prj, .cpg).")


def _read_geojson(data: bytes) -> ReadResult:
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, or a 5,000-digit number
        raise ReadError(f"The file is not valid GeoJSON: {exc}.") from exc
    except RecursionError as exc:
        raise ReadError("The file is not valid GeoJSON: it is nested too deeply.") from exc
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


SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx")
MAX_UNZIPPED_BYTES = 1 << 30  # a zip bomb stops here


def _read_zip(data: bytes, encoding: str | None) -> ReadResult:
    try:
        with zipfile.ZipFile(BytesIO(data)) as archive:
            members = [
                info
                for info in archive.infolist()
                if not info.is_dir()
                and not info.filename.startswith("__MACOSX/")
                and Path(info.filename).suffix.lower() in SHAPEFILE_PARTS
                and Path(info.filename).name not in ("", ".", "..")
            ]
            shps = [m for m in members if m.filename.lower().endswith(".shp")]
            if len(shps) != 1:
                raise ReadError(
                    f"A zipped Shapefile must contain exactly one .shp file; found {len(shps)}."
                )
            stem = Path(shps[0].filename).with_suffix("")
            parts = [m for m in members if Path(m.filename).with_suffix("") == stem]
            if sum(m.file_size for m in parts) > MAX_UNZIPPED_BYTES:
                raise ReadError("The Shapefile is larger than 1 GiB once unzipped.")
            with tempfile.TemporaryDirectory(prefix="gridpatrol-") as tmp:
                for member in parts:  # flattened: no path from the archive is used
                    suffix = Path(member.filename).suffix.lower()
                    (Path(tmp) / f"upload{suffix}").write_bytes(archive.read(member))
                return _read_path(Path(tmp) / "upload.shp", encoding, "ESRI Shapefile")
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        RuntimeError,  # also covers zipfile's "compression method not supported"
        OSError,
    ) as exc:
        # damaged, encrypted or oddly compressed archives
        raise ReadError(f"The zip archive cannot be read: {exc}.") from exc


def _read_path(path: Path, encoding: str | None, driver: str) -> ReadResult:
    import pyogrio  # imported lazily: GDAL start-up is slow and GeoJSON does not need it
    from pyogrio.errors import DataLayerError, DataSourceError

    try:
        meta, _fids, wkbs, field_data = pyogrio.raw.read(str(path), encoding=encoding)
    except (DataSourceError, DataLayerError, OSError, ValueError, LookupError) as exc:
        message = str(exc).replace(str(path.parent) + "/", "")  # no server paths in answers
        raise ReadError(f"GDAL could not read the Shapefile: {message}.") from exc
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
    return ReadResult(features, driver, meta.get("crs"))


def _plain(value: Any) -> Any:
    """numpy scalars → Python values, so properties serialise as JSON."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:  # NaN from an empty numeric field
        return None
    return value
