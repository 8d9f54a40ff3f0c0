"""The `gridpatrol` command. Every subcommand honours DATABASE_URL."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from backend.config import Settings
from backend.models.user import ROLES

DEMO_PASSWORD_DEFAULT = "gridpatrol-demo-2026"


def _settings() -> Settings:
    return Settings.from_env()


def _session():  # type: ignore[no-untyped-def]
    """A Session whose audit actor is the operating-system user running the command."""
    import getpass

    from backend.db import make_engine, make_sessionmaker
    from backend.services import audit

    session = make_sessionmaker(make_engine(_settings().database_url))()
    audit.set_actor(session, audit.Actor(None, f"cli:{getpass.getuser()}", "system"))
    return session


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@click.group()
@click.version_option(package_name="gridpatrol")
def main() -> None:
    """gridpatrol: grid-based market supervision backend."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int, help="gunicorn workers")
@click.option("--dev", is_flag=True, help="Flask's reloading development server instead")
def serve(host: str, port: int, workers: int, dev: bool) -> None:
    """Serve the API (gunicorn; --dev for Flask's reloader)."""
    from backend.app import create_app

    if dev:
        create_app().run(host=host, port=port, debug=True)
        return
    from gunicorn.app.base import BaseApplication

    class _Gunicorn(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("accesslog", None)  # the app logs each request as JSON
            self.cfg.set("timeout", 120)  # imports of a whole city take seconds, not minutes
            self.cfg.set("limit_request_line", 8190)  # long bbox/filter query strings
            self.cfg.set("limit_request_field_size", 16380)

        def load(self) -> Any:
            return create_app()

    _Gunicorn().run()


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default head)."""
    from backend.migrate import upgrade

    settings = _settings()
    upgrade(settings.owner_url, revision, app_url=settings.database_url)
    click.echo(f"database {_redacted(settings.owner_url)} is at {revision}", err=True)


@main.group()
def demo() -> None:
    """Demo data."""


@demo.command("load")
@click.option("--seed", default=20171109, show_default=True, type=int)
@click.option(
    "--entities",
    default=0,
    show_default=True,
    type=click.IntRange(0, 10_000_000),
    help="also add this many synthetic market entities (once)",
)
def demo_load(seed: int, entities: int) -> None:
    """Load the synthetic Dongguan (32 towns, ~590 communities, ~2,900 cells) once."""
    from backend.services.demo import load_demo
    from backend.services.demo_entities import load_demo_entities

    password = os.environ.get("GRIDPATROL_DEMO_PASSWORD", DEMO_PASSWORD_DEFAULT)
    with _session() as session:
        result = load_demo(session, password, seed=seed)
        session.commit()
    verb = "loaded" if result.loaded else "already present"
    click.echo(
        f"demo city {verb}: {result.towns} towns, {result.communities} communities, "
        f"{result.cells} cells"
    )
    for username, role in result.accounts:
        click.echo(f"  demo account {username!r} ({role}), password {password!r}")
    if entities:
        with _session() as session:
            report = load_demo_entities(session, entities, seed=seed)
            session.commit()
        verb = f"loaded {report['loaded']}" if report["loaded"] else "already present"
        click.echo(
            f"demo entities {verb}: {report['entities']} in the registry, "
            f"{report['placed']} placed in cells, {report['no_location']} without a "
            f"location, {report['outside_grid']} outside the grid"
        )
        with _session() as session:
            from backend.services import task_rules

            made = {
                **task_rules.licence_checks(session),
                **task_rules.unmatched_addresses(session),
            }
            session.commit()
            counts = task_rules.counts(session)
        click.echo(f"demo tasks: made {made}; by status {counts}")


@main.group()
def grid() -> None:
    """Grid geography: import and QA."""


@grid.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--level", required=True, type=click.Choice(["city", "town", "community", "cell"]))
@click.option("--code-field", default="code", show_default=True)
@click.option("--name-field", default="name", show_default=True)
@click.option(
    "--parent-field",
    default="parent_code",
    show_default=True,
    help="empty string: find the parent spatially",
)
@click.option(
    "--crs",
    default="wgs84",
    show_default=True,
    type=click.Choice(["wgs84", "cgcs2000", "gcj02", "bd09"], case_sensitive=False),
)
@click.option("--repair", is_flag=True, help="repair invalid rings, overlaps, gaps; accept")
@click.option("--partial", is_flag=True, help="apply good features even if some are rejected")
@click.option("--dry-run", is_flag=True)
@click.option("--encoding", default=None, help="Shapefile attribute encoding, e.g. GBK")
@click.option("--tolerance-m2", default=1.0, show_default=True, type=float)
@click.option("--sliver-m2", default=100.0, show_default=True, type=float)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write the full JSON report here",
)
def grid_import(file: Path, report_path: Path | None, **opts: Any) -> None:
    """Import one level of boundaries from FILE (GeoJSON or zipped Shapefile)."""
    from backend.services.errors import ServiceError
    from backend.services.grid_import import ImportOptions, import_boundaries

    opts["parent_field"] = opts["parent_field"] or None
    opts["crs"] = opts["crs"].lower()
    options = ImportOptions(**opts)
    with _session() as session:
        try:
            record = import_boundaries(session, file.read_bytes(), file.name, options)
        except ServiceError as exc:
            raise click.ClickException(exc.detail) from exc
        session.commit()
        report = record.report
    if report_path:
        report_path.write_text(json.dumps(report, ensure_ascii=False, indent=2, default=str))
    f = report["features"]
    click.echo(
        f"import #{record.id} {report['status']}: read {f['read']}, created {f['created']}, "
        f"updated {f['updated']}, unchanged {f['unchanged']}, rejected {f['rejected']}"
    )
    for item in report["rejected"][:20]:
        click.echo(f"  feature {item['index']} ({item['code']}): {'; '.join(item['reasons'])}")
    qa = report["qa"]
    click.echo(
        "  qa: "
        + ", ".join(
            f"{k} {qa[k + '_count']}"
            for k in ("invalid", "overlaps", "gaps", "outside_parent", "slivers")
        )
    )
    for reason in report["reasons"]:
        click.echo(f"  {reason}")
    if report["status"] == "rejected":
        sys.exit(2)


@grid.command("qa")
@click.option(
    "--level", "levels", multiple=True, type=click.Choice(["city", "town", "community", "cell"])
)
@click.option("--tolerance-m2", default=1.0, show_default=True, type=float)
@click.option("--sliver-m2", default=100.0, show_default=True, type=float)
@click.option("--json", "as_json", is_flag=True, help="print the full report as JSON")
def grid_qa_cmd(
    levels: tuple[str, ...], tolerance_m2: float, sliver_m2: float, as_json: bool
) -> None:
    """Topology QA of the current grid; exits 1 when it finds errors."""
    from backend.services.grid_qa import QaThresholds, grid_qa

    with _session() as session:
        report = grid_qa(session, list(levels) or None, QaThresholds(tolerance_m2, sliver_m2))
        session.rollback()
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, indent=2, default=str))
    else:
        for name, r in report["levels"].items():
            click.echo(
                f"{name}: {r['features']} features, {r['area_m2'] / 1e6:.1f} km², "
                + ", ".join(
                    f"{k} {r[k + '_count']}"
                    for k in ("invalid", "overlaps", "gaps", "outside_parent", "slivers")
                )
                + (" — OK" if r["ok"] else " — ERRORS")
            )
        coverage = report.get("city_coverage")
        if coverage:
            click.echo(
                f"city outline: uncovered {coverage['uncovered_count']}, cells outside it "
                f"{coverage['outside_city_count']}" + (" — OK" if coverage["ok"] else " — ERRORS")
            )
    sys.exit(0 if report["ok"] else 1)


@main.group()
def entities() -> None:
    """Market entities (the registry)."""


_CRS_OPTION = click.option(
    "--crs",
    default="wgs84",
    show_default=True,
    type=click.Choice(["wgs84", "cgcs2000", "gcj02", "bd09"], case_sensitive=False),
)
_ENCODING_OPTION = click.option(
    "--encoding", default=None, help="CSV encoding (default: UTF-8 or GB18030, detected)"
)
_REPORT_OPTION = click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write the full JSON report here",
)


def _progress(rows: int) -> None:
    click.echo(f"\r  {rows:,} rows read", nl=False, err=True)


def _print_import(report: Any, report_path: Path | None, extra: dict[str, Any]) -> None:
    click.echo("", err=True)
    body = {**report.as_dict(), **extra}
    if report_path:
        report_path.write_text(json.dumps(body, ensure_ascii=False, indent=2, default=str))
    click.echo(
        f"rows {report.rows}: created {report.created}, updated {report.updated}, "
        f"unchanged {report.unchanged}, rejected {report.rejected} "
        f"(encoding {report.encoding or 'xlsx'})"
    )
    for item in report.rejected_rows[:20]:
        label = f" ({item['uscc']})" if item.get("uscc") else ""
        click.echo(f"  row {item['row']}{label}: {'; '.join(item['reasons'])}")
    if report.rejected > 20:
        click.echo(f"  ... {report.rejected - 20} more; by reason: {body['rejected_by_reason']}")


@entities.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_ENCODING_OPTION
@_CRS_OPTION
@_REPORT_OPTION
def entities_import(file: Path, encoding: str | None, crs: str, report_path: Path | None) -> None:
    """Import registry rows from FILE (CSV or XLSX; Chinese or English headers), upserting
    by 统一社会信用代码, geocoding addresses without coordinates; prints a progress line and
    the report."""
    from backend.services.entity_import import import_registry
    from backend.services.errors import ServiceError

    with _session() as session:
        try:
            report = import_registry(
                session,
                file,
                filename=file.name,
                encoding=encoding,
                crs=crs.lower(),
                progress=_progress,
            )
        except ServiceError as exc:
            raise click.ClickException(exc.detail) from exc
        session.commit()
    _print_import(report, report_path, {})


@entities.command("geocode")
@click.option(
    "--unmatched-only", is_flag=True, help="only entities whose address did not match before"
)
def entities_geocode(unmatched_only: bool) -> None:
    """Match the entities' addresses against the standard address library again (after the
    library changed); moves only points that came from an address match."""
    from backend.services import geocoding

    where = "e.location_source = 'unmatched'" if unmatched_only else "true"
    with _session() as session:
        result = geocoding.geocode_entities(session, where=where)
        session.commit()
    click.echo(
        f"checked {result['checked']:,}: matched {result['matched']:,}, changed "
        f"{result['changed']:,}, moved to another cell {result['moved']:,}"
    )


@main.group()
def addresses() -> None:
    """The standard address library (标准地址)."""


@addresses.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_ENCODING_OPTION
@_CRS_OPTION
@_REPORT_OPTION
@click.option("--no-geocode", is_flag=True, help="do not re-match the registry afterwards")
def addresses_import(
    file: Path, encoding: str | None, crs: str, report_path: Path | None, no_geocode: bool
) -> None:
    """Import the library from FILE (CSV or XLSX: 标准地址, 经度, 纬度[, 地址编码]), upserting
    by normalised address, then match the registry's addresses again."""
    from backend.services import geocoding
    from backend.services.address_import import import_standard_addresses
    from backend.services.errors import ServiceError

    with _session() as session:
        try:
            report = import_standard_addresses(
                session,
                file,
                filename=file.name,
                encoding=encoding,
                crs=crs.lower(),
                progress=_progress,
            )
        except ServiceError as exc:
            raise click.ClickException(exc.detail) from exc
        extra = {} if no_geocode else {"geocoding": geocoding.geocode_entities(session)}
        session.commit()
    _print_import(report, report_path, extra)
    if extra:
        g = extra["geocoding"]
        click.echo(
            f"entities re-matched: {g['checked']:,} checked, {g['matched']:,} matched, "
            f"{g['changed']:,} changed, {g['moved']:,} moved to another cell"
        )


