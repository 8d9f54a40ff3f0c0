"""`gridpatrol outbox ...`: deliver the outbox to departments' webhooks, list it, replay
dead letters.

Registered by backend/cli.py (`main.add_command(outbox_group)`). Builds its sessions like
backend/cli.py does (no import of it, so no cycle); a test may pass its own session factory
as `obj={"sessionmaker": ...}`."""

from __future__ import annotations

import getpass
import json
import time
from typing import Any

import click


def _sessionmaker(ctx: click.Context) -> Any:
    factory = (ctx.obj or {}).get("sessionmaker") if isinstance(ctx.obj, dict) else None
    if factory is None:
        from backend.config import Settings
        from backend.db import make_engine, make_sessionmaker

        factory = make_sessionmaker(make_engine(Settings.from_env().database_url))
    return factory


def _session(ctx: click.Context) -> Any:
    """A Session whose audit actor is the operating-system user running the command."""
    from backend.services import audit

    session = _sessionmaker(ctx)()
    audit.set_actor(session, audit.Actor(None, f"cli:{getpass.getuser()}", "system"))
    return session


@click.group("outbox")
def outbox_group() -> None:
    """Webhook deliveries to departments' systems (the outbox)."""


@outbox_group.command("run")
@click.option("--once", is_flag=True, help="deliver what is due now, then exit")
@click.option("--poll", default=2.0, show_default=True, type=float, help="seconds between polls")
@click.option("--batch", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--department", default=None, help="only this department's events")
@click.pass_context
def outbox_run(
    ctx: click.Context, once: bool, poll: float, batch: int, department: str | None
) -> None:
    """Deliver due events (signed POSTs, retried with backoff, dead-lettered after the
    limit). Start as many as you like, on any host: each event is claimed by one at a time."""
    from backend.services import outbox

    sessions = _sessionmaker(ctx)
    click.echo("outbox runner started", err=True)
    total: dict[str, int] = {}
    try:
        while True:
            counts = outbox.deliver_due(sessions, batch=batch, department=department)
            if counts["claimed"]:
                for key, value in counts.items():
                    total[key] = total.get(key, 0) + value
                click.echo(_summary(counts), err=True)
                continue  # there may be more due
            if once:
                break
            time.sleep(max(poll, 0.1))
    except KeyboardInterrupt:
        pass
    click.echo(f"outbox runner done: {_summary(total) if total else 'nothing was due'}")


def _summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items() if v or k == "claimed")


@outbox_group.command("list")
@click.option(
    "--status", default=None, type=click.Choice(["pending", "delivered", "dead", "skipped"])
)
@click.option("--department", default=None)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line, with payloads")
@click.pass_context
def outbox_list(
    ctx: click.Context, status: str | None, department: str | None, limit: int, as_json: bool
) -> None:
    """List events, newest first; `--status dead` shows the dead letters."""
    from backend.services import outbox

    with _session(ctx) as session:
        events, total = outbox.list_events(
            session, status=status, department=department, limit=limit, with_policy_detail=True
        )
        session.rollback()
    for e in events:
        if as_json:
            click.echo(json.dumps(e, ensure_ascii=False, default=str))
            continue
        error = f"  {e['last_error']}" if e["last_error"] else ""
        if e.get("policy_detail"):
            error += f" ({e['policy_detail']})"
        click.echo(
            f"{e['event_id']}  {e['status']:<9} {e['department'] or '-':<10} "
            f"{e['event_type']:<24} attempts {e['attempts']:<2} "
            f"{e['created_at']:%Y-%m-%d %H:%M:%S%z}{error}"
        )
    click.echo(f"{len(events)} of {total} event(s)", err=True)


@outbox_group.command("replay")
@click.argument("event_ids", nargs=-1, required=True)
@click.pass_context
def outbox_replay(ctx: click.Context, event_ids: tuple[str, ...]) -> None:
    """Send dead events again (back to pending, attempts reset; audited)."""
    import uuid

    from backend.services import outbox

    try:
        ids = [uuid.UUID(i) for i in event_ids]
    except ValueError as exc:
        raise click.BadParameter("event ids are UUIDs", param_hint="EVENT_IDS") from exc
    with _session(ctx) as session:
        replayed = outbox.replay_events(session, ids)
        session.commit()
    click.echo(f"replayed {len(replayed)} of {len(set(ids))} event(s)")
    for i in sorted(set(ids) - set(replayed), key=str):
        click.echo(f"  not replayed (unknown or not dead): {i}")
