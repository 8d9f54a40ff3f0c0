"""The four levels of the grid hierarchy and where each lives in the database."""

from __future__ import annotations

import re
from dataclasses import dataclass

from backend.services.errors import InvalidInput


@dataclass(frozen=True)
class Level:
    name: str
    table: str
    parent: str | None  # parent level name
    parent_column: str | None  # column holding the parent's code (towns have none: one city)
    code_pattern: re.Pattern[str]
    code_hint: str

    @property
    def parent_level(self) -> Level | None:
        return LEVELS[self.parent] if self.parent else None


LEVELS: dict[str, Level] = {
    "city": Level("city", "city", None, None, re.compile(r"^[0-9]{6}$"), "6 digits, e.g. 441900"),
    "town": Level(
        "town", "town", "city", None, re.compile(r"^[0-9]{9}$"), "9 digits, e.g. 441900003"
    ),
    "community": Level(
        "community",
        "community",
        "town",
        "town_code",
        re.compile(r"^[0-9]{12}$"),
        "12 digits, e.g. 441900003001",
    ),
    "cell": Level(
        "cell",
        "grid_cell",
        "community",
        "community_code",
        re.compile(r"^[0-9A-Za-z_-]{1,32}$"),
        "1–32 letters, digits, '-' or '_', e.g. 441900003001001",
    ),
}


def get_level(name: str) -> Level:
    try:
        return LEVELS[name]
    except KeyError:
        raise InvalidInput(
            f"Unknown level {name!r}; expected one of {', '.join(LEVELS)}.",
            errors=[{"in": "query", "field": "level", "messages": ["unknown level"]}],
        ) from None
