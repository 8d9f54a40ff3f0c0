"""Tests for the seeded synthetic Dongguan built by ``geo.demo_city``."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter, defaultdict

import numpy as np
import pytest
import shapely
from pyproj import Geod, Transformer
from shapely.geometry import MultiPolygon

from geo.demo_city import (
    BBOX,
    CITY_CODE,
    CITY_NAME,
    TOWNS,
    Area,
    DemoCity,
    build_demo_city,
)

_GEOD = Geod(ellps="GRS80")  # the CGCS2000 ellipsoid, to well below a millimetre
_TO_METRIC = Transformer.from_crs(4490, 4547, always_xy=True)
_TOWN_RE = re.compile(r"^441900\d{3}$")
_COMMUNITY_RE = re.compile(r"^441900\d{6}$")
_CELL_RE = re.compile(r"^441900\d{9}$")


def _to_metric(geoms: list[MultiPolygon]) -> np.ndarray:
    """Geometries projected to EPSG:4547 (metres)."""

    def project(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(_TO_METRIC.transform(xy[:, 0], xy[:, 1]))

    return shapely.transform(np.asarray(geoms, dtype=object), project)


def _geodesic_area_m2(geom: MultiPolygon) -> float:
    return abs(_GEOD.geometry_area_perimeter(geom)[0])


def _by_parent(areas: list[Area]) -> dict[str, list[Area]]:
    groups: dict[str, list[Area]] = defaultdict(list)
    for area in areas:
        assert area.parent_code is not None
        groups[area.parent_code].append(area)
    return groups


def _assert_consistent(city: DemoCity) -> None:
    """Structural invariants that must hold for any seed and size."""
    levels = {"town": city.towns, "community": city.communities, "cell": city.cells}

    # Geometry type, validity, CRS range.
    for areas in levels.values():
        geoms = np.asarray([a.geom for a in areas], dtype=object)
        assert all(isinstance(g, MultiPolygon) for g in geoms)
        assert shapely.is_valid(geoms).all()
        assert not shapely.is_empty(geoms).any()
        bounds = shapely.bounds(geoms)
        assert (bounds[:, 0] >= BBOX[0]).all() and (bounds[:, 1] >= BBOX[1]).all()
        assert (bounds[:, 2] <= BBOX[2]).all() and (bounds[:, 3] <= BBOX[3]).all()
    assert isinstance(city.outline, MultiPolygon) and city.outline.is_valid
    assert len(city.outline.geoms) == 1 and not city.outline.geoms[0].interiors

    # Codes: well-formed, unique, sorted, nested, serials 001.. without gaps.
    assert [a.code for a in city.towns] == [code for code, *_ in TOWNS]
    assert all(a.parent_code is None for a in city.towns)
    for areas, pattern in (
        (city.towns, _TOWN_RE),
        (city.communities, _COMMUNITY_RE),
        (city.cells, _CELL_RE),
    ):
        codes = [a.code for a in areas]
        assert all(pattern.match(c) for c in codes)
        assert len(set(codes)) == len(codes)
        assert codes == sorted(codes)
    for parents, children in ((city.towns, city.communities), (city.communities, city.cells)):
        groups = _by_parent(children)
        assert set(groups) == {p.code for p in parents}
        for parent_code, kids in groups.items():
            assert all(k.code.startswith(parent_code) for k in kids)
            serials = [int(k.code[len(parent_code) :]) for k in kids]
            assert serials == list(range(1, len(kids) + 1))
    assert all(len(k) >= 3 for k in _by_parent(city.communities).values())
    assert all(len(k) >= 2 for k in _by_parent(city.cells).values())

    # Exact tiling: no gaps, no overlaps, coverage edges match vertex for vertex.
    cells = np.asarray([a.geom for a in city.cells], dtype=object)
    assert shapely.coverage_is_valid(cells)
    m_cells = _to_metric(list(cells))
    m_outline = _to_metric([city.outline])[0]
    m_union = shapely.union_all(m_cells)
    assert shapely.symmetric_difference(m_union, m_outline).area < 1.0
    assert abs(shapely.area(m_cells).sum() - m_outline.area) < 1.0
    assert shapely.area(m_cells).min() > 0.05e6

    # Hierarchy nests exactly: community = ∪ cells ⊆ town = ∪ communities.
    for parents, children in ((city.communities, city.cells), (city.towns, city.communities)):
        groups = _by_parent(children)
        for parent in parents:
            kids = [k.geom for k in groups[parent.code]]
            assert shapely.covers(parent.geom, kids).all()
            union = shapely.union_all(_to_metric(kids))
            m_parent = _to_metric([parent.geom])[0]
            assert shapely.symmetric_difference(union, m_parent).area < 1.0
            assert abs(sum(shapely.area(_to_metric(kids))) - m_parent.area) < 1.0


@pytest.fixture(scope="module")
def city() -> DemoCity:
    return build_demo_city()


def test_constants() -> None:
    assert CITY_CODE == "441900"
    assert CITY_NAME == "东莞市"
    assert len(TOWNS) == 32
    assert len({code for code, *_ in TOWNS}) == 32
    for _, _, lon, lat in TOWNS:
        assert BBOX[0] < lon < BBOX[2] and BBOX[1] < lat < BBOX[3]


def test_counts(city: DemoCity) -> None:
    assert len(city.towns) == 32
    assert abs(len(city.communities) - 590) <= 15
    assert abs(len(city.cells) - 2900) <= 50


def test_town_names_and_seeds(city: DemoCity) -> None:
    assert [(a.code, a.name) for a in city.towns] == [(code, name) for code, name, *_ in TOWNS]
    for (_, _, lon, lat), town in zip(TOWNS, city.towns, strict=True):
        assert town.geom.contains(shapely.Point(lon, lat))
    by_name = {a.name: a for a in city.towns}
    assert by_name["东城街道"].code == "441900003"
    assert by_name["高埗镇"].code == "441900129"


def test_outline_area_and_shape(city: DemoCity) -> None:
    area_km2 = _geodesic_area_m2(city.outline) / 1e6
    assert 2460 * 0.97 <= area_km2 <= 2460 * 1.03
    minx, miny, maxx, maxy = city.outline.bounds
    assert BBOX[0] <= minx < maxx <= BBOX[2]
    assert BBOX[1] <= miny < maxy <= BBOX[3]
    # "Natural-looking": clearly not convex, and with a reasonably detailed boundary.
    assert city.outline.area < 0.97 * city.outline.convex_hull.area
    assert len(city.outline.geoms[0].exterior.coords) > 500


def test_geodesic_areas_add_up(city: DemoCity) -> None:
    towns_km2 = sum(_geodesic_area_m2(t.geom) for t in city.towns) / 1e6
    assert towns_km2 == pytest.approx(_geodesic_area_m2(city.outline) / 1e6, abs=1e-3)


def test_cell_sizes(city: DemoCity) -> None:
    areas_km2 = shapely.area(_to_metric([a.geom for a in city.cells])) / 1e6
    assert 0.8 <= areas_km2.mean() <= 0.9
    assert all(len(a.geom.geoms) == 1 for a in city.cells)


def test_names(city: DemoCity) -> None:
    towns = {a.code: a for a in city.towns}
    communities = {a.code: a for a in city.communities}
    assert communities["441900003001"].name == "东城第1社区"
    for comm in city.communities:
        short = towns[comm.parent_code].name.removesuffix("街道").removesuffix("镇")
        assert comm.name == f"{short}第{int(comm.code[-3:])}社区"
    for cell in city.cells:
        assert cell.name == f"{communities[cell.parent_code].name}第{int(cell.code[-3:])}网格"
    assert city.cells[0].code == "441900003001001"


def test_invariants(city: DemoCity) -> None:
    _assert_consistent(city)


def test_deterministic(city: DemoCity) -> None:
    again = build_demo_city()
    assert again.outline.wkb == city.outline.wkb
    for mine, theirs in (
        (city.towns, again.towns),
        (city.communities, again.communities),
        (city.cells, again.cells),
    ):
        assert [(a.code, a.name, a.parent_code) for a in mine] == [
            (a.code, a.name, a.parent_code) for a in theirs
        ]
        assert [a.geom.wkb for a in mine] == [a.geom.wkb for a in theirs]


def test_other_seed_and_size(city: DemoCity) -> None:
    small = build_demo_city(seed=7, n_cells=800, n_communities=160)
    assert (len(small.towns), len(small.communities), len(small.cells)) == (32, 160, 800)
    _assert_consistent(small)
    assert small.outline.wkb != city.outline.wkb
    assert _geodesic_area_m2(small.outline) / 1e6 == pytest.approx(2460, rel=0.03)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seed": -1}, "seed"),
        ({"n_communities": 50}, "n_communities"),
        ({"n_cells": 1000}, "n_cells"),
    ],
)
def test_rejects_bad_arguments(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_demo_city(**kwargs)


def test_module_is_pure_spatial_code() -> None:
    code = (
        "import sys, geo.demo_city\n"
        "bad = {m for m in sys.modules if m.split('.')[0] in {'flask', 'backend', 'mobile_api'}}\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_town_sizes_are_plausible(city: DemoCity) -> None:
    cells_per_town = Counter(a.code[:9] for a in city.cells)
    assert min(cells_per_town.values()) >= 10
    assert max(cells_per_town.values()) <= 300
