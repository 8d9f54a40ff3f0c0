"""The audit trail's guarantees live in the database: tested with raw SQL and real commits."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError


@pytest.fixture()
def as_app(database_url):
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture()
def as_owner(owner_url):
    engine = create_engine(owner_url)
    yield engine
    engine.dispose()


def _insert_event(conn, object_id: str) -> int:
    return conn.scalar(
        text(
            "INSERT INTO audit_event (actor_username, actor_role, action, object_type, object_id, "
            "changes) VALUES ('test', 'system', 'create', 'probe', :i, '{}') RETURNING id"
        ),
        {"i": object_id},
    )


def test_update_and_delete_of_audit_rows_fail_even_for_the_owner(as_owner):
    with as_owner.begin() as conn:
        event_id = _insert_event(conn, "owner-probe")
    for sql in (
        "UPDATE audit_event SET action = 'tampered' WHERE id = :i",
        "DELETE FROM audit_event WHERE id = :i",
    ):
        with pytest.raises(DBAPIError, match="append-only"), as_owner.begin() as conn:
            conn.execute(text(sql), {"i": event_id})
    with pytest.raises(DBAPIError, match="append-only"), as_owner.begin() as conn:
        conn.execute(text("TRUNCATE audit_event CASCADE"))
    with as_owner.connect() as conn:
        assert (
            conn.scalar(text("SELECT action FROM audit_event WHERE id = :i"), {"i": event_id})
            == "create"
        )


def test_the_app_role_can_append_but_not_change_or_bypass(as_app, owner_url, database_url):
    from sqlalchemy.engine import make_url

    if make_url(owner_url).username == make_url(database_url).username:
        pytest.fail(
            "the suite must run the app as a role other than the schema owner "
            "(make test sets GRIDPATROL_MIGRATION_URL)"
        )
    with as_app.begin() as conn:
        event_id = _insert_event(conn, "app-probe")
    for sql in (
        "UPDATE audit_event SET action = 'tampered' WHERE id = :i",
        "DELETE FROM audit_event WHERE id = :i",
        "ALTER TABLE audit_event DISABLE TRIGGER audit_event_no_update_delete",
        "DROP TRIGGER audit_event_no_update_delete ON audit_event",
        "ALTER TABLE app_user DISABLE TRIGGER app_user_audited",
        "SET session_replication_role = replica",
    ):
        with (
            pytest.raises(DBAPIError, match=r"permission denied|must be owner"),
            as_app.begin() as conn,
        ):
            conn.execute(text(sql), {"i": event_id})


def test_a_change_without_its_audit_event_cannot_commit(as_app):
    with pytest.raises(DBAPIError, match="has no audit event"), as_app.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO app_user (username, password_hash, role) "
                "VALUES ('sneaky', 'x', 'admin')"
            )
        )
    with as_app.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM app_user WHERE username = 'sneaky'")) == 0
    # with its event in the same transaction, the same change commits
    with as_app.begin() as conn:
        user_id = conn.scalar(
            text(
                "INSERT INTO app_user (username, password_hash, role) "
                "VALUES ('honest', 'x', 'auditor') RETURNING id"
            )
        )
        conn.execute(
            text(
                "INSERT INTO audit_event (actor_username, actor_role, action, object_type, "
                "object_id, changes) VALUES ('test', 'system', 'create', 'user', :i, '{}')"
            ),
            {"i": str(user_id)},
        )
    # an event written in an earlier transaction does not cover a later change
    with pytest.raises(DBAPIError, match="has no audit event"), as_app.begin() as conn:
        conn.execute(text("UPDATE app_user SET display_name = 'x' WHERE id = :i"), {"i": user_id})