@main.command()
@click.option("--once", is_flag=True, help="run the queued jobs, then exit")
@click.option("--poll", default=2.0, show_default=True, type=float, help="seconds between polls")
def worker(once: bool, poll: float) -> None:
    """Run background jobs (registry and address library imports uploaded through the API).
    Start as many as you like, on any host: each job is claimed by exactly one."""
    import time

    from backend.db import make_engine, make_sessionmaker
    from backend.services.import_jobs import run_next

    engine = make_engine(_settings().database_url)
    sessions = make_sessionmaker(engine)
    click.echo("worker started", err=True)
    while True:
        job_id = run_next(sessions, engine)
        if job_id is not None:
            click.echo(f"import job {job_id} finished", err=True)
            continue
        if once:
            return
        time.sleep(poll)


@main.group()
def users() -> None:
    """Accounts."""


@users.command("create")
@click.argument("username")
@click.option(
    "--role",
    required=True,
    type=click.Choice(ROLES),
)
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    envvar="GRIDPATROL_NEW_PASSWORD",
)
@click.option("--town", default=None, help="town code (town dispatcher, department branch)")
@click.option("--community", default=None, help="community code (community dispatcher)")
@click.option("--department", default=None, help="department code (department officer)")
@click.option("--phone", default=None)
def users_create(
    username: str,
    role: str,
    password: str,
    town: str | None,
    community: str | None,
    department: str | None,
    phone: str | None,
) -> None:
    """Create an account (e.g. the first admin)."""
    from backend.services.errors import ServiceError
    from backend.services.users import create_user

    with _session() as session:
        try:
            user = create_user(
                session,
                username,
                password,
                role,
                town_code=town,
                community_code=community,
                department_code=department,
                phone=phone,
            )
        except ServiceError as exc:
            raise click.ClickException(exc.detail) from exc
        session.commit()
        click.echo(f"created user {user.username!r} ({user.role}), id {user.id}")


