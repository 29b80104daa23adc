"""EXPLAIN primitives shared by plan capture, the index advisor, verification and
migration review, built to leave pg_stat_statements as they found it.

pg_stat_statements records every EXPLAIN: it is a utility statement, and with the
default track_utility = on each distinct text is an entry of its own (PostgreSQL 14-15
key a utility statement by a hash of its text, 16+ jumble it, so a different table or
placeholder count is a different entry either way). An advisor run plans thousands of
times; one entry per plan fills the view and evicts the workload's own statements. The
auditing role cannot turn track_utility off, so every plan here is sent as the same few
texts, whatever the statement and its values:

    SELECT set_config('queryaudit.values', $1, true)          -- the values, as one text[]
    SELECT set_config('queryaudit.nested', $1, true)          -- PREPARE queryaudit_stmt(text[]) AS
                                                              --   <statement, $n -> 'v'::type>
    DO $$BEGIN EXECUTE current_setting('queryaudit.nested'); END$$
    EXPLAIN (<options>) EXECUTE queryaudit_stmt(current_setting('queryaudit.values')::text[])
    DEALLOCATE queryaudit_stmt

pg_stat_statements never records PREPARE or EXECUTE themselves (its utility hook skips
them), but it does look at the statement a PREPARE parses: one with a constant or (from
18 on) a placeholder gets a "sticky" entry at parse analysis, invisible in the view
(never executed at top level) yet holding a slot, so a full table deallocates. The
PREPARE therefore runs nested in a DO block of constant text (queryaudit.plans.nested),
where the default track = top does not look; without plpgsql it is sent as it is, and
each statement planned leaves its sticky entry. So the values can be written into the
prepared text as typed literals, the constants the workload ran (from_values_array); a
generic plan reads them from the text[] parameter instead, `($1[n])::type`, under
plan_cache_mode = force_generic_plan. The EXPLAIN text depends only on the options, and
the set_config is a SELECT whose values are bind parameters. Settings go through
set_config too: `SET LOCAL statement_timeout = '123ms'` is one entry per value on
PostgreSQL 15. Measured (tests/test_pgss_untouched.py): with the default
pg_stat_statements.track = top the explain machinery adds at most EXPLAIN_ENTRIES
entries however many statements it plans, and no sticky ones; with track = all, each
statement planned adds one more (its nested execution, toplevel = false).
"""

from __future__ import annotations

import re

import psycopg
from pglast.parser import scan
from psycopg import sql

from queryaudit.connect import first_column, scalar
from queryaudit.plans.nested import can_nest, run_nested
from queryaudit.plans.plannable import make_plannable

STATEMENT_NAME = "queryaudit_stmt"  # the one prepared-statement name queryaudit uses
# Texts the mechanism sends, per EXPLAIN options string: set_config (values, the PREPARE,
# settings), DO, EXPLAIN EXECUTE, DEALLOCATE (recorded from 17 on), BEGIN, ROLLBACK.
EXPLAIN_ENTRIES = 7
_PLACEHOLDER = re.compile(r"\$(\d+)")
_SET_LOCAL = re.compile(r"^\s*SET\s+LOCAL\s+([A-Za-z_][\w.]*)\s*(?:=|TO)\s*'((?:[^']|'')*)'\s*$", re.IGNORECASE)

_SET_VALUES = "SELECT set_config('queryaudit.values', %s, %s)"
_SET_SETTING = SET_LOCAL_SQL = "SELECT set_config(%s, %s, true)"  # SET LOCAL, one pgss entry for any value


def parameter_count(query: str) -> int:
    return max((int(n) for n in _PLACEHOLDER.findall(query)), default=0)


def _server_version(conn: psycopg.Connection) -> int:
    return conn.info.server_version


def parameter_types(conn: psycopg.Connection, query: str) -> list[str]:
    """The types PostgreSQL infers for $1..$n (PREPARE + pg_prepared_statements)."""
    with conn.transaction(force_rollback=True):
        run_nested(conn, sql.SQL("PREPARE {} AS ").format(sql.Identifier(STATEMENT_NAME)) + sql.SQL(query))
        types = scalar(
            conn, "SELECT parameter_types::text[] FROM pg_prepared_statements WHERE name = %s", (STATEMENT_NAME,)
        )
        conn.execute(sql.SQL("DEALLOCATE {}").format(sql.Identifier(STATEMENT_NAME)))
    return [_UNBOUNDED.get(t, t) for t in types] if types else []


# A type name as pg_prepared_statements prints it may not mean the same in a cast:
# `'Brand#33'::character` is char(1) and keeps 'B', `::bit` is bit(1).
_UNBOUNDED = {"character": "bpchar", "bit": "bit varying"}


