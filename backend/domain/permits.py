"""Permit types as a code list (docs/permits.md): a permit named by its code, its name or one
of its aliases is the code; anything else is not a permit type. Pure: the catalogue is made
from the rows of the `permit_type` table."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass


def permit_key(text: str) -> str:
    """How permit texts are compared: NFKC (full-width brackets equal ASCII ones), no
    whitespace, upper case (so `food_business` is `FOOD_BUSINESS`)."""
    return "".join(unicodedata.normalize("NFKC", text).split()).upper()


@dataclass(frozen=True)
class PermitCatalog:
    """code → name, and every accepted spelling → code."""

    names: dict[str, str]
    spellings: dict[str, str]

    @classmethod
    def of(cls, rows: Iterable[tuple[str, str, Iterable[str]]]) -> PermitCatalog:
        """From (code, name, aliases) rows; a code wins over a name, a name over an alias."""
        rows = list(rows)
        names = {code: name for code, name, _ in rows}
        spellings: dict[str, str] = {}
        for tier in (0, 1, 2):
            for code, name, aliases in rows:
                texts = (code,) if tier == 0 else (name,) if tier == 1 else tuple(aliases)
                for text in texts:
                    spellings.setdefault(permit_key(text), code)
        return cls(names, spellings)

    def resolve(self, text: str) -> str | None:
        return self.spellings.get(permit_key(text))

    @property
    def codes(self) -> list[str]:
        return sorted(self.names)

    def unknown_message(self, text: str) -> str:
        return (
            f"{text!r} is not a permit type; use one of the codes "
            f"{', '.join(self.codes)} (GET /api/v1/permit-types lists them with their names)"
        )

    def normalise(self, texts: list[str], field: str) -> tuple[list[str], list[dict]]:
        """(codes in the given order without repeats, errors per offending item)."""
        codes: list[str] = []
        errors = []
        for i, text in enumerate(texts):
            code = self.resolve(text)
            if code is None:
                message = self.unknown_message(text)
                errors.append({"in": "json", "field": f"{field}.{i}", "messages": [message]})
            elif code not in codes:
                codes.append(code)
        return codes, errors