if __name__ == "__main__":
    main()


@main.group()
def tasks() -> None:
    """Patrol tasks: the generation rules."""


@tasks.command("generate")
@click.argument(
    "rule",
    type=click.Choice(
        ["first_inspection", "licence_checks", "unmatched_addresses", "annual_report_campaign"]
    ),
)
@click.option("--year", type=int, help="annual_report_campaign: the reporting year")
@click.option(
    "--start",
    type=click.DateTime(["%Y-%m-%d"]),
    help="annual_report_campaign: campaign start (default today)",
)
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d"]),
    help="first_inspection: entities established on or after (default 30 days ago)",
)
def tasks_generate(rule: str, year: int | None, start: Any, since: Any) -> None:
    """Run a generation RULE city-wide; idempotent (a second run makes nothing new)."""
    import time

    from backend.services import task_rules
    from backend.services.errors import ServiceError

    options: dict[str, Any] = {}
    if rule == "annual_report_campaign":
        if year is None:
            raise click.UsageError("annual_report_campaign needs --year")
        options = {"year": year, **({"start": start.date()} if start else {})}
    elif rule == "first_inspection" and since:
        options = {"since": since.date()}
    started = time.perf_counter()
    with _session() as session:
        try:
            made = task_rules.run_rule(session, rule, **options)
        except ServiceError as exc:
            raise click.ClickException(exc.detail) from exc
        session.commit()
        counts = task_rules.counts(session)
    click.echo(
        f"{rule}: made {made} in {time.perf_counter() - started:.1f} s; tasks by status {counts}"
    )


@main.command()
@click.option(
    "--red-after",
    default=5,
    show_default=True,
    type=click.IntRange(1, 60),
    help="working days past due that make a red card",
)
def escalate(red_after: int) -> None:
    """督办: yellow cards for overdue tasks and referrals, red ones past `--red-after`
    working days; run it daily (cron or a systemd timer)."""
    from backend.services.escalation import escalate as run

    with _session() as session:
        counts = run(session, red_after_days=red_after)
        session.commit()
    click.echo(f"escalation: {counts}")


from backend.cli_calendar import calendar_group  # noqa: E402  (a group of its own module)

main.add_command(calendar_group)

from backend.cli_outbox import outbox_group  # noqa: E402  (a group of its own module)

main.add_command(outbox_group)

from backend.cli_departments import departments_group  # noqa: E402  (a group of its own module)

main.add_command(departments_group)
