"""Input fields shared by the API schemas."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import ValidationError, fields, validate

from geo.crs import CRS_NAMES

# NUL cannot be stored by PostgreSQL, and a lone surrogate cannot be encoded as UTF-8.
_UNSAFE = re.compile(r"[\x00\ud800-\udfff]")


def has_unsafe_chars(value: str) -> bool:
    return bool(_UNSAFE.search(value))


class SafeString(fields.String):
    """A string without NUL or lone surrogates (either would fail deep inside, as a 500)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        result = super()._deserialize(value, attr, data, **kwargs)
        if has_unsafe_chars(result):
            raise ValidationError("Contains a NUL character or an invalid Unicode code point.")
        return result


class Crs(SafeString):
    """A CRS name, case-insensitive: wgs84 | cgcs2000 | gcj02 | bd09."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("validate", validate.OneOf(CRS_NAMES))
        kwargs.setdefault("metadata", {}).setdefault(
            "description", "CRS of the input coordinates: " + " | ".join(CRS_NAMES)
        )
        super().__init__(**kwargs)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        return super()._deserialize(value, attr, data, **kwargs).strip().lower()
