"""One registry row (统一社会信用代码, 名称, 住所 ...) checked and cleaned, without a database.

Column headers are accepted as exported by Chinese registration systems or in English; the
mapping is `HEADERS`. `clean_row` answers the cleaned values or the list of reasons the row is
rejected, so an import can report every bad row and keep every good one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from backend.domain.uscc import UsccError, entity_kind, validate

# canonical field → accepted headers (compared after stripping spaces, case-insensitively)
HEADERS: dict[str, tuple[str, ...]] = {
    "uscc": ("统一社会信用代码", "社会信用代码", "信用代码", "uscc", "credit_code"),
    "name": ("名称", "企业名称", "主体名称", "字号名称", "name"),
    "kind": ("主体类型", "市场主体类型", "类型", "kind"),
    "status": ("登记状态", "经营状态", "状态", "status"),
    "legal_representative": ("法定代表人", "经营者", "负责人", "legal_representative"),
    "phone": ("联系电话", "电话", "phone"),
    "registered_address": ("住所", "注册地址", "登记住所", "registered_address"),
    "business_address": ("经营场所", "经营地址", "business_address"),
    "industry_code": ("行业代码", "国民经济行业代码", "industry_code"),
    "business_scope": ("经营范围", "business_scope"),
    "established_on": ("成立日期", "登记日期", "established_on", "established"),
    "last_changed_on": ("变更日期", "最后变更日期", "核准日期", "last_changed_on"),
    "credit_class": ("信用风险分类", "信用等级", "credit_class"),
    "lon": ("经度", "lon", "lng", "longitude"),
    "lat": ("纬度", "lat", "latitude"),
}
REQUIRED = ("uscc", "name", "registered_address")
KINDS = {
    "企业": "企业",
    "公司": "企业",
    "个体工商户": "个体工商户",
    "个体": "个体工商户",
    "农民专业合作社": "农民专业合作社",
    "合作社": "农民专业合作社",
}
STATUSES = {
    "存续": "存续",
    "在业": "在业",
    "在营": "在业",
    "开业": "存续",
    "迁出": "迁出",
    "注销": "注销",
    "吊销": "吊销",
    "吊销未注销": "吊销",
}
# Generous box around Dongguan; the exact city outline is checked in the database.
CITY_BOX = (113.3, 22.4, 114.6, 23.4)
_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y.%m.%d", "%Y年%m月%d日")
_INDUSTRY = re.compile(r"^[A-T]?(\d{4})$")
_UNSAFE = re.compile(r"[\x00\ud800-\udfff]")


class HeaderError(ValueError):
    """The file's header row cannot be mapped (a required column is missing)."""


@dataclass
class Cleaned:
    values: dict[str, Any] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.reasons


def map_headers(headers: list[Any]) -> dict[int, str]:
    """Column index → canonical field; unknown columns are ignored, a missing required one
    (or a field given twice) is an error naming it."""
    lookup = {alias.lower(): canon for canon, aliases in HEADERS.items() for alias in aliases}
    out: dict[int, str] = {}
    for i, header in enumerate(headers):
        key = re.sub(r"\s+", "", str(header or "")).lstrip("\ufeff").lower()
        canon = lookup.get(key)
        if canon is None:
            continue
        if canon in out.values():
            raise HeaderError(f"Two columns map to {canon!r} (e.g. {header!r}).")
        out[i] = canon
    missing = [f for f in REQUIRED if f not in out.values()]
    if missing:
        names = "; ".join(f"{f} ({' / '.join(HEADERS[f][:2])})" for f in missing)
        raise HeaderError(f"Missing required column(s): {names}.")
    if ("lon" in out.values()) != ("lat" in out.values()):
        raise HeaderError("经度 (lon) and 纬度 (lat) come together or not at all.")
    return out


def clean_row(raw: dict[str, Any]) -> Cleaned:
    """Check and normalise one row given as {canonical field: raw value}."""
    result = Cleaned()
    v = result.values
    texts = {k: _text(raw.get(k)) for k in HEADERS if k not in ("lon", "lat")}
    bad_chars = [k for k, t in texts.items() if t and _UNSAFE.search(t)]
    if bad_chars:
        result.reasons.append(f"invalid characters in {', '.join(bad_chars)}")
        return result
    try:
        v["uscc"] = validate(texts["uscc"] or "")
    except UsccError as exc:
        result.reasons.append(f"统一社会信用代码: {exc}")
    for f in ("name", "registered_address"):
        if not texts[f]:
            result.reasons.append(f"{f} is empty")
        v[f] = texts[f]
    for f in ("legal_representative", "phone", "business_address", "business_scope"):
        v[f] = texts[f]
    kind = texts["kind"]
    if kind:
        if kind not in KINDS:
            result.reasons.append(f"unknown kind {kind!r}")
        v["kind"] = KINDS.get(kind)
    else:
        v["kind"] = entity_kind(v["uscc"]) if "uscc" in v else None
    status = texts["status"] or "存续"
    if status not in STATUSES:
        result.reasons.append(f"unknown registration status {status!r}")
    v["status"] = STATUSES.get(status)
    code = texts["industry_code"]
    if code:
        match = _INDUSTRY.match(code.upper())
        if not match:
            result.reasons.append(f"industry code {code!r} is not a 4-digit GB/T 4754 code")
        v["industry_code"] = match.group(1) if match else None
    else:
        v["industry_code"] = None
    for f in ("established_on", "last_changed_on"):
        value = raw.get(f)
        parsed = _date(value)
        if parsed is False:
            result.reasons.append(f"unparseable date in {f}: {value!r}")
        v[f] = parsed or None
    credit = (texts["credit_class"] or "").upper() or None
    if credit and credit not in ("A", "B", "C", "D"):
        result.reasons.append(f"credit class {credit!r} is not A, B, C or D")
    v["credit_class"] = credit
    v["lon"], v["lat"] = _coordinates(raw.get("lon"), raw.get("lat"), result.reasons)
    return result


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _date(value: Any) -> date | bool | None:
    """A date, None when empty, False when unparseable."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    for fmt in _DATE_FORMATS:
        try:
            parsed = datetime.strptime(text, fmt).date()
        except ValueError:
            continue
        return parsed if 1949 <= parsed.year <= 2100 else False
    return False


def _coordinates(lon: Any, lat: Any, reasons: list[str]) -> tuple[float | None, float | None]:
    if _text(lon) is None and _text(lat) is None:
        return None, None
    try:
        x, y = float(str(lon).strip()), float(str(lat).strip())
    except ValueError:
        reasons.append(f"coordinates are not numbers: {lon!r}, {lat!r}")
        return None, None
    if not (x == x and y == y):  # NaN
        reasons.append("coordinates are not numbers")
        return None, None
    x0, y0, x1, y1 = CITY_BOX
    if not (x0 <= x <= x1 and y0 <= y <= y1):
        reasons.append(f"coordinates ({x}, {y}) are outside the city")
        return None, None
    return x, y
