"""Normalisation of Dongguan addresses for matching registered business addresses (住所/经营场所)
against the police door-plate library (标准地址).

Both sides of a match are passed through :func:`normalize_address`; equal outputs mean "same
address as far as the text can tell".  :func:`address_components` splits a normalised address
into administrative and door-plate parts, :func:`address_key` drops the administrative prefix
(town, community) that registrations often omit, and :func:`similarity` ranks near misses.

Everything here is pure, deterministic, stdlib-only code (``re`` and ``unicodedata``).
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

__all__ = [
    "COMPONENT_NAMES",
    "ParsedAddress",
    "address_components",
    "address_key",
    "normalize_address",
    "parse_address",
    "similarity",
]

COMPONENT_NAMES: tuple[str, ...] = (
    "town",
    "community",
    "road",
    "house_number",
    "building",
    "floor",
    "room",
)

# --------------------------------------------------------------------------------------------
# Character level
# --------------------------------------------------------------------------------------------

# Han ideographs (CJK unified, extension A, compatibility block, supplementary planes 2-3)
# plus 〇 (U+3007, the ideographic zero used in numerals such as 二〇一).
_HAN = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff"
# Everything that is not an ASCII upper-case letter, digit, '-', '#' or a Han character.
_DROP_RE = re.compile(rf"[^0-9A-Z#\-{_HAN}]")
# Dash look-alikes (NFKC already folds － and ﹣); '~' marks number ranges (12~14号).
_DASH_TABLE = str.maketrans(dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2043\u2212~", "-"))

_CN_DIGITS = {
    "〇": 0,
    "零": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000}
_NUM = "".join(_CN_DIGITS) + "".join(_CN_UNITS)  # every Chinese numeral character

# '#' after a number is a house/building mark: 3#楼 → 3号楼 (→ 3栋), 12# → 12号.
_HASH_RE = re.compile(rf"(?<=[0-9A-Z{_NUM}])#")
# A '-' survives only between two numerals (ASCII or Chinese, the latter converted later).
_DASH_RE = re.compile(rf"(?<![0-9{_NUM}])-|-(?![0-9{_NUM}])")

# --------------------------------------------------------------------------------------------
# Numerals
# --------------------------------------------------------------------------------------------

# 第 before a numbered house/building/floor/room (any spelling): 第三栋 → 三栋, 第3F → 3F.
_DI_RE = re.compile(
    rf"第+(?=[0-9{_NUM}]+(?:[之\-][0-9{_NUM}]+)*(?:号|栋|座|幢|楼|层|室|房|单元|F))"
)
# A run of Chinese numerals is numeric when followed by a unit/road word, by 之 or '-' plus
# another numeral (十二之三, 十二-3) ...
_NUM_SUFFIX_RE = re.compile(
    rf"[{_NUM}]+(?=号|栋|座|幢|楼|层|室|房|巷|弄|街|路|单元|[之\-][0-9{_NUM}])"
)
# ... or when it follows an Arabic number and 之 / 号之 / '-' (12之三, 1号之三, 12-三).
_NUM_PREFIX_RE = re.compile(rf"(?:(?<=[0-9]之)|(?<=[0-9]号之)|(?<=[0-9]-))[{_NUM}]+")


def _cn_number(text: str) -> str | None:
    """Arabic form of a Chinese numeral, or None when *text* is not a well-formed numeral.

    Without 十/百/千 the characters are read digit by digit (二〇一 → 201, 一二 → 12).
    Otherwise positionally: 十二 → 12, 二十三 → 23, 一百零五 → 105, 一千零二十 → 1020, and the
    colloquial abbreviation of a trailing unit, 一百五 → 150, 两千三 → 2300.  Units must
    decrease and each needs a digit before it (except a leading 十); 百/千 may not lead.
    """
    if not any(ch in _CN_UNITS for ch in text):
        return "".join(str(_CN_DIGITS[ch]) for ch in text)
    total = 0
    pending: int | None = None  # a digit waiting for its unit
    prev_unit = 10_000
    after_zero = False  # a 零 was seen since the last unit
    for index, ch in enumerate(text):
        if ch in _CN_UNITS:
            unit = _CN_UNITS[ch]
            if unit >= prev_unit:
                return None
            if pending is None:
                if index != 0 or unit != 10:
                    return None
                pending = 1
            total += pending * unit
            pending, prev_unit, after_zero = None, unit, False
        else:
            digit = _CN_DIGITS[ch]
            if pending is not None:
                return None
            if digit == 0:
                if index == 0 or after_zero:
                    return None
                after_zero = True
            else:
                pending = digit
    if pending is None:
        return None if after_zero else str(total)
    if not after_zero and prev_unit >= 100:
        return str(total + pending * prev_unit // 10)
    return str(total + pending)


def _convert_numeral(match: re.Match[str]) -> str:
    return _cn_number(match.group()) or match.group()


# --------------------------------------------------------------------------------------------
# House numbers, units, prefixes and trailing descriptors
# --------------------------------------------------------------------------------------------

_ZHI_RE = re.compile(r"(?<=[0-9])之(?=[0-9])")
# 1号之3 → 1-3号, unless the second number is itself a building/floor/room (1号之3栋).
_HAO_ZHI_RE = re.compile(
    r"([0-9]+)号之([0-9]+(?:-[0-9]+)*)(?:号(?![楼房室])|(?![0-9A-Z\-号栋楼层室座幢房]|单元))"
)
_UNIT_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?<=[0-9A-Z])号楼"), "栋"),
    (re.compile(r"(?<=[0-9A-Z])[幢座]"), "栋"),
    (re.compile(r"(?<=[0-9A-Z])层"), "楼"),
    (re.compile(r"(?<=[0-9])F(?![0-9A-Z])"), "楼"),
    (re.compile(r"(?<=[0-9A-Z])号?(?:房间?|室)"), "室"),
)
_DESCRIPTOR_RE = re.compile(r"(?<![0-9A-Z])(?:商铺|铺位|铺面|门面|档口)+$")
# 东莞 without 市 stays when it is part of a name: 东莞大道, 东莞港, 东莞生态园, 东莞(东)站 ...
_PREFIX_RE = re.compile(
    r"^(?:中国|广东省|广东|东莞市|东莞(?!大道|港|生态园|火车站|东站|南站|西站|北站|站))+"
)


def normalize_address(text: str) -> str:
    """Canonical form of an address for exact matching; deterministic and idempotent.

    Rules, applied in this order:

    1. Characters: Unicode NFKC (full-width letters, digits and punctuation become ASCII,
       ① → 1; Han characters are unaffected except compatibility ideographs folding to their
       unified twins), then upper case.  Dash look-alikes (‐ – — − ~ …) become '-'.  Then every
       character except A-Z, 0-9, '-', '#' and Han ideographs (incl. 〇) is removed: all
       whitespace, punctuation and brackets (，。、·,.()（）【】[]“”"' …), other scripts.
       '#' right after a number becomes 号 (3#楼 → 3号楼, 12# → 12号), any other '#' is dropped.
       Runs of '-' collapse to one, and a '-' is kept only between two numerals.
    2. Numerals: 首层 → 1层.  第 is dropped before a number (Chinese or Arabic, also the
       12之3 / 12-3 forms) followed by a house/building/floor/room word: 第三栋 → 3栋,
       第二十三层 → 23楼; 第一工业区 is kept.  A run of Chinese numerals
       (〇零一二两三四五六七八九十百千) becomes Arabic only in a numeric context: followed by
       号 栋 座 幢 楼 层 室 房 巷 弄 街 路 单元, or by 之/'-' plus a numeral, or preceded by an
       Arabic number plus 之, 号之 or '-'.  Examples: 十二号 → 12号, 一百零五号 → 105号,
       两栋 → 2栋, 二〇一室 → 201室, 一百五号 → 150号, 横一路 → 横1路.  Ill-formed runs
       (百三号, 十十号) and runs elsewhere (万江, 大千, 五一广场) are kept.
    3. Sub-numbers: 之 between numbers → '-' (12之3号 → 12-3号); 1号之3 → 1-3号 unless the 3
       is followed by a building/floor/room word (1号之3栋 is left alone).
    4. Units, each only right after a letter or digit: 号楼, 幢, 座 → 栋 (5号楼 → 5栋, A座 →
       A栋); 层 → 楼 (3层 → 3楼); <digits>F → 楼 (3F → 3楼); 房, 房间, 号房, 号室 → 室
       (301房 → 301室).
    5. Trailing descriptors without an identifying number before them are dropped:
       商铺, 铺位, 铺面, 门面, 档口 (12号首层商铺 → 12号1楼; 101商铺 is kept).
    6. Leading 中国, 广东省, 广东, 东莞市, 东莞 in any combination are removed, except 东莞 that
       starts a name (东莞大道, 东莞港, 东莞生态园, 东莞…站).

    The result contains only A-Z, 0-9, '-' and Han characters.
    """
    s = unicodedata.normalize("NFKC", text).upper().translate(_DASH_TABLE)
    s = _DROP_RE.sub("", s)
    s = _HASH_RE.sub("号", s).replace("#", "")
    s = _DASH_RE.sub("", re.sub(r"-{2,}", "-", s))

    s = s.replace("首层", "1层")
    while (t := _DI_RE.sub("", s)) != s:  # dropping one 第 can expose another (第1第2号)
        s = t
    s = _NUM_SUFFIX_RE.sub(_convert_numeral, s)
    s = _NUM_PREFIX_RE.sub(_convert_numeral, s)

    s = _ZHI_RE.sub("-", s)
    s = _HAO_ZHI_RE.sub(r"\1-\2号", s)

    for pattern, replacement in _UNIT_RULES:
        s = pattern.sub(replacement, s)

    s = _DESCRIPTOR_RE.sub("", s)
    return _PREFIX_RE.sub("", s)


# --------------------------------------------------------------------------------------------
# Components
# --------------------------------------------------------------------------------------------

_STREET_OFFICES = ("莞城", "南城", "东城", "万江")  # the four 街道 of Dongguan
_TOWNS = (
    "石碣", "石龙", "茶山", "石排", "企石", "横沥", "桥头", "谢岗", "东坑", "常平", "寮步",
    "樟木头", "大朗", "黄江", "清溪", "塘厦", "凤岗", "大岭山", "长安", "虎门", "厚街", "沙田",
    "道滘", "洪梅", "麻涌", "望牛墩", "中堂", "高埗",
)  # fmt: skip
_KNOWN_TOWN_NAMES = sorted((*_STREET_OFFICES, *_TOWNS, "松山湖", "滨海湾"), key=len, reverse=True)
# A bare town name immediately followed by a road word is the start of a road (东城中路).
_NOT_ROAD_AHEAD = r"(?![东南西北中0-9]{0,2}(?:大道|大街|路|街|巷|广场|大桥))"
_TOWN_SUFFIXES = "街道办事处|街道办|街道|街办|镇|新区|高新技术产业开发区|高新区|园区"
_KNOWN_TOWN_RE = re.compile(
    rf"(?P<name>{'|'.join(_KNOWN_TOWN_NAMES)})(?:(?:{_TOWN_SUFFIXES})|{_NOT_ROAD_AHEAD})"
)
_GENERIC_TOWN_RE = re.compile(r"[^0-9\-路街巷]{2,5}?(?:镇|街道)(?![路街巷道])")
_COMMUNITY_RE = re.compile(
    r"(?:[^0-9\-路]{1,8}?社区(?:居民委员会|居委会)?|[^0-9\-路]{1,8}?村(?:村?民委员会|村?委会)?)"
    r"(?!路|街|巷|道|大道|大街)"
)
_ROAD_RE = re.compile(
    r"[^0-9\-号栋楼室]{1,12}?[0-9]*(?:大道|大街|路|街(?!道)|巷|弄)(?:[0-9]+[巷弄])?"
)
_NUMBERED = r"(?<![0-9A-Z\-]){}[0-9A-Z]+(?:-[0-9]+)*{}"
_HOUSE_RE = re.compile(r"(?<![0-9A-Z\-])[0-9]+(?:-[0-9]+)*号")
_BUILDING_RE = re.compile(_NUMBERED.format("", "栋"))
_FLOOR_RE = re.compile(_NUMBERED.format("负?", "楼"))
_ROOM_RE = re.compile(_NUMBERED.format("", "室"))


def _town(s: str) -> tuple[str | None, int]:
    """(canonical town, end offset) of a town at the start of normalised *s*."""
    m = _KNOWN_TOWN_RE.match(s)
    if m:
        name = m["name"]
        if name == "松山湖":
            canonical = "松山湖"
        elif name == "滨海湾":
            canonical = "滨海湾新区"
        else:
            canonical = name + ("街道" if name in _STREET_OFFICES else "镇")
        return canonical, m.end()
    m = _GENERIC_TOWN_RE.match(s)
    return (m.group(), m.end()) if m else (None, 0)


def _parse(s: str) -> tuple[dict[str, str | None], int]:
    """Components of normalised *s* and the offset where the non-administrative part starts."""
    town, pos = _town(s)
    m = _COMMUNITY_RE.match(s, pos)
    community = m.group() if m else None
    admin_end = m.end() if m else pos
    m = _ROAD_RE.search(s, admin_end)
    road = m.group() if m else None
    rest = m.end() if m else admin_end

    def first(pattern: re.Pattern[str]) -> str | None:
        found = pattern.search(s, rest)
        return found.group() if found else None

    parts = {
        "town": town,
        "community": community,
        "road": road,
        "house_number": first(_HOUSE_RE),
        "building": first(_BUILDING_RE),
        "floor": first(_FLOOR_RE),
        "room": first(_ROOM_RE),
    }
    return parts, admin_end


def address_components(text: str) -> dict[str, str | None]:
    """Best-effort split of ``normalize_address(text)``; absent parts are None.

    Keys (see :data:`COMPONENT_NAMES`), matched by regular expressions in this order:

    - ``town``: at the start.  A Dongguan town or 街道 name, with or without 镇/街道/街办
      (then returned canonically: 虎门 → 虎门镇, 东城街办 → 东城街道; 松山湖, 滨海湾新区),
      unless the bare name starts a road (东城中路, 虎门大道); otherwise any 2-5 characters
      ending in 镇 or 街道.
    - ``community``: right after the town (or at the start): up to 8 characters ending in
      社区 (preferred, so 林村社区 is one community) or else in 村, plus an optional
      居委会/村委会 …, and not followed by a road word (新村路 is a road).
    - ``road``: the first run of at most 12 characters ending in 路/街/大道/大街/巷/弄, with
      a road number (东城1路) and a numbered lane (兴发南路3巷) included.
    - after the road: ``house_number`` 12号 / 12-3号, ``building`` 5栋 / A栋,
      ``floor`` 3楼 / 负1楼, ``room`` 2301室 — the first of each.
    """
    return _parse(normalize_address(text))[0]


def address_key(text: str) -> str:
    """``normalize_address(text)`` without the leading town and community.

    This is what to match on when one side omits the town: 虎门镇连升路12号 and 连升路12号
    share the key 连升路12号.  An address that is nothing but town/community keeps its full
    normalised form, so the key is never empty for a non-empty address.
    """
    s = normalize_address(text)
    return s[_parse(s)[1] :] or s


class ParsedAddress(NamedTuple):
    """Everything matching needs from one address, normalised once."""

    normalized: str
    key: str
    components: dict[str, str | None]


def parse_address(text: str) -> ParsedAddress:
    """``normalize_address``, ``address_key`` and ``address_components`` in one pass."""
    s = normalize_address(text)
    parts, admin_end = _parse(s)
    return ParsedAddress(s, s[admin_end:] or s, parts)


def _bigrams(s: str) -> set[str]:
    if len(s) < 2:
        return {s} if s else set()
    return {s[i : i + 2] for i in range(len(s) - 1)}


def similarity(a: str, b: str) -> float:
    """Jaccard index of the character bigrams of the normalised addresses, in [0, 1].

    Symmetric; 1.0 when the normalised forms are equal (also both empty), 0.0 when they share
    no bigram.  A one-character form counts as its own single gram.
    """
    na, nb = normalize_address(a), normalize_address(b)
    if na == nb:
        return 1.0
    ga, gb = _bigrams(na), _bigrams(nb)
    return len(ga & gb) / len(ga | gb)
