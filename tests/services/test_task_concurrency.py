"""Two dispatchers reassign the same task at the same moment, on two real connections that
commit: the conditional UPDATE lets exactly one through; the other waits for the row lock,
then finds the version moved on and gets 412 — never a lost update."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.orm import sessionmaker

from backend.domain.uscc import make_code
from backend.services import audit, tasks
from backend.services.errors import PreconditionFailed
from backend.services.scope import CITY
from backend.services.users import create_user


@pytest.fixture()
def committed_task(engine):
    """A worker, an entity and an open task, committed (cleaned up afterwards)."""
    sessions = sessionmaker(bind=engine)
    tag = uuid.uuid4().hex[:8]
    with sessions() as s:
        workers = [
            create_user(s, f"race-{tag}-{i}", "race-password-123", "grid_worker").id
            for i in range(2)
        ]
        entity = s.scalar(
            text(
                "INSERT INTO market_entity (uscc, name, registered_address) "
                "VALUES (:u, '竞态测试店', '东莞市东城街道') RETURNING id"
            ),
            {"u": make_code("9", "2", "441900", f"RC{int(tag, 16) % 10**7:07d}")},
        )
        audit.record(s, "create", "entity", entity, changes={})
        task = s.scalar(
            text(
                "INSERT INTO patrol_task (type, origin, entity_id, due_on) "
                "VALUES ('address_check', 'manual', :e, CURRENT_DATE + 10) RETURNING id"
            ),
            {"e": entity},
        )
        audit.record(s, "create", "task", task, changes={})
        s.commit()
    yield {"task": task, "workers": workers, "sessions": sessions}
    with sessions() as s:
        audit.record(s, "delete", "task", task, changes={})
        audit.record(s, "delete", "entity", entity, changes={})
        s.execute(text("DELETE FROM patrol_task WHERE id = :t"), {"t": task})
        s.execute(text("DELETE FROM market_entity WHERE id = :e"), {"e": entity})
        s.execute(text("UPDATE app_user SET is_active = false WHERE id = ANY(:w)"), {"w": workers})
        for w in workers:
            audit.record(s, "update", "user", w, changes={})
        s.commit()


def _assign(session, task: int, worker: int) -> dict:
    return tasks.transition(
        session,
        task,
        "assign",
        CITY,
        expected_version=1,
        extra_sql=", assignee_id = :worker, assigned_at = now()",
        extra_params={"worker": worker},
    )


def test_two_dispatchers_reassign_at_once(committed_task):
    task, (w1, w2), sessions = (
        committed_task["task"],
        committed_task["workers"],
        committed_task["sessions"],
    )
    first_updated = threading.Event()
    outcome: dict[str, object] = {}

    def first() -> None:
        with sessions() as s:
            outcome["first"] = _assign(s, task, w1)
            first_updated.set()
            time.sleep(0.5)  # hold the row lock while the second one arrives
            s.commit()

    def second() -> None:
        first_updated.wait(5)
        started = time.perf_counter()
        with sessions() as s:
            try:
                outcome["second"] = _assign(s, task, w2)
                s.commit()
            except PreconditionFailed as exc:
                outcome["second"] = exc
            outcome["waited"] = time.perf_counter() - started

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert outcome["first"]["status"] == "assigned"
    assert isinstance(outcome["second"], PreconditionFailed), outcome["second"]
    assert outcome["waited"] >= 0.3  # it really waited for the first one's lock
    with sessions() as s:
        row = s.execute(
            text("SELECT assignee_id, version FROM patrol_task WHERE id = :t"), {"t": task}
        ).one()
        events = s.scalar(
            text(
                "SELECT count(*) FROM audit_event WHERE object_type = 'task' "
                "AND object_id = :t AND action = 'assign'"
            ),
            {"t": str(task)},
        )
    assert (row.assignee_id, row.version, events) == (w1, 2, 1)
