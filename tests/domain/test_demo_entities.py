"""Tests for the seeded synthetic market entities in ``backend.domain.demo_entities``."""

from __future__ import annotations

import itertools
import re
import tracemalloc
from collections import Counter
from datetime import date
from typing import Any

import numpy as np
import pytest

from backend.domain.demo_entities import (
    CHUNK,
    CREDIT_SHARES,
    INDUSTRY_NAMES,
    KIND_SHARES,
    MAX_ENTITIES,
    STATUS_SHARES,
    generate_entities,
)
from backend.domain.uscc import entity_kind, validate
from geo.demo_city import TOWNS

TOWN_LIST = [(code, name) for code, name, _, _ in TOWNS]
TOWN_NAME = dict(TOWN_LIST)
_CENTRES = np.array([(lon, lat) for _, _, lon, lat in TOWNS])
_PHONE = re.compile(r"^1[35789]\d{9}$")
_FULL_WIDTH = re.compile("[０-９]")
_CHINESE_NUMBER = re.compile("[一二三四五六七八九十百]号")
_KEYS = {
    "uscc",
    "name",
    "kind",
    "status",
    "legal_representative",
    "phone",
    "registered_address",
    "business_address",
    "industry_code",
    "business_scope",
    "established",
    "town_code",
    "lon",
    "lat",
    "credit_class",
}


