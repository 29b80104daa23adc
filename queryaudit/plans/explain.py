"""EXPLAIN primitives shared by plan capture, the index advisor and migration review.

Normalized pg_stat_statements texts carry $n placeholders. A generic plan needs no
values: PostgreSQL 16+ has EXPLAIN (GENERIC_PLAN); before 16 the same plan comes from
PREPARE under plan_cache_mode = force_generic_plan and EXPLAIN EXECUTE with NULLs
(a generic plan never looks at the values). Everything runs in a transaction that is
rolled back, so a PREPARE or a SET LOCAL never outlives the call.
"""
from __future__ import annotations

import itertools
import re

import psycopg
from psycopg import sql

GENERIC_PLAN_VERSION = 160000
_names = itertools.count()
_PLACEHOLDER = re.compile(r"\$(\d+)")


def parameter_count(query: str) -> int:
    return max((int(n) for n in _PLACEHOLDER.findall(query)), default=0)


def _server_version(conn: psycopg.Connection) -> int:
    return conn.info.server_version


def parameter_types(conn: psycopg.Connection, query: str) -> list[str]:
    """The types PostgreSQL infers for $1..$n (PREPARE + pg_prepared_statements)."""
    name = f"queryaudit_types_{next(_names)}"
    with conn.transaction(force_rollback=True):
        conn.execute(sql.SQL("PREPARE {} AS ").format(sql.Identifier(name)) + sql.SQL(query))
        row = conn.execute("SELECT parameter_types::text[] FROM pg_prepared_statements WHERE name = %s",
                           (name,)).fetchone()
        conn.execute(sql.SQL("DEALLOCATE {}").format(sql.Identifier(name)))
    return [_UNBOUNDED.get(t, t) for t in row[0]] if row else []


# A type name as pg_prepared_statements prints it may not mean the same in a cast:
# `'Brand#33'::character` is char(1) and keeps 'B', `::bit` is bit(1).
_UNBOUNDED = {"character": "bpchar", "bit": "bit varying"}


def explain_generic(conn: psycopg.Connection, query: str, options: str = "FORMAT JSON") -> dict:
    """The generic plan (costs, no execution) of a statement that may carry $n placeholders.

    Returns the top object of EXPLAIN (FORMAT JSON): {"Plan": {...}, ...}. The caller's
    session settings (e.g. HypoPG's hypothetical indexes) apply.
    """
    from queryaudit.plans.plannable import make_plannable

    # pg_stat_statements' text as the server can plan it (typed literals, GROUP BY
    # constants, untyped placeholders): the advisor and migration review plan it too.
    query = make_plannable(query).text
    nparams = parameter_count(query)
    with conn.transaction(force_rollback=True):
        if nparams == 0:
            row = conn.execute(sql.SQL("EXPLAIN ({}) ").format(sql.SQL(options)) + sql.SQL(query)).fetchone()
        elif _server_version(conn) >= GENERIC_PLAN_VERSION:
            row = conn.execute(sql.SQL("EXPLAIN (GENERIC_PLAN, {}) ").format(sql.SQL(options)) + sql.SQL(query)
                               ).fetchone()
        else:
            name = f"queryaudit_generic_{next(_names)}"
            conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            conn.execute(sql.SQL("PREPARE {} AS ").format(sql.Identifier(name)) + sql.SQL(query))
            nulls = sql.SQL(", ").join([sql.NULL] * nparams)
            row = conn.execute(sql.SQL("EXPLAIN ({}) EXECUTE {}({})").format(
                sql.SQL(options), sql.Identifier(name), nulls)).fetchone()
            conn.execute(sql.SQL("DEALLOCATE {}").format(sql.Identifier(name)))
    plan = row[0]
    return plan[0] if isinstance(plan, list) else plan


def plan_cost(plan: dict) -> float:
    return float(plan["Plan"]["Total Cost"])


_prepared = itertools.count()


def explain_rolled_back(conn: psycopg.Connection, query: str, options: str, values=None, types=None,
                        setup=()) -> dict:
    """EXPLAIN (`options`) of `query` in a transaction that is always rolled back, after the
    `setup` statements ((SQL, params) pairs: SET LOCAL limits and settings).

    With `values`, the statement is PREPAREd and EXECUTEd: the values travel as literals
    cast to `types` and the text itself is never rewritten. PREPARE is not transactional,
    so the prepared statement is deallocated after the rollback, whatever happened."""
    name = f"queryaudit_explain_{next(_prepared)}" if values else None
    try:
        with conn.transaction(force_rollback=True):
            for statement, params in setup:
                conn.execute(statement, params)
            explain = sql.SQL("EXPLAIN ({}) ").format(sql.SQL(options))
            if name is None:
                row = conn.execute(explain + sql.SQL(query)).fetchone()
            else:
                conn.execute(sql.SQL("PREPARE {} AS ").format(sql.Identifier(name)) + sql.SQL(query))
                args = sql.SQL(", ").join(
                    sql.SQL("{}::{}").format(sql.Literal(v), sql.SQL(t or "unknown"))
                    for v, t in zip(values, types or [None] * len(values), strict=False))
                row = conn.execute(explain + sql.SQL("EXECUTE {}({})").format(sql.Identifier(name), args)).fetchone()
    finally:
        if name is not None and not conn.broken:
            try:
                conn.execute(sql.SQL("DEALLOCATE {}").format(sql.Identifier(name)))
            except psycopg.Error:
                pass  # never prepared (the PREPARE itself failed)
    plan = row[0]
    return plan[0] if isinstance(plan, list) else plan