def _prepare(conn: psycopg.Connection, prepare_sql: sql.Composed, values_array: str, local: bool) -> None:
    """Set the values, then PREPARE nested (queryaudit.plans.nested): no sticky entry."""
    conn.execute(_SET_VALUES, (values_array, local))
    run_nested(conn, prepare_sql, local)


def from_values_array(query: str, types: list[str | None], values: list | None = None) -> str:
    """`query` with each $n read from the one text[] parameter, `($1[n])::type` (a generic
    plan sees a parameter), or with `values`, written in as typed literals, `'v'::type` (a
    custom plan: the planner then sees the constants the workload ran, where the cast of
    a parameter to a type whose input function is only stable, such as date, is not
    folded and costs its evaluation on every row, as the literal's does not). On
    PostgreSQL's tokens, so a `$1` inside a string or a comment stays as it is."""
    edits = []
    for token in scan(query):  # offsets in characters (pglast converts the scanner's bytes)
        if token.name != "PARAM":
            continue
        n = int(query[token.start + 1 : token.end + 1])
        kind = (types[n - 1] if n <= len(types) else None) or "unknown"
        if values is None:
            edits.append((token.start, token.end, f"(($1[{n}])::{kind})"))
        else:
            edits.append((token.start, token.end, _literal(values[n - 1] if n <= len(values) else None, kind)))
    for start, end, new in sorted(edits, reverse=True):
        query = query[:start] + new + query[end + 1 :]
    return query


def _literal(value, kind: str) -> str:
    """A typed SQL literal; an untyped one where the type is unknown. A backslash is written
    in an E'' string, which reads the same whatever standard_conforming_strings says."""
    if value is None:
        text = "NULL"
    elif "\\" in (value := str(value)):
        text = "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
    else:
        text = "'" + value.replace("'", "''") + "'"
    return f"({text}::{kind})" if kind != "unknown" else f"({text})"


def _values_array(values) -> str:
    """A text[] literal: every value as text, NULL as NULL."""

    def item(v):
        if v is None:
            return "NULL"
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "{" + ",".join(item(v) for v in values) + "}"


def _setting(conn: psycopg.Connection, statement, params) -> tuple:
    """A `SET LOCAL name = 'value'` as set_config (one pg_stat_statements entry for every
    value); anything else as given."""
    text = statement if isinstance(statement, str) else statement.as_string(conn)
    found = _SET_LOCAL.match(text) if params is None else None
    if found:
        return _SET_SETTING, (found.group(1), found.group(2).replace("''", "'"))
    return statement, params


def prepare(conn: psycopg.Connection, query: str, values=None, types=None, generic: bool = False) -> None:
    """PREPARE `query` as the one statement name, its $1..$n bound to `values` (typed
    literals of `types`, inferred when not given; `generic`: read from the values setting).
    Inside the caller's transaction; the caller DEALLOCATEs (`deallocate`)."""
    nparams = parameter_count(query)
    values = list(values or [])[:nparams]
    values += [None] * (nparams - len(values))
    types = list(types or [])
    if nparams and not types:
        types = parameter_types(conn, query)
    _prepare(conn, _prepare_sql(query, types, None if generic else values), _values_array(values), True)


def _prepare_sql(query: str, types: list[str | None], values: list | None) -> sql.Composed:
    # (text[]) even where the values are written in: a statement without parameters gets
    # a cached generic plan, blind to hypothetical indexes made after it.
    return sql.SQL("PREPARE {}(text[]) AS ").format(sql.Identifier(STATEMENT_NAME)) + sql.SQL(
        from_values_array(query, types, values)
    )


def explain_execute(conn: psycopg.Connection, options: str) -> dict:
    """EXPLAIN (`options`) of the prepared statement: the same text for every statement."""
    return plan_document(
        scalar(
            conn,
            sql.SQL("EXPLAIN ({}) EXECUTE {}(current_setting('queryaudit.values')::text[])").format(
                sql.SQL(options), sql.Identifier(STATEMENT_NAME)
            ),
        )
    )


def plan_document(explained) -> dict:
    """EXPLAIN (FORMAT JSON) answers a one-element array: its document."""
    return explained[0] if isinstance(explained, list) else explained


def deallocate(conn: psycopg.Connection) -> None:
    """DEALLOCATE the one name when it is there (never inside an aborted transaction)."""
    if conn.broken or conn.closed:
        return
    try:
        conn.execute(sql.SQL("DEALLOCATE {}").format(sql.Identifier(STATEMENT_NAME)))
    except psycopg.errors.InvalidSqlStatementName:
        pass  # the PREPARE itself failed


def set_local(conn: psycopg.Connection, name: str, value: str) -> None:
    """SET LOCAL through set_config: one pg_stat_statements entry whatever the value."""
    conn.execute(_SET_SETTING, (name, value))


