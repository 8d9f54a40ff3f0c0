"""Permit types as a code list (table `permit_type`, docs/permits.md): the list with the
departments that issue them, the permits an industry needs (permit_requirement by GB/T 4754
prefix), and the normalisation of what clients send (a code, a name or an alias → the code;
anything else is a 422 listing the codes)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from backend.domain.permits import PermitCatalog
from backend.services.errors import InvalidInput

_SELECT = (
    "SELECT p.code, p.name, p.aliases, p.department_code, d.name AS department_name, "
    "p.legal_basis, p.active, p.version FROM permit_type p "
    "JOIN department d ON d.code = p.department_code"
)
_REQUIRED = (
    "SELECT r.permit_type AS code, jsonb_agg(jsonb_build_object('industry_prefix', "
    "r.industry_prefix, 'note', r.note, 'legal_basis', r.legal_basis) "
    "ORDER BY r.industry_prefix) AS requirements FROM permit_requirement r "
    "WHERE :industry LIKE r.industry_prefix || '%' GROUP BY r.permit_type"
)
_CATALOG = text("SELECT code, name, aliases FROM permit_type WHERE active")


def list_permit_types(
    session: Session, *, industry: str | None = None, include_inactive: bool = False
) -> list[dict[str, Any]]:
    """Permit types by code; with `industry` (a GB/T 4754 code) only those it needs, each with
    the requirement rows that say so."""
    where = "" if include_inactive else " WHERE p.active"
    if industry is None:
        rows = session.execute(text(f"{_SELECT}{where} ORDER BY p.code")).mappings()
        return [dict(r) for r in rows]
    rows = session.execute(
        text(
            f"WITH needed AS ({_REQUIRED}) SELECT x.*, n.requirements FROM ({_SELECT}{where}) x "
            f"JOIN needed n ON n.code = x.code ORDER BY x.code"
        ),
        {"industry": industry},
    ).mappings()
    return [dict(r) for r in rows]


def catalog(session: Session) -> PermitCatalog:
    """The active permit types, for normalising what clients send."""
    return PermitCatalog.of((r.code, r.name, r.aliases) for r in session.execute(_CATALOG))


def resolve(session: Session, value: str, field: str = "permit_type") -> str:
    """The code for a code, name or alias; 422 listing the codes otherwise."""
    permits = catalog(session)
    code = permits.resolve(value)
    if code is None:
        raise InvalidInput(
            permits.unknown_message(value),
            errors=[{"in": "json", "field": field, "messages": [permits.unknown_message(value)]}],
        )
    return code


def normalise_outcome(session: Session, outcome: dict[str, Any]) -> dict[str, Any]:
    """A license_check outcome with permit codes in `permits_needed` and `permits_shown`
    (names and aliases from older clients become codes); 422 naming each unknown item."""
    permits = catalog(session)
    out = dict(outcome)
    errors: list[dict[str, Any]] = []
    for key in ("permits_needed", "permits_shown"):
        out[key], bad = permits.normalise(list(outcome[key]), f"outcome.{key}")
        errors.extend(bad)
    if errors:
        raise InvalidInput(
            f"Unknown permit types in the outcome; valid codes: {', '.join(permits.codes)}.",
            errors=errors,
        )
    return out


def names(session: Session, codes: list[str]) -> dict[str, str]:
    """code → name (inactive ones too: old findings name them)."""
    if not codes:
        return {}
    return dict(
        session.execute(
            text("SELECT code, name FROM permit_type WHERE code = ANY(:c)"), {"c": codes}
        ).all()
    )
