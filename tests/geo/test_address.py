"""geo.address: normalisation, components, match keys and similarity of Dongguan addresses."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geo.address import (
    COMPONENT_NAMES,
    address_components,
    address_key,
    normalize_address,
    similarity,
)

# Characters and words that drive the rules, so generated text actually exercises them.
RULE_TOKENS = [
    *"0123456789０３ＡAaFｆ#-－—~ ，。、·（）【】“”",
    *"〇零一二两三四五六七八九十百千",
    *"之号栋座幢楼层室房间第首单元巷弄街路镇村",
    *["号楼", "首层", "商铺", "铺位", "档口", "社区", "街道", "大道", "东莞", "东莞市", "广东省"],
    *["中国", "港", "虎门", "东城", "连升", "鸿福", "乌沙"],
]
address_like = st.lists(st.sampled_from(RULE_TOKENS), max_size=24).map("".join)
HAN = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff"
OUTPUT_RE = re.compile(rf"[0-9A-Z\-{HAN}]*")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("广东省东莞市虎门镇连升路十二号", "虎门镇连升路12号"),
        (
            "东莞市南城街道鸿福路１０６号南峰中心第二十三层２３０１室",
            "南城街道鸿福路106号南峰中心23楼2301室",
        ),
        ("东莞市长安镇乌沙社区兴发南路之三号５号楼三层", "长安镇乌沙社区兴发南路之3号5栋3楼"),
        ("莞城街道 罗沙路1号之3", "莞城街道罗沙路1-3号"),
        ("东城街道主山社区Ａ座3楼", "东城街道主山社区A栋3楼"),
        ("广东东莞 东城中路12号", "东城中路12号"),
        ("东莞市东莞大道11号", "东莞大道11号"),
        ("广东省东莞市塘厦镇林村社区田心路一百零五号", "塘厦镇林村社区田心路105号"),
        ("东莞市厚街镇白濠村新村路3号之二", "厚街镇白濠村新村路3-2号"),
        ("东莞市大朗镇水口村富民中路12之3号B2栋5F", "大朗镇水口村富民中路12-3号B2栋5楼"),
        ("万江街道金泰社区金龙二路三巷5号", "万江街道金泰社区金龙2路3巷5号"),
        ("东莞市虎门镇太沙路168号首层商铺", "虎门镇太沙路168号1楼"),
        ("东莞市石龙镇（裕兴路）1—5号", "石龙镇裕兴路1-5号"),
        ("中国广东省东莞市茶山镇南社村 3#楼 二〇一室", "茶山镇南社村3栋201室"),
        ("东莞市常平镇常平大道88号3幢501房", "常平镇常平大道88号3栋501室"),
        ("东莞市寮步镇香市路ｂ座2层", "寮步镇香市路B栋2楼"),
        ("\u3000东莞市　凤岗镇，雁田村「镇田路」18号之1。", "凤岗镇雁田村镇田路18-1号"),
    ],
)
def test_realistic_addresses(raw: str, expected: str) -> None:
    assert normalize_address(raw) == expected
    assert normalize_address(expected) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("十二号", "12号"),
        ("十号", "10号"),
        ("一百零五号", "105号"),
        ("一千零二十号", "1020号"),
        ("一百五号", "150号"),
        ("二十三栋", "23栋"),
        ("三楼", "3楼"),
        ("两栋", "2栋"),
        ("二〇一室", "201室"),
        ("第三栋", "3栋"),
        ("十二之三号", "12-3号"),
        ("1号之三", "1-3号"),
        ("横一路", "横1路"),
        ("东一巷", "东1巷"),
    ],
)
def test_chinese_numerals_in_numeric_context(raw: str, expected: str) -> None:
    assert normalize_address(raw) == expected


@pytest.mark.parametrize(
    "text", ["万江街道", "大千路", "五一广场", "十字街", "一二三", "百三号", "十十号", "第一工业区"]
)
def test_numerals_elsewhere_or_ill_formed_are_kept(text: str) -> None:
    assert normalize_address(text) == text


PREFIXES = ["", "广东省", "广东", "东莞市", "东莞", "广东省东莞市", "广东东莞", "中国广东省东莞市"]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_province_and_city_prefixes_are_stripped(prefix: str) -> None:
    assert normalize_address(prefix + "虎门镇连升路12号") == "虎门镇连升路12号"


@pytest.mark.parametrize("name", ["东莞大道1号", "东莞港", "东莞生态园", "东莞东站"])
def test_dongguan_kept_when_it_starts_a_name(name: str) -> None:
    assert normalize_address(name) == name
    assert normalize_address("东莞市" + name) == name


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("5号楼", "5栋"),
        ("3幢", "3栋"),
        ("A座", "A栋"),
        ("Ａ座", "A栋"),
        ("第3栋", "3栋"),
        ("3层", "3楼"),
        ("3F", "3楼"),
        ("3/F", "3楼"),
        ("301房", "301室"),
        ("301房间", "301室"),
        ("12号房", "12室"),
        ("3#楼", "3栋"),
        ("星座广场", "星座广场"),  # 座/房/层 after a non-number are words, not units
        ("厨房", "厨房"),
    ],
)
def test_unit_words_are_unified(raw: str, expected: str) -> None:
    assert normalize_address(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("12 - 3号", "12-3号"),
        ("12之3号", "12-3号"),
        ("12－3号", "12-3号"),
        ("12~14号", "12-14号"),
        ("12--3号", "12-3号"),
        ("-12号-", "12号"),
        ("A-3栋", "A3栋"),
        ("1号之3栋", "1号之3栋"),  # building 3 of No. 1, not house number 1-3
    ],
)
def test_dash_and_zhi_house_numbers(raw: str, expected: str) -> None:
    assert normalize_address(raw) == expected


def test_trailing_descriptors_only_without_number() -> None:
    assert normalize_address("太沙路168号商铺") == "太沙路168号"
    assert normalize_address("太沙路168号铺位档口") == "太沙路168号"
    assert normalize_address("太沙路168号101商铺") == "太沙路168号101商铺"


def test_full_width_and_case() -> None:
    assert normalize_address("ＡＢｃ１２３．（）") == "ABC123"


def test_components_full_address() -> None:
    raw = "东莞市长安镇乌沙社区兴发南路之三号５号楼三层"
    assert address_components(raw) == {
        "town": "长安镇",
        "community": "乌沙社区",
        "road": "兴发南路",
        "house_number": "3号",
        "building": "5栋",
        "floor": "3楼",
        "room": None,
    }


def test_components_floor_room_and_missing_parts() -> None:
    parts = address_components("东莞市南城街道鸿福路１０６号南峰中心第二十三层２３０１室")
    assert parts["town"] == "南城街道"
    assert parts["community"] is None
    assert (parts["road"], parts["house_number"]) == ("鸿福路", "106号")
    assert (parts["building"], parts["floor"], parts["room"]) == (None, "23楼", "2301室")


@pytest.mark.parametrize(
    ("raw", "town", "community", "road"),
    [
        ("虎门连升路12号", "虎门镇", None, "连升路"),
        ("东城街办主山社区居委会东纵大道1号", "东城街道", "主山社区居委会", "东纵大道"),
        ("东城中路12号", None, None, "东城中路"),
        ("虎门大道8号", None, None, "虎门大道"),
        ("塘厦镇林村社区田心路105号", "塘厦镇", "林村社区", "田心路"),
        ("厚街镇白濠村新村路3号", "厚街镇", "白濠村", "新村路"),
        ("松山湖高新技术产业开发区工业北路6号", "松山湖", None, "工业北路"),
        ("万江街道金泰社区金龙二路三巷5号", "万江街道", "金泰社区", "金龙2路3巷"),
        ("花都区新华街道迎宾大道1号", "花都区新华街道", None, "迎宾大道"),
        ("新华镇迎宾大道1号", "新华镇", None, "迎宾大道"),
    ],
)
def test_components_administrative_parts(
    raw: str, town: str | None, community: str | None, road: str | None
) -> None:
    parts = address_components(raw)
    assert (parts["town"], parts["community"], parts["road"]) == (town, community, road)


def test_components_of_empty_and_noise() -> None:
    for text in ["", "   ", "（）。"]:
        parts = address_components(text)
        assert tuple(parts) == COMPONENT_NAMES
        assert all(value is None for value in parts.values())


def test_address_key_ignores_town_and_community() -> None:
    keys = {
        address_key("广东省东莞市长安镇乌沙社区兴发南路3号5号楼"),
        address_key("长安镇兴发南路三号５幢"),
        address_key("乌沙社区兴发南路3号5座"),
        address_key("兴发南路３号第五栋"),
    }
    assert keys == {"兴发南路3号5栋"}


def test_address_key_of_bare_town_is_the_town() -> None:
    assert address_key("东莞市虎门镇") == "虎门镇"
    assert address_key("") == ""


def test_similarity_examples() -> None:
    assert similarity("东莞市虎门镇连升路十二号", "虎门镇连升路12号") == 1.0
    assert similarity("连升路12号", "鸿福街8栋") == 0.0
    near = similarity("虎门镇连升路12号", "虎门镇连升路14号")
    far = similarity("虎门镇连升路12号", "虎门镇太沙路168号")
    assert 0.0 < far < near < 1.0
    assert similarity("", "") == 1.0
    assert similarity("", "路") == 0.0


@settings(max_examples=200, deadline=None)
@given(st.text(), st.text())
def test_similarity_is_symmetric_and_bounded(a: str, b: str) -> None:
    value = similarity(a, b)
    assert 0.0 <= value <= 1.0
    assert value == similarity(b, a)
    assert similarity(a, a) == 1.0


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_normalize_is_idempotent_on_any_text(text: str) -> None:
    once = normalize_address(text)
    assert normalize_address(once) == once


@settings(max_examples=500, deadline=None)
@given(address_like)
def test_normalize_is_idempotent_on_address_like_text(text: str) -> None:
    once = normalize_address(text)
    assert normalize_address(once) == once
    assert address_components(once) == address_components(text)
    assert address_key(once) == address_key(text)


@settings(max_examples=300, deadline=None)
@given(st.text() | address_like)
def test_never_raises_and_output_is_clean(text: str) -> None:
    out = normalize_address(text)
    assert OUTPUT_RE.fullmatch(out)
    assert not any(ch.isspace() for ch in out)
    assert not out.startswith("-") and not out.endswith("-")
    parts = address_components(text)
    assert tuple(parts) == COMPONENT_NAMES
    assert all(value is None or value in out for key, value in parts.items() if key != "town")
    assert address_key(text) in out


# Han characters with no role in any rule pass through untouched.
RULE_CHARS = set("".join(RULE_TOKENS)) | set("层座幢省市国广莞商铺位面门档口港站生态园火车")
plain_han = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF).filter(
    lambda ch: ch not in RULE_CHARS
)


@settings(max_examples=300, deadline=None)
@given(st.text(plain_han, min_size=1))
def test_plain_chinese_text_is_unchanged(text: str) -> None:
    assert normalize_address(text) == text
