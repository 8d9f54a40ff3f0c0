"""`gridpatrol departments ...`: list, add, change and deactivate departments (audited as the
operating-system user running the command, role `system`).

Registered by backend/cli.py (`main.add_command(departments_group)`). Builds its sessions like
backend/cli.py does (no import of it, so no cycle); a test may pass its own session factory
as `obj={"session_factory": ...}`. Webhook secrets are read from a hidden prompt (or stdin),
never from the command line where `ps` would show them."""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click


def _factory(ctx: click.Context) -> Any:
    factory = (ctx.obj or {}).get("session_factory") if isinstance(ctx.obj, dict) else None
    if factory is None:
        from backend.config import Settings
        from backend.db import make_engine, make_sessionmaker

        factory = make_sessionmaker(make_engine(Settings.from_env().database_url))
    return factory


@contextmanager
def _writing(ctx: click.Context) -> Iterator[Any]:
    """A Session whose audit actor is the OS user; committed when the block ends, rolled back
    on an error, and a service's refusal (4xx) becomes a one-line error with exit status 1."""
    from backend.services import audit
    from backend.services.errors import ServiceError

    session = _factory(ctx)()
    audit.set_actor(session, audit.Actor(None, f"cli:{getpass.getuser()}", "system"))
    try:
        yield session
        session.commit()
    except ServiceError as exc:
        session.rollback()
        extra = ""
        if exc.extra.get("active_rules"):
            extra = f" (rules {', '.join(map(str, exc.extra['active_rules']))})"
        raise click.ClickException(f"{exc.detail}{extra}") from None
    finally:
        session.close()


def _echo(row: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(row, ensure_ascii=False, default=str))
        return
    flags = [
        "active" if row["active"] else "INACTIVE",
        "town branches" if row["town_branches"] else "",
        f"webhook {row['webhook_url']}" if row.get("webhook_url") else "",
    ]
    click.echo(
        f"{row['code']:<12} v{row['version']:<3} {row['name']}  " + ", ".join(f for f in flags if f)
    )


def _check_url(url: str) -> None:
    from backend.services import departments
    from backend.services.errors import ServiceError

    try:
        departments.check_webhook_url(url)
    except ServiceError as exc:
        raise click.ClickException(exc.detail) from None


def _secret() -> str:
    return click.prompt(
        "Webhook secret (16 to 200 characters)", hide_input=True, confirmation_prompt=False
    )


@click.group("departments")
def departments_group() -> None:
    """Departments as data: the targets of routing rules and referrals."""


@departments_group.command("list")
@click.option("--all", "include_inactive", is_flag=True, help="deactivated ones too")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@click.pass_context
def departments_list(ctx: click.Context, include_inactive: bool, as_json: bool) -> None:
    """List departments by code (with their webhook URLs; never a secret)."""
    from backend.services import departments

    with _factory(ctx)() as session:
        rows = departments.list_departments(
            session, include_inactive=include_inactive, with_webhook_url=True
        )
        session.rollback()
    for row in rows:
        _echo(row, as_json)
    click.echo(f"{len(rows)} department(s)", err=True)


@departments_group.command("add")
@click.argument("code")
@click.argument("name")
@click.option("--town-branches", is_flag=True, help="referrals go to the finding's town branch")
@click.option("--webhook-url", default=None, help="https URL (docs/webhooks.md)")
@click.option("--inactive", is_flag=True, help="add it deactivated")
@click.pass_context
def departments_add(
    ctx: click.Context,
    code: str,
    name: str,
    town_branches: bool,
    webhook_url: str | None,
    inactive: bool,
) -> None:
    """Add a department CODE (e.g. MARITIME) called NAME. With --webhook-url the secret that
    signs its deliveries is prompted for."""
    from backend.services import departments

    values: dict[str, Any] = {
        "code": code,
        "name": name,
        "town_branches": town_branches,
        "active": not inactive,
    }
    if webhook_url:
        _check_url(webhook_url)  # before asking for a secret
        values["webhook_url"] = webhook_url
        values["webhook_secret"] = _secret()
    with _writing(ctx) as session:
        row = departments.create_department(session, values)
    click.echo("added:")
    _echo(row, False)


@departments_group.command("update")
@click.argument("code")
@click.option("--name", default=None)
@click.option("--town-branches/--no-town-branches", default=None)
@click.option("--webhook-url", default=None, help='https URL; "" removes the webhook')
@click.option("--webhook-secret", "set_secret", is_flag=True, help="prompt for a new secret")
@click.option("--activate", is_flag=True, help="reactivate a deactivated department")
@click.option("--if-version", type=int, default=None, help="refuse unless still at this version")
@click.pass_context
def departments_update(
    ctx: click.Context,
    code: str,
    name: str | None,
    town_branches: bool | None,
    webhook_url: str | None,
    set_secret: bool,
    activate: bool,
    if_version: int | None,
) -> None:
    """Change a department's name, town branches, webhook URL or secret, or reactivate it."""
    from backend.services import departments

    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = name
    if town_branches is not None:
        changes["town_branches"] = town_branches
    if webhook_url is not None:
        if webhook_url:
            _check_url(webhook_url)
        changes["webhook_url"] = webhook_url or None
    if set_secret:
        changes["webhook_secret"] = _secret()
    if activate:
        changes["active"] = True
    if not changes:
        raise click.UsageError("Nothing to change: give at least one option.")
    with _writing(ctx) as session:
        version = _version(session, code, if_version)
        row = departments.update_department(session, code, version, changes)
    click.echo("updated:")
    _echo(row, False)


@departments_group.command("deactivate")
@click.argument("code")
@click.option("--if-version", type=int, default=None, help="refuse unless still at this version")
@click.pass_context
def departments_deactivate(ctx: click.Context, code: str, if_version: int | None) -> None:
    """Take a department out of routing and the lists (it is never deleted). Refused while
    active routing rules point at it: repoint or deactivate them first."""
    from backend.services import departments

    with _writing(ctx) as session:
        row = departments.deactivate_department(session, code, _version(session, code, if_version))
    click.echo("deactivated:")
    _echo(row, False)


def _version(session: Any, code: str, wanted: int | None) -> int:
    from backend.services import departments

    return wanted if wanted is not None else departments.get_department(session, code)["version"]
