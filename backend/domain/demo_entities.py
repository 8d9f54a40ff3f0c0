"""Seeded synthetic market entities (市场主体) for the demo city, streamed as dicts.

``generate_entities(n, points, towns, seed)`` yields ``n`` rows.  Everything random is drawn with
numpy in fixed-size chunks (``CHUNK`` rows) and only the final formatting is per-row Python, so
memory stays bounded whatever ``n`` and the rate is a few hundred thousand rows per second.  The
same arguments give the same rows, and a shorter run is a prefix of a longer one.

Locations come from the caller: ``points(k, rng)`` returns ``(lon, lat, town_index)`` arrays of
length ``k`` — the point and the index into ``towns`` of the town that contains it — so that the
registered address names the town the point lies in (only the caller knows the polygons).  It is
called with its own generator, derived from ``seed``, and always with ``k == CHUNK``.

Each row has these keys:

``uscc``                 valid, division 441900, unique within the run (see ``_org_bodies``)
``name``                 个体: 东莞市{镇街}{字号}{行业词}; 企业: 东莞市{字号}{行业}有限公司;
                         合作社: 东莞市{字号}{产品}农民专业合作社 (names are not unique)
``kind``                 '个体工商户' (~60%), '企业' (~38%), '农民专业合作社' (~2%)
``status``               存续 / 在业 / 注销 / 吊销 / 迁出, see ``STATUS_SHARES``
``legal_representative`` 经营者 / 法定代表人, a Chinese personal name
``phone``                11-digit mobile number
``registered_address``   住所: 广东省东莞市{镇街}{路}{n}号[栋/室/铺…]; ~10% write the numbers in
                         full-width digits or Chinese numerals
``business_address``     None, or (~5%) a different address in the same town
``industry_code``        GB/T 4754-2017 小类, a key of ``INDUSTRY_NAMES``
``business_scope``       short 经营范围 text for the industry
``established``          ``datetime.date`` from 1990-01-01 to 2025-12-31, recent years likelier
``town_code``            code of the town in the address
``lon``, ``lat``         from ``points``; both None for ~3% (to be geocoded).  About 40% of those
                         have an address with no road or house number (村委会附近, 旧村…) that
                         cannot be geocoded to a point
``credit_class``         A / B / C / D, see ``CREDIT_SHARES``
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import date
from typing import Any

import numpy as np
from numpy.typing import NDArray

from backend.domain.uscc import ALPHABET, WEIGHTS

__all__ = [
    "CHUNK",
    "CREDIT_SHARES",
    "INDUSTRY_NAMES",
    "KIND_SHARES",
    "MAX_ENTITIES",
    "STATUS_SHARES",
    "PointSource",
    "generate_entities",
]

#: ``points(k, rng) -> (lon, lat, town_index)``, three arrays of length ``k``.
PointSource = Callable[
    [int, np.random.Generator], tuple[NDArray[np.float64], NDArray[np.float64], NDArray[Any]]
]

CHUNK = 8192
#: The organisation-code scheme keeps USCCs unique for up to this many rows per run.
MAX_ENTITIES = 10**8
DIVISION = "441900"

KIND_SHARES = {"个体工商户": 0.60, "企业": 0.38, "农民专业合作社": 0.02}
STATUS_SHARES = {"存续": 0.86, "在业": 0.06, "注销": 0.05, "吊销": 0.02, "迁出": 0.01}
CREDIT_SHARES = {"A": 0.70, "B": 0.20, "C": 0.08, "D": 0.02}
_MISSING_POINT = 0.03  # rows with lon/lat None
_VAGUE_OF_MISSING = 0.4  # of those, share whose address names no road or house number
_BUSINESS_ADDRESS = 0.05
_FULL_WIDTH, _CHINESE_NUMERALS = 0.05, 0.05  # address number styles

#: GB/T 4754-2017 小类 used by the generator: code → name.
INDUSTRY_NAMES: dict[str, str] = {
    "0141": "蔬菜种植",
    "0143": "花卉种植",
    "0154": "香蕉等亚热带水果种植",
    "0321": "鸡的饲养",
    "0412": "内陆养殖",
    "1819": "其他机织服装制造",
    "1952": "皮鞋制造",
    "2110": "木质家具制造",
    "2231": "纸和纸板容器制造",
    "2319": "包装装潢及其他印刷",
    "2452": "塑胶玩具制造",
    "2929": "塑料零件及其他塑料制品制造",
    "3360": "金属表面处理及热处理加工",
    "3525": "模具制造",
    "3831": "电线、电缆制造",
    "3872": "照明灯具制造",
    "3981": "电阻电容电感元件制造",
    "3982": "电子电路制造",
    "3989": "其他电子元件制造",
    "5174": "五金产品批发",
    "5176": "计算机、软件及辅助设备批发",
    "5179": "其他机械设备及电子产品批发",
    "5193": "互联网批发",
    "5212": "超级市场零售",
    "5213": "便利店零售",
    "5219": "其他综合零售",
    "5221": "粮油零售",
    "5223": "果品、蔬菜零售",
    "5224": "肉、禽、蛋、奶及水产品零售",
    "5226": "酒、饮料及茶叶零售",
    "5232": "服装零售",
    "5234": "化妆品及卫生用品零售",
    "5239": "其他日用品零售",
    "5251": "西药零售",
    "5261": "汽车新车零售",
    "5263": "汽车零配件零售",
    "5274": "通信设备零售",
    "5281": "五金零售",
    "5292": "互联网零售",
    "5431": "普通货物道路运输",
    "5821": "货物运输代理",
    "6110": "旅游饭店",
    "6129": "其他一般旅馆",
    "6210": "正餐服务",
    "6220": "快餐服务",
    "6291": "小吃服务",
    "6513": "应用软件开发",
    "8030": "洗染服务",
    "8040": "理发及美容服务",
    "8111": "汽车修理与维护",
}

_SCOPES: dict[str, str] = {
    "0141": "种植、销售：蔬菜。",
    "0143": "种植、销售：花卉、苗木。",
    "0154": "种植、销售：荔枝、龙眼、香蕉。",
    "0321": "养殖、销售：家禽。",
    "0412": "淡水养殖；销售：水产品。",
    "1819": "加工、产销：服装、服饰。",
    "1952": "生产、销售：皮鞋、鞋材。",
    "2110": "生产、销售：木质家具；家具设计。",
    "2231": "生产、销售：纸箱、纸盒、纸制品。",
    "2319": "包装装潢印刷品印刷；其他印刷品印刷。",
    "2452": "生产、销售：塑胶玩具、电子玩具。",
    "2929": "生产、销售：塑胶制品、五金制品。",
    "3360": "金属表面处理（不含电镀）；五金加工。",
    "3525": "设计、生产、销售：模具、五金配件。",
    "3831": "生产、销售：电线、电缆。",
    "3872": "研发、生产、销售：LED照明灯具。",
    "3981": "生产、销售：电阻、电容、电感元件。",
    "3982": "生产、销售：印制电路板。",
    "3989": "研发、生产、销售：电子元器件、连接器。",
    "5174": "批发：五金产品、机械配件。",
    "5176": "批发：计算机、软件及辅助设备。",
    "5179": "销售：机械设备、电子产品；货物进出口、技术进出口。",
    "5193": "互联网批发：日用百货、电子产品。",
    "5212": "超级市场零售：预包装食品、日用百货。",
    "5213": "零售：预包装食品、散装食品、日用百货。",
    "5219": "零售：日用杂品、预包装食品、烟草制品。",
    "5221": "零售：粮油、调味品、预包装食品。",
    "5223": "零售：新鲜水果、蔬菜。",
    "5224": "零售：鲜肉、禽蛋、水产品。",
    "5226": "零售：酒类、饮料、茶叶。",
    "5232": "零售：服装、鞋帽、服饰配件。",
    "5234": "零售：化妆品、卫生用品。",
    "5239": "零售：饰品、礼品、日用品。",
    "5251": "零售：处方药、非处方药、医疗器械（凭许可证经营）。",
    "5261": "汽车新车销售；汽车配件销售。",
    "5263": "销售：汽车零配件、润滑油。",
    "5274": "零售：手机、通信器材及配件。",
    "5281": "零售：五金交电、建材、水暖器材。",
    "5292": "网上零售：服装、日用百货、电子产品。",
    "5431": "普通货物道路运输。",
    "5821": "国际货运代理；国内货运代理；仓储服务（不含危险化学品）。",
    "6110": "酒店管理；住宿服务；餐饮服务。",
    "6129": "住宿服务。",
    "6210": "餐饮服务：中餐制售。",
    "6220": "餐饮服务：快餐制售。",
    "6291": "餐饮服务：小吃、糕点制售。",
    "6513": "应用软件开发；信息技术咨询服务。",
    "8030": "洗衣、干洗、熨烫服务。",
    "8040": "理发服务；美容服务（非医疗）。",
    "8111": "汽车维修与保养；汽车美容。",
}

# Per kind: (industry code, weight, name words).  个体 words end the name (…便利店);
# 企业 words precede 有限公司; 合作社 words precede 农民专业合作社.
_INDIVIDUAL_MIX: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    ("5213", 8, ("便利店", "士多店")),
    ("5219", 10, ("商店", "士多店", "百货店")),
    ("5221", 5, ("粮油店", "米铺")),
    ("5223", 6, ("水果店", "果蔬店")),
    ("5224", 6, ("猪肉档", "鲜肉店", "水产店")),
    ("5226", 4, ("烟酒商行", "茶行")),
    ("5232", 7, ("服装店", "时装店")),
    ("5234", 3, ("化妆品店",)),
    ("5239", 3, ("饰品店", "精品店")),
    ("5251", 1, ("药店",)),
    ("5274", 3, ("手机店", "通讯店")),
    ("5281", 4, ("五金店", "五金建材店")),
    ("5292", 5, ("网店", "电子商务商行")),
    ("6210", 8, ("餐馆", "酒家", "饭店")),
    ("6220", 6, ("快餐店",)),
    ("6291", 6, ("小吃店", "肠粉店", "面馆")),
    ("8040", 7, ("理发店", "美发店", "美容院")),
    ("8030", 2, ("干洗店",)),
    ("8111", 3, ("汽车维修店", "汽车修理厂")),
    ("6129", 2, ("旅馆", "旅店")),
    ("5431", 3, ("货运部",)),
    ("1819", 2, ("制衣厂",)),
)
_ENTERPRISE_MIX: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    ("1819", 4, ("服装", "制衣")),
    ("1952", 3, ("鞋业",)),
    ("2110", 4, ("家具", "家私")),
    ("2231", 2, ("纸品", "包装制品")),
    ("2319", 2, ("印刷", "包装印刷")),
    ("2452", 3, ("玩具", "塑胶玩具")),
    ("2929", 5, ("塑胶制品", "塑胶五金")),
    ("3360", 2, ("五金表面处理",)),
    ("3525", 4, ("模具", "精密模具")),
    ("3831", 2, ("电线电缆",)),
    ("3872", 3, ("照明科技", "光电科技")),
    ("3981", 2, ("电子",)),
    ("3982", 3, ("电路科技", "线路板")),
    ("3989", 6, ("电子科技", "精密电子")),
    ("5174", 4, ("五金贸易",)),
    ("5176", 2, ("电脑科技",)),
    ("5179", 10, ("贸易", "实业", "进出口贸易")),
    ("5193", 4, ("电子商务",)),
    ("5212", 3, ("商贸", "百货")),
    ("5251", 3, ("医药", "大药房")),
    ("5261", 1, ("汽车销售服务",)),
    ("5263", 2, ("汽车配件",)),
    ("6210", 5, ("餐饮管理", "饮食")),
    ("6110", 1, ("酒店管理",)),
    ("6513", 5, ("信息科技", "软件科技")),
    ("5431", 3, ("物流", "运输")),
    ("5821", 3, ("国际货运代理", "供应链管理")),
)
_COOP_MIX: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    ("0141", 35, ("蔬菜种植", "果蔬")),
    ("0154", 20, ("荔枝种植", "水果种植")),
    ("0143", 15, ("花卉苗木", "花卉种植")),
    ("0321", 15, ("家禽养殖",)),
    ("0412", 15, ("水产养殖",)),
)

_SURNAMES = (
    ("陈", 10), ("李", 6), ("黄", 6), ("张", 5), ("王", 4), ("刘", 4), ("林", 4), ("叶", 3),
    ("钟", 3), ("罗", 3), ("何", 3), ("梁", 3), ("郑", 2), ("袁", 2), ("卢", 2), ("莫", 2),
    ("邓", 2), ("谢", 2), ("蔡", 2), ("吴", 2), ("杨", 2), ("周", 2), ("曾", 2), ("徐", 1),
    ("朱", 1), ("彭", 1), ("邱", 1), ("方", 1), ("胡", 1), ("赖", 1), ("温", 1), ("麦", 1),
    ("冯", 1), ("欧阳", 0.3), ("司徒", 0.2),
)  # fmt: skip
_GIVEN_CHARS = (
    "伟芳娜敏静丽强磊军洋勇艳杰涛明超秀霞平刚桂英华玉文辉建志国永健荣新海金俊斌燕红梅琳婷雪慧"
    "晓佳嘉颖欣怡浩宇子轩梓锦兴德贤亮坤鹏飞龙彬锋聪振宏耀基源冠铭"
)
_TRADE_CHARS = (
    "鑫盛兴隆恒泰华福旺达源润宏发鸿佳美新荣顺利康和永金丰昌明祥嘉信诚德益正安乐天宝晟辉富聚汇"
    "广粤莞东锦创致博卓乾坤腾瑞誉展"
)
_PHONE_PREFIXES = tuple(
    f"{p}"
    for p in (
        *range(130, 140), *range(150, 154), *range(155, 160), 170, 171, 173, *range(175, 179),
        *range(180, 190), 191, 193, *range(195, 200),
    )
)  # fmt: skip
_GENERIC_ROADS = (
    "人民路", "新城路", "工业大道", "振兴路", "建设路", "环城路", "解放路", "沿河路", "创业路",
    "富民路", "鸿福路", "商业街", "中心路", "育才路", "东风路", "花园路", "教育路", "运河路",
    "银湖路", "迎宾路", "文化路", "聚富路", "兴业路", "长兴路",
)  # fmt: skip
_TOWN_ROAD_SUFFIXES = ("大道", "中路", "东路", "西路", "南路", "北路")
_VILLAGES = (
    "白沙", "新联", "怀德", "赤岭", "沙头", "南栅", "北栅", "大宁", "龙眼", "太平", "上沙", "下沙",
    "新塘", "黄村", "石鼓", "横坑", "田心", "鹤田", "水边", "塘尾",
)  # fmt: skip
_VAGUE_TAILS = ("村委会附近", "旧村", "市场旁", "工业区内", "村口")

_STATUSES = tuple(STATUS_SHARES)
_CREDITS = tuple(CREDIT_SHARES)
_FIRST_YEAR, _LAST_YEAR = 1990, 2025
_USCC_REFORM = date(2015, 10, 1).toordinal()  # earlier 企业/合作社 keep old numeric org codes

_FW_DIGITS = str.maketrans("0123456789", "０１２３４５６７８９")
_CN_DIGITS = "零一二三四五六七八九"


def _chinese_numeral(n: int) -> str:
    """1 ≤ n ≤ 999 in Chinese numerals, as written in addresses (十二, 一百零五)."""
    h, t, u = n // 100, n // 10 % 10, n % 10
    out = f"{_CN_DIGITS[h]}百" if h else ""
    if t:
        out += "十" if (t == 1 and not h) else f"{_CN_DIGITS[t]}十"
    elif h and u:
        out += "零"
    return out + (_CN_DIGITS[u] if u else "")


_CN = ("", *(_chinese_numeral(i) for i in range(1, 1000)))


def _mix_tables(
    mixes: Sequence[tuple[tuple[str, float, tuple[str, ...]], ...]],
) -> tuple[list[str], list[NDArray[np.float64]], list[NDArray[np.int64]], list[str], list[int]]:
    """Flatten the per-kind mixes into one industry list plus per-kind lookup arrays."""
    codes: list[str] = []
    words: list[str] = []
    word_start: list[int] = []
    cums: list[NDArray[np.float64]] = []
    indices: list[NDArray[np.int64]] = []
    for mix in mixes:
        weights = np.array([w for _, w, _ in mix], dtype=np.float64)
        cums.append(np.cumsum(weights) / weights.sum())
        idx = []
        for code, _, ws in mix:
            idx.append(len(codes))
            codes.append(code)
            word_start.append(len(words))
            words.extend(ws)
        indices.append(np.array(idx, dtype=np.int64))
    return codes, cums, indices, words, word_start


_MIX_CODES, _MIX_CUMS, _MIX_INDEX, _WORDS, _WORD_START_LIST = _mix_tables(
    (_INDIVIDUAL_MIX, _ENTERPRISE_MIX, _COOP_MIX)
)
_WORD_START = np.array(_WORD_START_LIST, dtype=np.int64)
_WORD_COUNT = np.diff(np.append(_WORD_START, len(_WORDS)))
_MIX_SCOPES = [_SCOPES[c] for c in _MIX_CODES]
_KIND_CODES = ("2", "1", "3")  # order of the mixes: 个体, 企业, 合作社
_KIND_NAMES = ("个体工商户", "企业", "农民专业合作社")
_SURNAME_LIST = [s for s, _ in _SURNAMES]
_SURNAME_CUM = np.cumsum([w for _, w in _SURNAMES]) / sum(w for _, w in _SURNAMES)
_GIVEN = [a + b for a in _GIVEN_CHARS for b in _GIVEN_CHARS] + list(_GIVEN_CHARS)
_TRADE = [a + b for a in _TRADE_CHARS for b in _TRADE_CHARS if a != b]

_YEAR_STARTS = np.array(
    [date(y, 1, 1).toordinal() for y in range(_FIRST_YEAR, _LAST_YEAR + 2)], dtype=np.int64
)
_YEAR_DAYS = np.diff(_YEAR_STARTS)
# Slow growth until the 2014 commercial-registration reform, then a jump and faster growth.
_YEAR_W = np.array(
    [
        np.exp(0.06 * (y - _FIRST_YEAR)) * (2.5 if y >= 2014 else 1.0)
        for y in range(_FIRST_YEAR, _LAST_YEAR + 1)
    ]
)
_YEAR_CUM = np.cumsum(_YEAR_W) / _YEAR_W.sum()

_ALPHABET_U1 = np.array(list(ALPHABET), dtype="<U1")
_WEIGHTS = np.array(WEIGHTS, dtype=np.int64)
# GB 11714 value of each USCC alphabet character (digits, A=10 … Z=35) and its weights.
_GB11714_VALUE = np.array([int(c) if c.isdigit() else ord(c) - 55 for c in ALPHABET])
_ORG_WEIGHTS = np.array((3, 7, 9, 10, 5, 8, 4, 2), dtype=np.int64)
_MA = (ALPHABET.index("M"), ALPHABET.index("A"))


def _draw(cum: NDArray[np.float64], u: NDArray[np.float64]) -> NDArray[np.int64]:
    """Indices drawn from the cumulative distribution ``cum`` with uniforms ``u``."""
    return np.minimum(np.searchsorted(cum, u, side="right"), len(cum) - 1)


def _permutation_constants(seed: int) -> tuple[int, int, int, int]:
    """(a_old, b_old, a_new, b_new): i ↦ a·i + b is a bijection mod 10^8 (a coprime to 10) and
    mod 31^6 (a not a multiple of 31)."""
    rng = np.random.default_rng([seed, 2])
    a_old = int(rng.integers(10**7, 10**8))
    while a_old % 2 == 0 or a_old % 5 == 0:
        a_old += 1
    a_new = int(rng.integers(31**5, 31**6))
    if a_new % 31 == 0:
        a_new += 1
    return a_old, int(rng.integers(0, 10**8)), a_new, int(rng.integers(0, 31**6))


def _org_bodies(
    counter: NDArray[np.int64], old_style: NDArray[np.bool_], consts: tuple[int, int, int, int]
) -> NDArray[np.int64]:
    """Alphabet indices (k × 8) of organisation-code bodies, unique per counter value.

    Old style (企业/合作社 registered before the 2015 reform): 8 digits, ``a·i + b mod 10^8``.
    New style: ``MA`` + 6 base-31 characters of ``a·i + b mod 31^6``.  Both maps are injective on
    ``0 ≤ i < 10^8`` and the styles cannot collide (digits vs 'M'), so bodies — hence codes —
    are unique within a run.
    """
    a_old, b_old, a_new, b_new = consts
    out = np.empty((len(counter), 8), dtype=np.int64)
    x = (a_old * counter + b_old) % 10**8
    for j in range(7, -1, -1):
        out[:, j] = np.where(old_style, x % 10, 0)
        x //= 10
    y = (a_new * counter + b_new) % 31**6
    new = ~old_style
    out[new, 0], out[new, 1] = _MA
    for j in range(7, 1, -1):
        out[new, j] = y[new] % 31
        y //= 31
    return out


def _usccs(kind_code: NDArray[np.int64], body: NDArray[np.int64]) -> list[str]:
    """Full codes: 9, kind, 441900, body + GB 11714 check, USCC check."""
    k = len(kind_code)
    v = np.empty((k, 18), dtype=np.int64)
    v[:, 0] = 9
    v[:, 1] = kind_code
    v[:, 2:8] = [int(c) for c in DIVISION]
    v[:, 8:16] = body
    c9 = 11 - (_GB11714_VALUE[body] @ _ORG_WEIGHTS) % 11
    v[:, 16] = np.where(c9 == 10, ALPHABET.index("X"), np.where(c9 == 11, 0, c9))
    v[:, 17] = (31 - (v[:, :17] @ _WEIGHTS) % 31) % 31
    return np.ascontiguousarray(_ALPHABET_U1[v]).view("<U18").ravel().tolist()


def _check_points(
    out: tuple[NDArray[Any], NDArray[Any], NDArray[Any]], n_towns: int
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
    """The caller's ``(lon, lat, town_index)``, checked for shape and town range."""
    lon, lat, town = (np.asarray(a) for a in out)
    if not (lon.shape == lat.shape == town.shape == (CHUNK,)):
        raise ValueError(f"points({CHUNK}, rng) must return three arrays of length {CHUNK}")
    town = town.astype(np.int64)
    if town.min() < 0 or town.max() >= n_towns:
        raise ValueError(f"points() returned a town index outside 0..{n_towns - 1}")
    return lon.astype(np.float64), lat.astype(np.float64), town


