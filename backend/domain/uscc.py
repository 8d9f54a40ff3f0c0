"""Unified social credit code (统一社会信用代码, GB 32100-2015).

Layout of the 18 characters (1-based positions):

* 1      registration authority (登记管理部门): 1 机构编制, 5 民政, 9 工商, Y 其他, ...
* 2      entity type within the authority; for 工商 (9): 1 企业, 2 个体工商户, 3 农民专业合作社
* 3–8    administrative division code (digits; Dongguan is 441900)
* 9–17   organisation code (GB 11714); its last character is its own check character, which is
         *not* verified here because real registers carry codes where it is wrong
* 18     check character over positions 1–17

The alphabet is ``0-9`` and the capital letters except I, O, Z, S and V (31 characters, value =
index).  The check character is ``(31 - Σ value(c_i)·w_i mod 31) mod 31`` with ``w_i = 3^i mod
31``.  Every weight is non-zero modulo the prime 31, so any single substituted character changes
the sum and is detected.
"""

from __future__ import annotations

__all__ = [
    "ALPHABET",
    "WEIGHTS",
    "UsccError",
    "check_character",
    "entity_kind",
    "is_valid",
    "make_code",
    "normalise",
    "org_check_character",
    "validate",
]

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
#: w_i = 3^i mod 31 for the first 17 positions.
WEIGHTS: tuple[int, ...] = tuple(pow(3, i, 31) for i in range(17))
_VALUE = {c: i for i, c in enumerate(ALPHABET)}
_EXCLUDED = "IOZSV"
_WORKS_KINDS = {"1": "企业", "2": "个体工商户", "3": "农民专业合作社"}
# GB 11714 organisation code: 8 body characters (value: digit, or A=10 … Z=35) + check char.
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
# Full-width ASCII (U+FF01–U+FF5E) → ASCII, ideographic space → space.
_HALF_WIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}


class UsccError(ValueError):
    """The text is not a well-formed unified social credit code; the message says why."""


def normalise(code: str) -> str:
    """Full-width → half-width, drop all whitespace, upper-case."""
    return "".join(code.translate(_HALF_WIDTH).split()).upper()


def _check_alphabet(text: str, offset: int = 0) -> None:
    for i, c in enumerate(text):
        if c not in _VALUE:
            hint = (
                " (I, O, Z, S and V are never used)"
                if c in _EXCLUDED
                else " (allowed: 0-9 and A-Z without I, O, Z, S, V)"
            )
            raise UsccError(f"character {c!r} at position {offset + i + 1} is not allowed{hint}")


def check_character(first17: str) -> str:
    """The check character (position 18) for the first 17 characters (already normalised)."""
    if len(first17) != 17:
        raise UsccError(f"the check character needs 17 characters, got {len(first17)}")
    _check_alphabet(first17)
    total = sum(_VALUE[c] * w for c, w in zip(first17, WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def validate(code: str) -> str:
    """The normalised code, or ``UsccError`` naming the first problem found."""
    norm = normalise(code)
    if len(norm) != 18:
        raise UsccError(f"a unified social credit code has 18 characters, got {len(norm)}")
    _check_alphabet(norm)
    if not norm[2:8].isdigit():
        raise UsccError(
            f"positions 3–8 (administrative division code) must be digits, got {norm[2:8]!r}"
        )
    expected = check_character(norm[:17])
    if norm[17] != expected:
        raise UsccError(f"check character should be {expected!r}, not {norm[17]!r}")
    return norm


def is_valid(code: str) -> bool:
    """Whether ``validate`` accepts the code."""
    try:
        validate(code)
    except UsccError:
        return False
    return True


def entity_kind(code: str) -> str | None:
    """'企业', '个体工商户' or '农民专业合作社' for 工商-registered codes (first character 9);
    None otherwise.  Only the first two characters are read; the code is not validated."""
    norm = normalise(code)
    if len(norm) < 2 or norm[0] != "9":
        return None
    return _WORKS_KINDS.get(norm[1])


def org_check_character(body8: str) -> str:
    """GB 11714 check character for the 8-character body of an organisation code."""
    if len(body8) != 8 or not all(c.isdigit() or "A" <= c <= "Z" for c in body8):
        raise UsccError(f"an organisation code body is 8 characters 0-9/A-Z, got {body8!r}")
    total = sum(
        (int(c) if c.isdigit() else ord(c) - 55) * w
        for c, w in zip(body8, _ORG_WEIGHTS, strict=True)
    )
    check = 11 - total % 11
    return "X" if check == 10 else "0" if check == 11 else str(check)


def make_code(authority: str, kind: str, division: str, org9: str) -> str:
    """Compose a valid code: authority (1 char), kind (1 char), division (6 digits), org9."""
    parts = normalise(authority), normalise(kind), normalise(division), normalise(org9)
    for part, size, what in zip(
        parts, (1, 1, 6, 9), ("authority", "kind", "division", "org9"), strict=True
    ):
        if len(part) != size:
            raise UsccError(f"{what} must have {size} character(s), got {part!r}")
    if not parts[2].isdigit():
        raise UsccError(f"division must be 6 digits, got {parts[2]!r}")
    first17 = "".join(parts)
    return first17 + check_character(first17)
