"""Tests for geo.crs: WGS84/CGCS2000 <-> GCJ-02 <-> BD-09 conversions."""

from __future__ import annotations

import random

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import LineString, Point, Polygon

from geo.crs import (
    CRS_NAMES,
    INVERSE_TOLERANCE_DEG,
    bd09_to_gcj02,
    bd09_to_wgs84,
    convert_xy,
    from_cgcs2000,
    from_cgcs2000_xy,
    gcj02_to_bd09,
    gcj02_to_wgs84,
    geodesic_distance_m,
    normalize_crs,
    to_cgcs2000,
    to_cgcs2000_xy,
    transform_geometry,
    wgs84_to_bd09,
    wgs84_to_gcj02,
)

MAX_ROUND_TRIP_M = 0.5

china_lon = st.floats(73.6, 134.7, allow_nan=False, allow_infinity=False)
china_lat = st.floats(18.2, 53.5, allow_nan=False, allow_infinity=False)
dg_lon = st.floats(113.5, 114.3, allow_nan=False, allow_infinity=False)
dg_lat = st.floats(22.6, 23.2, allow_nan=False, allow_infinity=False)
china_points = st.tuples(china_lon, china_lat)
dongguan_points = st.tuples(dg_lon, dg_lat)
any_points = st.one_of(china_points, dongguan_points)
crs_names = st.sampled_from(CRS_NAMES)

fast = settings(deadline=None, max_examples=150)


# --------------------------------------------------------------------------- normalize_crs


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("wgs84", "wgs84"), ("WGS84", "wgs84"), ("CGCS2000", "cgcs2000"), (" GCJ02 ", "gcj02")],
)
def test_normalize_crs_accepts_known_names(raw: str, expected: str) -> None:
    assert normalize_crs(raw) == expected


def test_crs_names() -> None:
    assert CRS_NAMES == ("wgs84", "cgcs2000", "gcj02", "bd09")
    assert all(normalize_crs(n.upper()) == n for n in CRS_NAMES)


@pytest.mark.parametrize("bad", ["", "epsg:4326", "gcj-02", "bd-09", "mars", "wgs 84"])
def test_normalize_crs_rejects_unknown(bad: str) -> None:
    with pytest.raises(ValueError, match="wgs84, cgcs2000, gcj02, bd09"):
        normalize_crs(bad)


def test_unknown_crs_rejected_by_converters() -> None:
    with pytest.raises(ValueError):
        to_cgcs2000("utm50n", 113.75, 23.02)
    with pytest.raises(ValueError):
        transform_geometry(Point(113.75, 23.02), "wgs84", "tokyo")


# --------------------------------------------------------------------------- known values


def test_reference_values_beijing() -> None:
    # Reference outputs of the widely used wandergis/coordtransform implementation.
    assert wgs84_to_gcj02(116.404, 39.915) == pytest.approx(
        (116.41024449916938, 39.91640428150164), abs=1e-12
    )
    assert gcj02_to_bd09(116.404, 39.915) == pytest.approx(
        (116.41036949371029, 39.92133699351021), abs=1e-12
    )
    # The closed-form BD-09 inverse is only cm-accurate; the iterative one must agree to ~5 cm.
    assert bd09_to_gcj02(116.404, 39.915) == pytest.approx(
        (116.39762729119315, 39.90865673957631), abs=1e-6
    )


def test_dongguan_gcj02_offset() -> None:
    lon, lat = 113.75, 23.02
    glon, glat = wgs84_to_gcj02(lon, lat)
    shift = geodesic_distance_m(lon, lat, glon, glat)
    assert 100.0 < shift < 700.0
    # In the Pearl River Delta GCJ-02 is shifted east (~+0.0052 deg) and slightly south
    # (~-0.0027 deg) of WGS84; e.g. published (113.8294754, 22.6926477) ->
    # (113.83449435090813, 22.689706503327333).
    assert 0.004 < glon - lon < 0.007
    assert -0.004 < glat - lat < -0.001
    assert wgs84_to_gcj02(113.8294754, 22.6926477) == pytest.approx(
        (113.83449435090813, 22.689706503327333), abs=1e-12
    )


@pytest.mark.parametrize(("lon", "lat"), [(2.35, 48.85), (-74.0, 40.7), (139.69, 35.68)])
def test_out_of_china_unchanged_by_gcj02(lon: float, lat: float) -> None:
    assert wgs84_to_gcj02(lon, lat) == (lon, lat)
    assert gcj02_to_wgs84(lon, lat) == (lon, lat)
    assert to_cgcs2000("gcj02", lon, lat) == (lon, lat)


