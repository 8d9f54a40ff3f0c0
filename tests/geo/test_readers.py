"""geo.readers: any input reads or raises ReadError; bad features are reported, not raised."""

from __future__ import annotations

import contextlib
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import Polygon

from geo.readers import ReadError, read_features

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)
geometry_like = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["Polygon", "MultiPolygon", "Point", "LineString", "Nope"]),
        "coordinates": json_values,
    }
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    features=st.lists(
        st.fixed_dictionaries(
            {
                "type": st.just("Feature"),
                "properties": json_values,
                "geometry": geometry_like | json_values,
            }
        ),
        max_size=5,
    )
)
def test_arbitrary_features_never_raise(features):
    doc = json.dumps({"type": "FeatureCollection", "features": features}).encode()
    result = read_features(doc, "x.geojson")
    assert len(result.features) == len(features)
    for i, feature in enumerate(result.features):
        assert feature.index == i
        assert (feature.error is None) == (feature.geometry is not None)


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_read_or_raise_read_error(data):
    with contextlib.suppress(ReadError):
        read_features(data, "upload.bin")


def test_reads_a_feature_collection_and_keeps_properties():
    ring = [[113.7, 23.0], [113.8, 23.0], [113.8, 23.1], [113.7, 23.0]]
    doc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"code": "441900003", "名称": "东城"},
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            },
            {"type": "Feature", "properties": None, "geometry": None},
        ],
    }
    result = read_features(json.dumps(doc, ensure_ascii=False).encode("utf-8-sig"), "a.json")
    first, second = result.features
    assert first.properties == {"code": "441900003", "名称": "东城"}
    assert isinstance(first.geometry, Polygon) and first.error is None
    assert second.geometry is None and "no geometry" in second.error


def test_non_collections_are_read_errors():
    for data in (
        b"[]",
        b'{"type": "Point", "coordinates": [1, 2]}',
        b'{"type": "Feature"',
        b'{"type": "FeatureCollection", "features": 3}',
    ):
        try:
            read_features(data, "a.geojson")
        except ReadError:
            continue
        raise AssertionError(f"{data!r} was accepted")
