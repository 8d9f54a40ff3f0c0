"""Server-side prepared statements for the phone's hot write path.

psycopg2 sends every statement as text, so PostgreSQL parses and plans it on every call: for
the submission's statements, measured as about half of their time at the server
(benchmarks/README.md, "phone"). `execute_prepared` PREPAREs a statement once per database
connection and EXECUTEs it afterwards, with the same `:name` parameters as `text()`.

A statement is named after its text, so each distinct text is prepared once per connection;
keep values out of the text. A parameter PostgreSQL cannot type from its context needs a CAST.
Behind a pooler that does not keep sessions (PgBouncer in transaction mode) set
GRIDPATROL_PREPARED_STATEMENTS=off: the engine's `gridpatrol_prepared` option, and the same
statements then go as plain text.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Any

from sqlalchemy import CursorResult, TextClause, text
from sqlalchemy.orm import Session

# `:name`, not `::type` nor a word's inner colon
_BIND = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_PREPARED = "gridpatrol_prepared"  # key of the set of names in the connection's info


@lru_cache(maxsize=256)
def _forms(sql: str) -> tuple[str, str, str, tuple[str, ...]]:
    """(name, PREPARE statement, EXECUTE statement with pyformat binds, parameter names)."""
    names: list[str] = []

    def positional(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    body = _BIND.sub(positional, sql)
    name = "gp_" + hashlib.sha256(sql.encode()).hexdigest()[:20]
    binds = ", ".join(f"%({n})s" for n in names)
    execute = f"EXECUTE {name}({binds})" if names else f"EXECUTE {name}"
    return name, f"PREPARE {name} AS {body}", execute, tuple(names)


@lru_cache(maxsize=256)
def _plain(sql: str) -> TextClause:
    return text(sql)


def execute_prepared(session: Session, sql: str, params: dict[str, Any]) -> CursorResult[Any]:
    """Run `sql` (with `:name` parameters; extra keys in `params` are ignored) as a prepared
    statement of the session's connection."""
    connection = session.connection()
    name, prepare, execute, names = _forms(sql)
    if not connection.get_execution_options().get("gridpatrol_prepared", True):
        return connection.execute(_plain(sql), params)
    known: set[str] = connection.connection.info.setdefault(_PREPARED, set())
    if name not in known:
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(prepare)  # no parameters: the text goes as it is
        finally:
            cursor.close()
        known.add(name)
    return connection.exec_driver_sql(execute, {n: params[n] for n in names})