def points(k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stand-in for the demo grid: a town at random, a point scattered around its centre."""
    town = rng.integers(0, len(TOWN_LIST), k)
    return (
        _CENTRES[town, 0] + rng.normal(0, 0.01, k),
        _CENTRES[town, 1] + rng.normal(0, 0.01, k),
        town,
    )


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return list(generate_entities(50_000, points, TOWN_LIST))


def test_deterministic_and_prefix_stable(rows: list[dict[str, Any]]) -> None:
    first = list(generate_entities(1_000, points, TOWN_LIST))
    assert first == list(generate_entities(1_000, points, TOWN_LIST))
    assert first == rows[:1_000]  # a shorter run is a prefix of a longer one
    other = list(generate_entities(1_000, points, TOWN_LIST, seed=1))
    assert sum(a == b for a, b in zip(first, other, strict=True)) == 0


def test_usccs_valid_unique_and_consistent(rows: list[dict[str, Any]]) -> None:
    codes = [r["uscc"] for r in rows]
    assert len(set(codes)) == len(codes)
    for r in rows:
        code = r["uscc"]
        assert validate(code) == code
        assert code[:1] == "9" and code[2:8] == "441900"
        assert entity_kind(code) == r["kind"]


def test_row_shape(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        assert set(r) == _KEYS
        town = TOWN_NAME[r["town_code"]]
        assert r["registered_address"].startswith(f"广东省东莞市{town}")
        assert r["name"].startswith("东莞市")
        if r["kind"] == "个体工商户":
            assert r["name"].startswith(f"东莞市{town}")
        elif r["kind"] == "企业":
            assert r["name"].endswith("有限公司")
        else:
            assert r["name"].endswith("农民专业合作社")
        assert 2 <= len(r["legal_representative"]) <= 4
        assert _PHONE.match(r["phone"])
        assert r["industry_code"] in INDUSTRY_NAMES
        assert r["business_scope"]
        assert r["status"] in STATUS_SHARES
        assert r["credit_class"] in CREDIT_SHARES
        assert date(1990, 1, 1) <= r["established"] <= date(2025, 12, 31)
        assert (r["lon"] is None) == (r["lat"] is None)
        if r["lon"] is not None:
            assert isinstance(r["lon"], float) and isinstance(r["lat"], float)
        if r["business_address"] is not None:
            assert r["business_address"] != r["registered_address"]
            assert r["business_address"].startswith(f"广东省东莞市{town}")


def test_industry_mix_by_kind(rows: list[dict[str, Any]]) -> None:
    by_kind: dict[str, Counter[str]] = {k: Counter() for k in KIND_SHARES}
    for r in rows:
        by_kind[r["kind"]][r["industry_code"][:2]] += 1
    assert by_kind["企业"]["39"] > 0 and by_kind["企业"]["35"] > 0  # electronics, moulds
    assert set(by_kind["农民专业合作社"]) <= {"01", "03", "04"}
    food = sum(by_kind["个体工商户"][p] for p in ("52", "62"))
    assert food > 0.6 * sum(by_kind["个体工商户"].values())
    assert not any(p.startswith("3") for p in by_kind["个体工商户"])


def _share(rows: list[dict[str, Any]], test: Any) -> float:
    return sum(1 for r in rows if test(r)) / len(rows)


def test_shares(rows: list[dict[str, Any]]) -> None:
    for key, shares in (
        ("kind", KIND_SHARES),
        ("status", STATUS_SHARES),
        ("credit_class", CREDIT_SHARES),
    ):
        counts = Counter(r[key] for r in rows)
        for value, share in shares.items():
            assert counts[value] / len(rows) == pytest.approx(share, abs=0.01), (key, value)
    assert _share(rows, lambda r: r["lon"] is None) == pytest.approx(0.03, abs=0.005)
    assert _share(rows, lambda r: r["business_address"]) == pytest.approx(0.05, abs=0.006)
    fw = _share(rows, lambda r: _FULL_WIDTH.search(r["registered_address"]))
    cn = _share(rows, lambda r: _CHINESE_NUMBER.search(r["registered_address"]))
    assert fw == pytest.approx(0.05, abs=0.01)
    assert cn == pytest.approx(0.05, abs=0.01)
    vague = _share(rows, lambda r: "号" not in r["registered_address"])
    assert vague == pytest.approx(0.012, abs=0.004)  # no road and number: not geocodable
    assert all(r["lon"] is None for r in rows if "号" not in r["registered_address"])
    recent = _share(rows, lambda r: r["established"].year >= 2014)
    assert 0.6 < recent < 0.9


def test_points_called_with_full_chunks() -> None:
    calls: list[int] = []

    def recording(k: int, rng: np.random.Generator) -> tuple[Any, Any, Any]:
        calls.append(k)
        return points(k, rng)

    assert len(list(generate_entities(CHUNK + 5, recording, TOWN_LIST))) == CHUNK + 5
    assert calls == [CHUNK, CHUNK]
    assert list(generate_entities(0, recording, TOWN_LIST)) == []


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n must be"):
        next(generate_entities(-1, points, TOWN_LIST))
    with pytest.raises(ValueError, match="n must be"):
        next(generate_entities(MAX_ENTITIES + 1, points, TOWN_LIST))
    with pytest.raises(ValueError, match="towns"):
        next(generate_entities(1, points, []))
    with pytest.raises(ValueError, match="length"):
        next(
            generate_entities(1, lambda k, rng: (np.zeros(1), np.zeros(1), np.zeros(1)), TOWN_LIST)
        )
    with pytest.raises(ValueError, match="town index"):
        next(generate_entities(1, points, TOWN_LIST[:2]))


def test_streaming_memory_is_bounded() -> None:
    """Lazy: the first rows of the largest run come at once; consuming 60,000 rows peaks at
    about what 20,000 do (one chunk of columns), far below what a list of rows would take."""
    assert len(list(itertools.islice(generate_entities(MAX_ENTITIES, points, TOWN_LIST), 3))) == 3

    peaks = []
    for n in (20_000, 60_000):
        tracemalloc.start()
        try:
            for _ in generate_entities(n, points, TOWN_LIST):
                pass
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    print(f"\npeak traced memory: 20,000 rows {peaks[0] / 1e6:.1f} MB, "
          f"60,000 rows {peaks[1] / 1e6:.1f} MB")  # fmt: skip
    assert peaks[1] < 1.5 * peaks[0]
    assert peaks[1] < 64e6
