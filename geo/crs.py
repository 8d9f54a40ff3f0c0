"""Coordinate reference system conversions between WGS84/CGCS2000, GCJ-02 and BD-09.

CGCS2000 (EPSG:4490) and WGS84 (EPSG:4326) differ by centimetres and are treated as identical;
CGCS2000 is the storage CRS of the project.  GCJ-02 ("Mars coordinates") is the obfuscated
datum mandated for Chinese web maps (AMap/Tencent) and BD-09 is Baidu's further offset on top of
GCJ-02.  Forward transforms use the published closed-form formulae; inverse transforms are
solved by fixed-point iteration on the forward transform so round trips are millimetre-exact.

The formulae are vectorised over numpy arrays, and written once more for one point with `math`
(numpy's per-call overhead on one-element arrays made a phone request's single conversion cost
~0.15 ms); both follow the same operations in the same order, and a property test holds them
to bit-identical results. The computation is strictly element-wise (including the iteration
stopping rule), so identical input coordinates always map to bit-identical outputs regardless
of the surrounding array.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray
from pyproj import Geod

__all__ = [
    "CRS_NAMES",
    "bd09_to_gcj02",
    "bd09_to_wgs84",
    "convert_xy",
    "from_cgcs2000",
    "from_cgcs2000_xy",
    "gcj02_to_bd09",
    "gcj02_to_wgs84",
    "geodesic_distance_m",
    "normalize_crs",
    "to_cgcs2000",
    "to_cgcs2000_xy",
    "transform_geometry",
    "wgs84_to_bd09",
    "wgs84_to_gcj02",
]

CRS_NAMES: tuple[str, ...] = ("wgs84", "cgcs2000", "gcj02", "bd09")

FloatArray = NDArray[np.float64]
_XYFunc = Callable[[FloatArray, FloatArray], tuple[FloatArray, FloatArray]]
G = TypeVar("G", bound=shapely.Geometry)

# Krasovsky 1940 ellipsoid parameters used by the GCJ-02 obfuscation.
_GCJ_A = 6378245.0
_GCJ_EE = 0.00669342162296594323
# Baidu's BD-09 constants.
_X_PI = math.pi * 3000.0 / 180.0
_BD_DLON = 0.0065
_BD_DLAT = 0.006
# Rough bounding box of China outside which GCJ-02 is the identity.
_CHINA_LON = (72.004, 137.8347)
_CHINA_LAT = (0.8293, 55.8271)

#: Convergence threshold (degrees) for the iterative inverse transforms.
INVERSE_TOLERANCE_DEG = 1e-9
#: Iteration cap for the inverse transforms (convergence normally takes 3-5 steps).
INVERSE_MAX_ITER = 30

_GEOD = Geod(ellps="WGS84")


def normalize_crs(name: str) -> str:
    """Return the canonical lower-case CRS name, or raise ``ValueError`` if unsupported."""
    key = name.strip().lower() if isinstance(name, str) else None
    if key not in CRS_NAMES:
        raise ValueError(
            f"unsupported CRS {name!r}; expected one of {', '.join(CRS_NAMES)} (case-insensitive)"
        )
    return key


# --------------------------------------------------------------------------- vectorised core


def _as_float_array(v: ArrayLike) -> FloatArray:
    """Contiguous float64 copy of ``v`` (at least 1-D) so every call takes the same code path."""
    return np.array(v, dtype=np.float64, ndmin=1, order="C", copy=True)


def _out_of_china(lon: FloatArray, lat: FloatArray) -> NDArray[np.bool_]:
    inside_lon = (lon >= _CHINA_LON[0]) & (lon <= _CHINA_LON[1])
    inside_lat = (lat >= _CHINA_LAT[0]) & (lat <= _CHINA_LAT[1])
    return ~(inside_lon & inside_lat)


def _gcj02_delta(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """GCJ-02 offset (degrees) to add to a WGS84 position inside China."""
    x = lon - 105.0
    y = lat - 35.0
    pi = math.pi
    common = (20.0 * np.sin(6.0 * x * pi) + 20.0 * np.sin(2.0 * x * pi)) * 2.0 / 3.0
    sqrt_abs_x = np.sqrt(np.abs(x))
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sqrt_abs_x + common
    dlat += (20.0 * np.sin(y * pi) + 40.0 * np.sin(y / 3.0 * pi)) * 2.0 / 3.0
    dlat += (160.0 * np.sin(y / 12.0 * pi) + 320.0 * np.sin(y * pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sqrt_abs_x + common
    dlon += (20.0 * np.sin(x * pi) + 40.0 * np.sin(x / 3.0 * pi)) * 2.0 / 3.0
    dlon += (150.0 * np.sin(x / 12.0 * pi) + 300.0 * np.sin(x / 30.0 * pi)) * 2.0 / 3.0

    radlat = lat / 180.0 * pi
    magic = 1.0 - _GCJ_EE * np.sin(radlat) ** 2
    sqrt_magic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_GCJ_A * (1.0 - _GCJ_EE)) / (magic * sqrt_magic) * pi)
    dlon = (dlon * 180.0) / (_GCJ_A / sqrt_magic * np.cos(radlat) * pi)
    return dlon, dlat


def _wgs84_to_gcj02_xy(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    dlon, dlat = _gcj02_delta(lon, lat)
    out = _out_of_china(lon, lat)
    return np.where(out, lon, lon + dlon), np.where(out, lat, lat + dlat)


def _gcj02_to_bd09_xy(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    z = np.hypot(lon, lat) + 0.00002 * np.sin(lat * _X_PI)
    theta = np.arctan2(lat, lon) + 0.000003 * np.cos(lon * _X_PI)
    return z * np.cos(theta) + _BD_DLON, z * np.sin(theta) + _BD_DLAT


def _bd09_to_gcj02_approx(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Baidu's published closed-form inverse (~cm accurate); used as the iteration seed."""
    x = lon - _BD_DLON
    y = lat - _BD_DLAT
    z = np.hypot(x, y) - 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _X_PI)
    return z * np.cos(theta), z * np.sin(theta)