def _objects(values: Sequence[Any]) -> NDArray[np.object_]:
    """A 1-d object array (elementwise ``+`` on it concatenates strings in C)."""
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def _digit_matrix(values: NDArray[np.int64], width: int) -> NDArray[np.int64]:
    """The ``width`` decimal digits of each value (zero-padded), one row per value."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return (values[:, None] // powers) % 10


def _rows_as_strings(digits: NDArray[np.int64]) -> list[str]:
    """Each row of a digit matrix as one string."""
    chars = np.ascontiguousarray(_DIGITS_U1[digits])
    return chars.view(f"<U{digits.shape[1]}").ravel().tolist()


_DIGITS_U1 = np.array(list("0123456789"), dtype="<U1")
_CN_DIGIT_WISE = "〇一二三四五六七八九"
# Number spellings by address style (0 ASCII, 1 full-width, 2 Chinese): plain and room (2-digit).
_NUM = np.array(
    [
        [str(i) for i in range(1000)],
        [str(i).translate(_FW_DIGITS) for i in range(1000)],
        list(_CN),
    ],
    dtype=object,
)
_ROOM = np.array(
    [
        [f"{i:02d}" for i in range(100)],
        [f"{i:02d}".translate(_FW_DIGITS) for i in range(100)],
        ["".join(_CN_DIGIT_WISE[int(d)] for d in f"{i:02d}") for i in range(100)],
    ],
    dtype=object,
)
_PHONE_DIGITS = np.array([[int(d) for d in p] for p in _PHONE_PREFIXES], dtype=np.int64)
_KIND_NAME_OBJ = _objects(_KIND_NAMES)
_KIND_VALUE = np.array([int(c) for c in _KIND_CODES], dtype=np.int64)
_KIND_CUM = np.cumsum(list(KIND_SHARES.values()))
_STATUS_CUM = np.cumsum(list(STATUS_SHARES.values()))
_CREDIT_CUM = np.cumsum(list(CREDIT_SHARES.values()))
# Building / room part: none, 栋+室, 楼, 首层…号铺, …商业大厦…层…号.
_EXTRA_CUM = np.array([0.62, 0.77, 0.87, 0.95, 1.0])
_STYLE_CUM = np.array([1 - _FULL_WIDTH - _CHINESE_NUMERALS, 1 - _CHINESE_NUMERALS, 1.0])
_NAME_TAIL = _objects(("", "有限公司", "农民专业合作社"))
_STATUS_OBJ = _objects(_STATUSES)
_CREDIT_OBJ = _objects(_CREDITS)
_CODE_OBJ = _objects(_MIX_CODES)
_SCOPE_OBJ = _objects(_MIX_SCOPES)
_WORD_OBJ = _objects(_WORDS)
_TRADE_OBJ = _objects(_TRADE)
_SURNAME_OBJ = _objects(_SURNAME_LIST)
_GIVEN_OBJ = _objects(_GIVEN)
_VILLAGE_OBJ = _objects(_VILLAGES)
_VAGUE_OBJ = _objects(_VAGUE_TAILS)


class _Towns:
    """Per-town lookup arrays for one run."""

    def __init__(self, towns: Sequence[tuple[str, str]]) -> None:
        self.n = len(towns)
        self.code = _objects([c for c, _ in towns])
        self.prefix = _objects([f"广东省东莞市{name}" for _, name in towns])
        # 个体 names carry the town; the extra last entry is the plain city for the others.
        self.name_head = _objects([f"东莞市{name}" for _, name in towns] + ["东莞市"])
        roads = [
            [name.removesuffix("街道").removesuffix("镇") + s for s in _TOWN_ROAD_SUFFIXES]
            + list(_GENERIC_ROADS)
            for _, name in towns
        ]
        self.roads = np.empty((self.n, len(roads[0])), dtype=object)
        self.roads[:] = roads


def generate_entities(
    n: int,
    points: PointSource,
    towns: Sequence[tuple[str, str]],
    seed: int = 20171109,
) -> Iterator[dict[str, Any]]:
    """Yield ``n`` synthetic market entities (see the module docstring for the keys).

    ``towns`` is ``[(town_code, town_name), ...]``; ``points(k, rng)`` returns ``(lon, lat,
    town_index)`` with ``town_index`` into ``towns``.  ``0 ≤ n ≤ MAX_ENTITIES``.
    """
    if not 0 <= n <= MAX_ENTITIES:
        raise ValueError(f"n must be between 0 and {MAX_ENTITIES}, got {n}")
    if not towns:
        raise ValueError("towns must not be empty")
    rng = np.random.default_rng([seed, 0])
    point_rng = np.random.default_rng([seed, 1])
    consts = _permutation_constants(seed)
    ctx = _Towns(towns)
    for start in range(0, n, CHUNK):
        cols = _chunk(start, min(CHUNK, n - start), points, (rng, point_rng), consts, ctx)
        for uscc, name, kind, status, rep, phone, reg, biz, code, scope, est, town, x, y, cr in zip(
            *cols, strict=True
        ):
            yield {
                "uscc": uscc,
                "name": name,
                "kind": kind,
                "status": status,
                "legal_representative": rep,
                "phone": phone,
                "registered_address": reg,
                "business_address": biz,
                "industry_code": code,
                "business_scope": scope,
                "established": est,
                "town_code": town,
                "lon": x,
                "lat": y,
                "credit_class": cr,
            }


def _chunk(
    start: int,
    k: int,
    points: PointSource,
    rngs: tuple[np.random.Generator, np.random.Generator],
    consts: tuple[int, int, int, int],
    ctx: _Towns,
) -> list[list[Any]]:
    """Columns (lists of length ``k``) for rows ``start …``, in the order ``generate_entities``
    unpacks them.  ``CHUNK`` rows are always drawn, so that shorter runs are prefixes."""
    rng, point_rng = rngs
    size = CHUNK
    lon, lat, town = _check_points(points(size, point_rng), ctx.n)

    kind = _draw(_KIND_CUM, rng.random(size))  # 0 个体, 1 企业, 2 合作社
    ind = np.empty(size, dtype=np.int64)
    u = rng.random(size)
    for kk in range(3):
        mask = kind == kk
        ind[mask] = _MIX_INDEX[kk][_draw(_MIX_CUMS[kk], u[mask])]
    word = _WORD_START[ind] + (rng.random(size) * _WORD_COUNT[ind]).astype(np.int64)
    trade = rng.integers(0, len(_TRADE), size)
    year = _draw(_YEAR_CUM, rng.random(size))
    established = _YEAR_STARTS[year] + (rng.random(size) * _YEAR_DAYS[year]).astype(np.int64)
    status = _draw(_STATUS_CUM, rng.random(size))
    credit = _draw(_CREDIT_CUM, rng.random(size))
    surname = _draw(_SURNAME_CUM, rng.random(size))
    n_pairs = len(_GIVEN) - len(_GIVEN_CHARS)  # two-character given names come first
    given = np.where(
        rng.random(size) < 0.25,
        n_pairs + rng.integers(0, len(_GIVEN_CHARS), size),
        rng.integers(0, n_pairs, size),
    )
    phone_prefix = rng.integers(0, len(_PHONE_PREFIXES), size)
    phone_rest = rng.integers(0, 10**8, size)
    road = rng.integers(0, ctx.roads.shape[1], size)
    number = np.exp(rng.random(size) * np.log(400)).astype(np.int64)  # 1..399, small likelier
    extra = _draw(_EXTRA_CUM, rng.random(size))
    bldg = rng.integers(1, 13, size)  # building (栋) or floor (楼/层)
    room = rng.integers(1, 30, size)  # room or shop number
    floor = rng.integers(1, 10, size)  # floor part of a room number
    style = _draw(_STYLE_CUM, rng.random(size))
    missing = rng.random(size)
    village = rng.integers(0, len(_VILLAGES), size)
    tail = rng.integers(0, len(_VAGUE_TAILS), size)
    has_biz = rng.random(size) < _BUSINESS_ADDRESS
    biz_road = (road + rng.integers(1, ctx.roads.shape[1], size)) % ctx.roads.shape[1]
    biz_number = rng.integers(1, 200, size)

    counter = np.arange(start, start + size, dtype=np.int64)
    old_style = (kind != 0) & (established < _USCC_REFORM)
    codes = _usccs(_KIND_VALUE[kind[:k]], _org_bodies(counter[:k], old_style[:k], consts))

    # Everything below works on the first k rows only.
    (kind, ind, word, trade, established, status, credit, surname, given, phone_prefix,
     phone_rest, town, road, number, extra, bldg, room, floor, style, missing, village, tail,
     has_biz, biz_road, biz_number, lon, lat) = (
        a[:k] for a in (
            kind, ind, word, trade, established, status, credit, surname, given, phone_prefix,
            phone_rest, town, road, number, extra, bldg, room, floor, style, missing, village,
            tail, has_biz, biz_road, biz_number, lon, lat,
        )
    )  # fmt: skip

    name = (
        ctx.name_head[np.where(kind == 0, town, ctx.n)]
        + _TRADE_OBJ[trade]
        + _WORD_OBJ[word]
        + _NAME_TAIL[kind]
    )
    phone = np.concatenate([_PHONE_DIGITS[phone_prefix], _digit_matrix(phone_rest, 8)], axis=1)

    prefix = ctx.prefix[town]
    address = prefix + ctx.roads[town, road] + _NUM[style, number] + "号"
    for ex in range(1, 5):
        m = extra == ex
        s, b, r, f = style[m], bldg[m], room[m], floor[m]
        if ex == 1:
            part = _NUM[s, b] + "栋" + _NUM[s, f] + _ROOM[s, r] + "室"
        elif ex == 2:
            part = _NUM[s, b] + "楼"
        elif ex == 3:
            part = "首层" + _NUM[s, r] + "号铺"
        else:
            part = _VILLAGE_OBJ[village[m]] + "商业大厦" + _NUM[s, b] + "层" + _ROOM[s, r] + "号"
        address[m] += part
    no_point = missing < _MISSING_POINT
    vague = missing < _MISSING_POINT * _VAGUE_OF_MISSING
    address[vague] = prefix[vague] + _VILLAGE_OBJ[village[vague]] + "村" + _VAGUE_OBJ[tail[vague]]
    business = np.full(k, None, dtype=object)
    business[has_biz] = (
        prefix[has_biz]
        + ctx.roads[town[has_biz], biz_road[has_biz]]
        + _NUM[0, biz_number[has_biz]]
        + "号"
    )
    lon_obj, lat_obj = lon.astype(object), lat.astype(object)
    lon_obj[no_point] = None
    lat_obj[no_point] = None

    return [
        codes,
        name.tolist(),
        _KIND_NAME_OBJ[kind].tolist(),
        _STATUS_OBJ[status].tolist(),
        (_SURNAME_OBJ[surname] + _GIVEN_OBJ[given]).tolist(),
        _rows_as_strings(phone),
        address.tolist(),
        business.tolist(),
        _CODE_OBJ[ind].tolist(),
        _SCOPE_OBJ[ind].tolist(),
        list(map(date.fromordinal, established.tolist())),
        ctx.code[town].tolist(),
        lon_obj.tolist(),
        lat_obj.tolist(),
        _CREDIT_OBJ[credit].tolist(),
    ]