@given(any_points)
@fast
def test_bd09_offset_from_gcj02(p: tuple[float, float]) -> None:
    blon, blat = gcj02_to_bd09(*p)
    assert blon - p[0] == pytest.approx(0.0065, abs=5e-4)
    assert blat - p[1] == pytest.approx(0.006, abs=5e-4)


def test_wgs84_and_cgcs2000_identical() -> None:
    assert to_cgcs2000("wgs84", 113.75, 23.02) == (113.75, 23.02)
    assert from_cgcs2000("WGS84", 113.75, 23.02) == (113.75, 23.02)
    assert to_cgcs2000("gcj02", 113.75, 23.02) == gcj02_to_wgs84(113.75, 23.02)
    assert from_cgcs2000("bd09", 113.75, 23.02) == wgs84_to_bd09(113.75, 23.02)


def test_geodesic_distance() -> None:
    assert geodesic_distance_m(113.75, 23.02, 113.75, 23.02) == 0.0
    assert geodesic_distance_m(0.0, 0.0, 0.0, 1.0) == pytest.approx(110574.4, abs=1.0)


# --------------------------------------------------------------------------- round trips


@given(any_points)
@fast
def test_round_trip_wgs84_gcj02(p: tuple[float, float]) -> None:
    back = gcj02_to_wgs84(*wgs84_to_gcj02(*p))
    assert geodesic_distance_m(*p, *back) < MAX_ROUND_TRIP_M


@given(any_points)
@fast
def test_round_trip_wgs84_bd09(p: tuple[float, float]) -> None:
    back = bd09_to_wgs84(*wgs84_to_bd09(*p))
    assert geodesic_distance_m(*p, *back) < MAX_ROUND_TRIP_M


@given(any_points)
@fast
def test_round_trip_gcj02_bd09(p: tuple[float, float]) -> None:
    back = bd09_to_gcj02(*gcj02_to_bd09(*p))
    assert geodesic_distance_m(*p, *back) < MAX_ROUND_TRIP_M


@given(any_points)
@fast
def test_inverse_reproduces_input(p: tuple[float, float]) -> None:
    # The iteration's stopping criterion: forward(inverse(p)) == p to within the tolerance.
    fwd = wgs84_to_gcj02(*gcj02_to_wgs84(*p))
    assert abs(fwd[0] - p[0]) < INVERSE_TOLERANCE_DEG
    assert abs(fwd[1] - p[1]) < INVERSE_TOLERANCE_DEG
    fwd = gcj02_to_bd09(*bd09_to_gcj02(*p))
    assert abs(fwd[0] - p[0]) < INVERSE_TOLERANCE_DEG
    assert abs(fwd[1] - p[1]) < INVERSE_TOLERANCE_DEG


def test_round_trip_bulk_china() -> None:
    rng = np.random.default_rng(20240501)
    x = rng.uniform(73.6, 134.7, 20_000)
    y = rng.uniform(18.2, 53.5, 20_000)
    for crs in ("gcj02", "bd09"):
        bx, by = to_cgcs2000_xy(crs, *from_cgcs2000_xy(crs, x, y))
        # 1e-8 deg is ~1 mm: comfortably inside the 0.5 m budget.
        assert np.max(np.abs(bx - x)) < 1e-8
        assert np.max(np.abs(by - y)) < 1e-8


# --------------------------------------------------------------------------- vectorised == scalar

_SCALAR_TO_CGCS = {
    "wgs84": lambda lon, lat: (lon, lat),
    "cgcs2000": lambda lon, lat: (lon, lat),
    "gcj02": gcj02_to_wgs84,
    "bd09": bd09_to_wgs84,
}
_SCALAR_FROM_CGCS = {
    "wgs84": lambda lon, lat: (lon, lat),
    "cgcs2000": lambda lon, lat: (lon, lat),
    "gcj02": wgs84_to_gcj02,
    "bd09": wgs84_to_bd09,
}


@given(crs_names, st.lists(any_points, min_size=1, max_size=40))
@fast
def test_vectorised_matches_scalar(crs: str, pts: list[tuple[float, float]]) -> None:
    x = np.array([p[0] for p in pts])
    y = np.array([p[1] for p in pts])
    tx, ty = to_cgcs2000_xy(crs, x, y)
    fx, fy = from_cgcs2000_xy(crs, x, y)
    for i, p in enumerate(pts):
        assert (float(tx[i]), float(ty[i])) == _SCALAR_TO_CGCS[crs](*p)
        assert (float(fx[i]), float(fy[i])) == _SCALAR_FROM_CGCS[crs](*p)
        assert (float(tx[i]), float(ty[i])) == to_cgcs2000(crs, *p)