def _invert(
    forward: _XYFunc, seed: _XYFunc, tx: FloatArray, ty: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Solve ``forward(x, y) == (tx, ty)`` by fixed-point iteration starting from ``seed``.

    Each element stops updating as soon as its own residual is below ``INVERSE_TOLERANCE_DEG``,
    so results never depend on the other elements of the array.
    """
    x, y = seed(tx, ty)
    for _ in range(INVERSE_MAX_ITER):
        fx, fy = forward(x, y)
        rx = fx - tx
        ry = fy - ty
        active = (np.abs(rx) >= INVERSE_TOLERANCE_DEG) | (np.abs(ry) >= INVERSE_TOLERANCE_DEG)
        if not active.any():
            break
        x = np.where(active, x - rx, x)
        y = np.where(active, y - ry, y)
    return x, y


def _gcj02_to_wgs84_xy(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    def seed(gx: FloatArray, gy: FloatArray) -> tuple[FloatArray, FloatArray]:
        dlon, dlat = _gcj02_delta(gx, gy)
        return gx - dlon, gy - dlat

    return _invert(_wgs84_to_gcj02_xy, seed, lon, lat)


def _bd09_to_gcj02_xy(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    return _invert(_gcj02_to_bd09_xy, _bd09_to_gcj02_approx, lon, lat)


# The supported datums form a chain wgs84/cgcs2000 <-> gcj02 <-> bd09; a conversion walks it.
_CHAIN_INDEX = {"wgs84": 0, "cgcs2000": 0, "gcj02": 1, "bd09": 2}
_FORWARD_STEPS: tuple[_XYFunc, ...] = (_wgs84_to_gcj02_xy, _gcj02_to_bd09_xy)
_INVERSE_STEPS: tuple[_XYFunc, ...] = (_gcj02_to_wgs84_xy, _bd09_to_gcj02_xy)


def _same_datum(a: str, b: str) -> bool:
    return _CHAIN_INDEX[normalize_crs(a)] == _CHAIN_INDEX[normalize_crs(b)]


def convert_xy(
    from_crs: str, to_crs: str, x: ArrayLike, y: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Convert lon/lat arrays between any two supported CRSs (returns new float64 arrays)."""
    src = _CHAIN_INDEX[normalize_crs(from_crs)]
    dst = _CHAIN_INDEX[normalize_crs(to_crs)]
    lon = _as_float_array(x)
    lat = _as_float_array(y)
    if lon.shape != lat.shape:
        raise ValueError(f"x and y shapes differ: {lon.shape} != {lat.shape}")
    if src < dst:
        for step in _FORWARD_STEPS[src:dst]:
            lon, lat = step(lon, lat)
    else:
        for step in reversed(_INVERSE_STEPS[dst:src]):
            lon, lat = step(lon, lat)
    return lon, lat


def to_cgcs2000_xy(crs: str, x: ArrayLike, y: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Convert lon/lat arrays in ``crs`` to CGCS2000 (== WGS84) lon/lat arrays."""
    return convert_xy(crs, "cgcs2000", x, y)


def from_cgcs2000_xy(crs: str, x: ArrayLike, y: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Convert CGCS2000 (== WGS84) lon/lat arrays to ``crs``."""
    return convert_xy("cgcs2000", crs, x, y)


# --------------------------------------------------------------------------- scalar helpers


def _gcj02_delta_1(lon: float, lat: float) -> tuple[float, float]:
    """`_gcj02_delta` for one point (same operations, same order)."""
    x = lon - 105.0
    y = lat - 35.0
    pi = math.pi
    common = (20.0 * math.sin(6.0 * x * pi) + 20.0 * math.sin(2.0 * x * pi)) * 2.0 / 3.0
    sqrt_abs_x = math.sqrt(abs(x))
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sqrt_abs_x + common
    dlat += (20.0 * math.sin(y * pi) + 40.0 * math.sin(y / 3.0 * pi)) * 2.0 / 3.0
    dlat += (160.0 * math.sin(y / 12.0 * pi) + 320.0 * math.sin(y * pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sqrt_abs_x + common
    dlon += (20.0 * math.sin(x * pi) + 40.0 * math.sin(x / 3.0 * pi)) * 2.0 / 3.0
    dlon += (150.0 * math.sin(x / 12.0 * pi) + 300.0 * math.sin(x / 30.0 * pi)) * 2.0 / 3.0

    radlat = lat / 180.0 * pi
    sin_lat = math.sin(radlat)
    magic = 1.0 - _GCJ_EE * (sin_lat * sin_lat)
    sqrt_magic = math.sqrt(magic)
    dlat = (dlat * 180.0) / ((_GCJ_A * (1.0 - _GCJ_EE)) / (magic * sqrt_magic) * pi)
    dlon = (dlon * 180.0) / (_GCJ_A / sqrt_magic * math.cos(radlat) * pi)
    return dlon, dlat


def _wgs84_to_gcj02_1(lon: float, lat: float) -> tuple[float, float]:
    if not (_CHINA_LON[0] <= lon <= _CHINA_LON[1] and _CHINA_LAT[0] <= lat <= _CHINA_LAT[1]):
        return lon, lat
    dlon, dlat = _gcj02_delta_1(lon, lat)
    return lon + dlon, lat + dlat


def _gcj02_to_bd09_1(lon: float, lat: float) -> tuple[float, float]:
    # numpy's hypot/arctan2 (C library) on purpose: Python's own math.hypot rounds differently
    z = float(np.hypot(lon, lat)) + 0.00002 * math.sin(lat * _X_PI)
    theta = float(np.arctan2(lat, lon)) + 0.000003 * math.cos(lon * _X_PI)
    return z * math.cos(theta) + _BD_DLON, z * math.sin(theta) + _BD_DLAT


def _bd09_to_gcj02_approx_1(lon: float, lat: float) -> tuple[float, float]:
    x = lon - _BD_DLON
    y = lat - _BD_DLAT
    z = float(np.hypot(x, y)) - 0.00002 * math.sin(y * _X_PI)
    theta = float(np.arctan2(y, x)) - 0.000003 * math.cos(x * _X_PI)
    return z * math.cos(theta), z * math.sin(theta)


def _invert_1(
    forward: Callable[[float, float], tuple[float, float]],
    x: float,
    y: float,
    tx: float,
    ty: float,
) -> tuple[float, float]:
    """`_invert` for one point, from the seed (x, y)."""
    for _ in range(INVERSE_MAX_ITER):
        fx, fy = forward(x, y)
        rx = fx - tx
        ry = fy - ty
        if abs(rx) < INVERSE_TOLERANCE_DEG and abs(ry) < INVERSE_TOLERANCE_DEG:
            break
        x = x - rx
        y = y - ry
    return x, y


def _gcj02_to_wgs84_1(lon: float, lat: float) -> tuple[float, float]:
    dlon, dlat = _gcj02_delta_1(lon, lat)
    return _invert_1(_wgs84_to_gcj02_1, lon - dlon, lat - dlat, lon, lat)


def _bd09_to_gcj02_1(lon: float, lat: float) -> tuple[float, float]:
    x, y = _bd09_to_gcj02_approx_1(lon, lat)
    return _invert_1(_gcj02_to_bd09_1, x, y, lon, lat)


_FORWARD_STEPS_1 = (_wgs84_to_gcj02_1, _gcj02_to_bd09_1)
_INVERSE_STEPS_1 = (_gcj02_to_wgs84_1, _bd09_to_gcj02_1)


def _convert_point(from_crs: str, to_crs: str, lon: float, lat: float) -> tuple[float, float]:
    src = _CHAIN_INDEX[normalize_crs(from_crs)]
    dst = _CHAIN_INDEX[normalize_crs(to_crs)]
    x, y = float(lon), float(lat)
    if src < dst:
        for step in _FORWARD_STEPS_1[src:dst]:
            x, y = step(x, y)
    else:
        for step in reversed(_INVERSE_STEPS_1[dst:src]):
            x, y = step(x, y)
    return x, y


def to_cgcs2000(crs: str, lon: float, lat: float) -> tuple[float, float]:
    """Convert one point in ``crs`` to CGCS2000 (== WGS84) ``(lon, lat)``."""
    return _convert_point(crs, "cgcs2000", lon, lat)


def from_cgcs2000(crs: str, lon: float, lat: float) -> tuple[float, float]:
    """Convert one CGCS2000 (== WGS84) point to ``(lon, lat)`` in ``crs``."""
    return _convert_point("cgcs2000", crs, lon, lat)


def wgs84_to_gcj02(lon: float, lat: float) -> tuple[float, float]:
    """WGS84 -> GCJ-02 (identity outside China)."""
    return _convert_point("wgs84", "gcj02", lon, lat)


def gcj02_to_wgs84(lon: float, lat: float) -> tuple[float, float]:
    """GCJ-02 -> WGS84 by iterative inversion (sub-millimetre round trip)."""
    return _convert_point("gcj02", "wgs84", lon, lat)


def gcj02_to_bd09(lon: float, lat: float) -> tuple[float, float]:
    """GCJ-02 -> BD-09."""
    return _convert_point("gcj02", "bd09", lon, lat)


def bd09_to_gcj02(lon: float, lat: float) -> tuple[float, float]:
    """BD-09 -> GCJ-02 by iterative inversion."""
    return _convert_point("bd09", "gcj02", lon, lat)


def wgs84_to_bd09(lon: float, lat: float) -> tuple[float, float]:
    """WGS84 -> BD-09 (via GCJ-02)."""
    return _convert_point("wgs84", "bd09", lon, lat)


def bd09_to_wgs84(lon: float, lat: float) -> tuple[float, float]:
    """BD-09 -> WGS84 (via GCJ-02)."""
    return _convert_point("bd09", "wgs84", lon, lat)


# --------------------------------------------------------------------------- geometry / metrics


def transform_geometry(geom: G, from_crs: str, to_crs: str = "cgcs2000") -> G:
    """Convert every vertex of a shapely geometry; same-datum pairs return ``geom`` itself.

    Z values, if present, are passed through unchanged.
    """
    if _same_datum(from_crs, to_crs):
        return geom

    def fn(coords: FloatArray) -> FloatArray:
        x, y = convert_xy(from_crs, to_crs, coords[:, 0], coords[:, 1])
        out = np.array(coords, dtype=np.float64, copy=True)
        out[:, 0] = x
        out[:, 1] = y
        return out

    # Works on one geometry or an array of them (one vectorised call for a whole file).
    return shapely.transform(geom, fn, include_z=bool(np.any(shapely.has_z(geom))))


def geodesic_distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Geodesic distance in metres on the WGS84 ellipsoid."""
    _, _, dist = _GEOD.inv(lon1, lat1, lon2, lat2)
    return float(dist)