def explain_prepared(
    conn: psycopg.Connection, query: str, options: str, values=None, types=None, setup=(), generic: bool = False
) -> dict:
    """EXPLAIN (`options`) of `query` (placeholders $1..$n bound to `values`, cast to
    `types`) through the one prepared statement, in a transaction always rolled back,
    after the `setup` statements. The prepared statement is deallocated after the
    rollback, whatever happened (PREPARE is not transactional)."""
    try:
        with conn.transaction(force_rollback=True):
            for statement, params in setup:
                conn.execute(*_setting(conn, statement, params))
            if generic:
                set_local(conn, "plan_cache_mode", "force_generic_plan")
            prepare(conn, query, values, types, generic)
            return explain_execute(conn, options)
    finally:
        deallocate(conn)


def explain_generic(conn: psycopg.Connection, query: str, options: str = "FORMAT JSON") -> dict:
    """The generic plan (costs, no execution) of a statement that may carry $n placeholders.

    Returns the top object of EXPLAIN (FORMAT JSON): {"Plan": {...}, ...}. The caller's
    session settings (e.g. HypoPG's hypothetical indexes) apply. Not EXPLAIN
    (GENERIC_PLAN) on 16+: its text is the statement's, one entry per statement.
    """
    # pg_stat_statements' text as the server can plan it (typed literals, GROUP BY
    # constants, untyped placeholders): the advisor and migration review plan it too.
    query = make_plannable(query).text
    return explain_prepared(conn, query, options, generic=parameter_count(query) > 0)


def plan_cost(plan: dict) -> float:
    return float(plan["Plan"]["Total Cost"])


def explain_rolled_back(conn: psycopg.Connection, query: str, options: str, values=None, types=None, setup=()) -> dict:
    """EXPLAIN (`options`) of `query` in a transaction that is always rolled back, after the
    `setup` statements ((SQL, params) pairs: SET LOCAL limits and settings).

    With `values`, the values are bound to the statement's placeholders (cast to
    `types`) and the text itself is never rewritten beyond that binding."""
    return explain_prepared(conn, query, options, values, types, setup)


class Planner:
    """Plans many statements, each many times, in a session of its own (the advisor):
    the one prepared statement is kept while the same statement and values are planned
    in a row. Custom plans are forced, so each EXECUTE plans afresh and sees the
    session's current hypothetical indexes; a generic plan would be cached by the
    prepared statement, so a generic plan is prepared anew each time. Settings are
    session-level here and put back on close. A new statement costs one round trip
    (pipeline mode: DEALLOCATE, the values, PREPARE and EXPLAIN sent together), and
    parameter types are asked once per statement text."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn
        self.current: tuple | None = None
        self.saved = scalar(conn, "SELECT current_setting('plan_cache_mode')")
        self.mode: str | None = None
        self.types: dict[str, list[str]] = {}
        self.plans = 0

    def plan(self, query: str, values=None, types=None, generic: bool = False, options: str = "FORMAT JSON") -> dict:
        key = (query, tuple(values or ()), generic)
        if key == self.current and not generic:
            self.plans += 1
            return explain_execute(self.conn, options)
        nparams = parameter_count(query)
        vals = list(values or [])[:nparams]
        vals += [None] * (nparams - len(vals))
        if nparams and not types:
            if query not in self.types:
                if self.current is not None:  # parameter_types prepares the same name
                    deallocate(self.conn)
                    self.current = None
                self.types[query] = parameter_types(self.conn, query)
            types = self.types[query]
        mode = "force_generic_plan" if generic else "force_custom_plan"
        prepared, self.current = self.current is not None, None
        can_nest(self.conn)  # asked once, before the pipeline
        try:
            with self.conn.pipeline():
                if prepared:
                    self.conn.execute(sql.SQL("DEALLOCATE {}").format(sql.Identifier(STATEMENT_NAME)))
                if mode != self.mode:
                    self.conn.execute(_SET_SESSION, ("plan_cache_mode", mode))
                prepared_sql = _prepare_sql(query, types or [], None if generic else vals)
                _prepare(self.conn, prepared_sql, _values_array(vals), False)
                cur = self.conn.cursor(row_factory=first_column).execute(
                    sql.SQL("EXPLAIN ({}) EXECUTE {}(current_setting('queryaudit.values')::text[])").format(
                        sql.SQL(options), sql.Identifier(STATEMENT_NAME)
                    )
                )
        except psycopg.Error:
            # Which of the batch ran is unknown: start clean next time.
            self.mode = None
            deallocate(self.conn)
            raise
        self.mode, self.current = mode, key
        self.plans += 1
        return plan_document(cur.fetchone())

    def close(self) -> None:
        if self.current is not None:
            deallocate(self.conn)
        self.current = None
        if not (self.conn.broken or self.conn.closed):
            try:
                self.conn.execute(_SET_SESSION, ("plan_cache_mode", self.saved))
            except psycopg.Error:
                pass


_SET_SESSION = "SELECT set_config(%s, %s, false)"
