"""`gridpatrol calendar ...`: the working-day calendar (official holidays and 调休).

Registered by backend/cli.py (`main.add_command(calendar_group)`). Builds its sessions like
backend/cli.py does (no import of it, so no cycle); a test may pass its own session factory
as `obj={"session_factory": ...}`."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

import click


def _session(ctx: click.Context) -> Any:
    """A Session whose audit actor is the operating-system user running the command."""
    from backend.services import audit

    factory = (ctx.obj or {}).get("session_factory") if isinstance(ctx.obj, dict) else None
    if factory is None:
        from backend.config import Settings
        from backend.db import make_engine, make_sessionmaker

        factory = make_sessionmaker(make_engine(Settings.from_env().database_url))
    session = factory()
    audit.set_actor(session, audit.Actor(None, f"cli:{getpass.getuser()}", "system"))
    return session


def _print_loads(results: list[dict[str, Any]]) -> None:
    for r in results:
        verb = "replaced" if r["replaced"] else "loaded"
        click.echo(
            f"{r['year']} {verb}: {r['holidays']} holidays, {r['workdays']} make-up working "
            f"days ({r['added']} added, {r['removed']} removed, {r['changed']} changed) "
            f"from {r['source']}"
        )


@click.group("calendar")
def calendar_group() -> None:
    """Working-day calendar: official holidays and make-up working days (调休)."""


@calendar_group.command("seed")
@click.pass_context
def calendar_seed(ctx: click.Context) -> None:
    """Load every year the installed chinesecalendar package covers that is not loaded yet
    (idempotent; years loaded from a file are left alone)."""
    from backend.services import calendar

    with _session(ctx) as session:
        result = calendar.seed_from_package(session)
        session.commit()
    years = result["package_years"]
    span = f"{years[0]}–{years[-1]}" if years else "none"
    if result["loaded"]:
        click.echo(f"loaded {len(result['loaded'])} year(s): {_years(result['loaded'])}")
    else:
        click.echo("nothing to load")
    click.echo(f"the package covers {span}; load later years with `gridpatrol calendar load`")


@calendar_group.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", default=None, help="where the data comes from (default: the file name)")
@click.pass_context
def calendar_load(ctx: click.Context, file: Path, source: str | None) -> None:
    """Replace every year in FILE: CSV (UTF-8 or GB18030; 日期/date, 类型/kind, 名称/name;
    kind holiday|节假日|休息 or workday|调休|上班|补班), XLSX, or JSON
    {"year": 2027, "holidays": {"2027-01-01": "元旦"}, "workdays": {...}}. All or nothing."""
    from backend.services import calendar
    from backend.services.errors import ServiceError

    with _session(ctx) as session:
        try:
            result = calendar.load_file(
                session, file.read_bytes(), file.name, source or f"file:{file.name}"
            )
        except ServiceError as exc:
            lines = [exc.detail]
            for error in (exc.errors or [])[:20]:
                where = f"row {error['row']}" if "row" in error else error.get("field")
                lines.append(f"  {where}: {'; '.join(error['messages'])}")
            raise click.ClickException("\n".join(lines)) from exc
        session.commit()
    _print_loads(result["years"])


@calendar_group.command("show")
@click.argument("year", type=int)
@click.option("--json", "as_json", is_flag=True, help="print the year as JSON")
@click.pass_context
def calendar_show(ctx: click.Context, year: int, as_json: bool) -> None:
    """Show YEAR: loaded or not, its source, holidays and make-up working days."""
    from backend.services import calendar
    from backend.services.errors import ServiceError

    with _session(ctx) as session:
        try:
            summary = calendar.year_summary(session, year)
        except ServiceError as exc:
            raise click.ClickException(exc.detail) from exc
        session.rollback()
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False, indent=2, default=str))
        return
    if not summary["loaded"]:
        click.echo(f"{year}: not loaded — deadlines in {year} count Monday–Friday (approximate)")
        return
    click.echo(f"{year}: loaded from {summary['source']} at {summary['loaded_at']:%Y-%m-%d %H:%M}")
    for label, key in (("holidays", "holidays"), ("make-up working days (调休)", "workdays")):
        click.echo(f"  {label}: {len(summary[key])}")
        for day in summary[key]:
            click.echo(f"    {day['date']:%Y-%m-%d %a}  {day['name'] or ''}")


def _years(years: list[int]) -> str:
    """2004, 2005, 2006, 2010 → 2004–2006, 2010."""
    spans: list[list[int]] = []
    for year in sorted(years):
        if spans and year == spans[-1][1] + 1:
            spans[-1][1] = year
        else:
            spans.append([year, year])
    return ", ".join(str(a) if a == b else f"{a}–{b}" for a, b in spans)
