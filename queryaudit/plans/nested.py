"""Statements run one level down, where pg_stat_statements' default track = top does not
look: inside a DO block of constant text that EXECUTEs a statement read from a
transaction-local setting.

pg_stat_statements records each top-level statement by its shape, and at parse analysis
gives every statement with a constant (from 18 on, also a placeholder) an entry of its
own, invisible but holding a slot until a full table deallocates. The audit's own reads
(rows sampled for parameter values, counts of one condition) and its PREPAREs would each
be such an entry; nested, the only texts recorded are the constant ones here. Needs
plpgsql (there by default); without it the statement runs at top level as before.
"""

from __future__ import annotations

import json
import weakref

import psycopg
from psycopg import sql

from queryaudit.connect import marked, scalar

_HAS_PLPGSQL = (
    "SELECT EXISTS (SELECT 1 FROM pg_language WHERE lanname = 'plpgsql' AND has_language_privilege(oid, 'USAGE'))"
)
_RUN = "DO $$BEGIN EXECUTE current_setting('queryaudit.nested'); END$$"
_READ = (
    "DO $$DECLARE result text; BEGIN EXECUTE current_setting('queryaudit.nested') INTO result; "
    "PERFORM set_config('queryaudit.result', coalesce(result, '[]'), true); END$$"
)
_SET_STATEMENT = "SELECT set_config('queryaudit.nested', %s, %s)"
_RESULT = "SELECT current_setting('queryaudit.result')"
_CAN_NEST: weakref.WeakKeyDictionary[psycopg.Connection, bool] = weakref.WeakKeyDictionary()


def can_nest(conn: psycopg.Connection) -> bool:
    """Whether this session can run statements in a DO block (plpgsql there and usable);
    asked once per connection."""
    known = _CAN_NEST.get(conn)
    if known is None:
        known = _CAN_NEST[conn] = bool(scalar(conn, _HAS_PLPGSQL))
    return known


def run_nested(conn: psycopg.Connection, statement: sql.Composed, local: bool = True) -> None:
    """Run `statement` (no result) nested: inside the caller's transaction, or (`local`
    false) in a session outside one, the text then set for the session."""
    if not can_nest(conn):
        conn.execute(statement)
        return
    # marked: under track = all the nested statement is recorded, and the mark keeps it
    # out of the workload, as it does every statement the auditor sends
    conn.execute(_SET_STATEMENT, (marked(statement.as_string(conn)), local))
    conn.execute(_RUN)


def read_nested(conn: psycopg.Connection, query: str, columns: int) -> list[tuple]:
    """The rows of a read-only `query` of `columns` outputs, read nested (as JSON through
    a setting). Inside the caller's transaction, under its statement_timeout."""
    if not can_nest(conn):
        return conn.execute(query).fetchall()
    names = ", ".join(f"c{i}" for i in range(columns))
    wrapped = f"SELECT json_agg(json_build_array({names}))::text FROM ({query}) AS r({names})"
    conn.execute(_SET_STATEMENT, (marked(wrapped), True))
    conn.execute(_READ)
    return [tuple(row) for row in json.loads(scalar(conn, _RESULT))]


def nested_scalar(conn: psycopg.Connection, query: str):
    """The value of a one-column query's first row, read nested (read_nested); None without a row."""
    rows = read_nested(conn, query, 1)
    return rows[0][0] if rows else None