@given(st.lists(any_points, min_size=2, max_size=30), st.randoms(use_true_random=False))
@fast
def test_vectorised_result_independent_of_neighbours(
    pts: list[tuple[float, float]], rnd: random.Random
) -> None:
    arr = np.array(pts)
    perm = np.arange(len(pts))
    rnd.shuffle(perm)
    for src, dst in [("gcj02", "wgs84"), ("bd09", "wgs84"), ("bd09", "gcj02")]:
        ax, ay = convert_xy(src, dst, arr[:, 0], arr[:, 1])
        bx, by = convert_xy(src, dst, arr[perm, 0], arr[perm, 1])
        assert np.array_equal(ax[perm], bx)
        assert np.array_equal(ay[perm], by)


def test_vectorised_does_not_mutate_and_checks_shapes() -> None:
    x = np.array([113.75, 113.8])
    y = np.array([23.02, 23.05])
    x0, y0 = x.copy(), y.copy()
    to_cgcs2000_xy("gcj02", x, y)
    from_cgcs2000_xy("bd09", x, y)
    assert np.array_equal(x, x0)
    assert np.array_equal(y, y0)
    with pytest.raises(ValueError, match="shape"):
        to_cgcs2000_xy("gcj02", x, y[:1])
    ex, ey = to_cgcs2000_xy("bd09", np.array([]), np.array([]))
    assert ex.shape == ey.shape == (0,)


# --------------------------------------------------------------------------- transform_geometry


def test_transform_geometry_identity_returns_same_object() -> None:
    poly = Polygon([(113.7, 23.0), (113.8, 23.0), (113.8, 23.1), (113.7, 23.0)])
    assert transform_geometry(poly, "wgs84") is poly
    assert transform_geometry(poly, "CGCS2000", "wgs84") is poly
    assert transform_geometry(poly, "gcj02", "GCJ02") is poly


def test_transform_geometry_matches_point_conversion() -> None:
    line = LineString([(113.7, 23.0), (113.8, 23.05), (113.9, 23.1)])
    out = transform_geometry(line, "bd09")
    coords = shapely.get_coordinates(line)
    ex, ey = to_cgcs2000_xy("bd09", coords[:, 0], coords[:, 1])
    assert np.array_equal(shapely.get_coordinates(out), np.column_stack([ex, ey]))
    back = transform_geometry(out, "cgcs2000", "bd09")
    assert np.allclose(shapely.get_coordinates(back), coords, atol=1e-8, rtol=0)


def test_transform_geometry_keeps_z() -> None:
    pt = Point(113.75, 23.02, 12.5)
    out = transform_geometry(pt, "gcj02")
    assert out.has_z
    assert out.z == 12.5
    assert (out.x, out.y) == gcj02_to_wgs84(113.75, 23.02)


@given(
    crs_names,
    dg_lon,
    dg_lat,
    st.floats(1e-5, 0.02),
    st.integers(1, 4),
    st.integers(1, 4),
)
@fast
def test_transform_geometry_preserves_shared_vertices(
    crs: str, lon0: float, lat0: float, cell: float, nx: int, ny: int
) -> None:
    # A block of adjacent grid cells, each converted separately, must still share its edges.
    cells = [
        shapely.box(lon0 + i * cell, lat0 + j * cell, lon0 + (i + 1) * cell, lat0 + (j + 1) * cell)
        for i in range(nx)
        for j in range(ny)
    ]
    out = [transform_geometry(c, crs) for c in cells]
    mapping: dict[tuple[float, float], tuple[float, float]] = {}
    for src, dst in zip(cells, out, strict=True):
        src_xy = shapely.get_coordinates(src)
        dst_xy = shapely.get_coordinates(dst)
        assert len(src_xy) == len(dst_xy)
        assert dst.is_valid
        for s, d in zip(map(tuple, src_xy), map(tuple, dst_xy), strict=True):
            assert mapping.setdefault(s, d) == d
    # The union of converted cells has no slivers: total area equals the converted block's area.
    block = transform_geometry(
        shapely.box(lon0, lat0, lon0 + nx * cell, lat0 + ny * cell).segmentize(cell), crs
    )
    union = shapely.union_all(out)
    assert union.geom_type == "Polygon"
    # GCJ-02 is not area-preserving: ~1e-6 relative change over a block of cells
    assert union.area == pytest.approx(block.area, rel=1e-5)
