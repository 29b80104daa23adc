"""--verify-real for statistics fixes: on a writable scratch or staging copy only.

CREATE STATISTICS and ANALYZE run inside a transaction that is always rolled back, between
EXPLAIN ANALYZE runs of the statement: the new statistics (pg_statistic,
pg_statistic_ext_data rows are transactional) are gone afterwards. ANALYZE does update
pg_class.reltuples/relpages in place, which a rollback does not undo: hence scratch copies.
"""
from __future__ import annotations

from statistics import median

import pglast
import psycopg
from psycopg import sql

from queryaudit.verify import logic
from queryaudit.verify.measure import OPTIONS, Runner
from queryaudit.verify.model import FixMeasurement


def _explain(conn: psycopg.Connection, query: str, values, types, name: str | None) -> dict:
    if name is None:
        row = conn.execute(sql.SQL("EXPLAIN ({}) ").format(sql.SQL(OPTIONS)) + sql.SQL(query)).fetchone()
    else:
        args = sql.SQL(", ").join(sql.SQL("{}::{}").format(sql.Literal(v), sql.SQL(t or "unknown"))
                                  for v, t in zip(values, types, strict=False))
        row = conn.execute(sql.SQL("EXPLAIN ({}) EXECUTE {}({})").format(sql.SQL(OPTIONS), sql.Identifier(name), args)
                           ).fetchone()
    plan = row[0]
    return plan[0] if isinstance(plan, list) else plan


def _deallocate(conn: psycopg.Connection, name: str) -> None:
    if conn.execute("SELECT 1 FROM pg_prepared_statements WHERE name = %s", (name,)).fetchone():
        conn.execute(sql.SQL("DEALLOCATE {}").format(sql.Identifier(name)))


def scan_q_error(explain: dict, relation: str, alias: str | None) -> float | None:
    """The worst q-error of the scans of `relation` (under `alias`, when given) in a plan."""
    from queryaudit.plans.model import build

    errors = [n.q_error for n in build(explain).nodes if n.raw.get("Relation Name") == relation
              and (alias is None or n.alias == alias) and n.q_error is not None]
    return round(max(errors), 1) if errors else None


def measure_statistics(conn: psycopg.Connection, runner: Runner, m: FixMeasurement, query: str, values, types,
                       fix_sql: str, runs: int, scan: tuple[str, str | None] | None = None) -> None:
    """Time the statement before and after `fix_sql` (rolled back); with `scan` (relation,
    alias), the misestimated scan's q-error before and after too."""
    statements = [str(s).strip() for s in pglast.split(fix_sql) if str(s).strip()]
    name = "queryaudit_verify_stats" if values else None
    prepared = False
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(
                sql.Literal(f"{runner.timeout_ms()}ms")))
            conn.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            if name:
                conn.execute(sql.SQL("PREPARE {} AS ").format(sql.Identifier(name)) + sql.SQL(query))
                prepared = True
            _explain(conn, query, values, types, name)  # warm-up
            before = [_explain(conn, query, values, types, name) for _ in range(runs)]
            for text in statements:
                conn.execute(text)
            _explain(conn, query, values, types, name)
            after = [_explain(conn, query, values, types, name) for _ in range(runs)]
    finally:
        # DEALLOCATE after the transaction, not inside one an error aborted (there it failed,
        # hid the error, and the measurement was lost as a failed DEALLOCATE). Whether the
        # statement is still there after the rollback varies: ask.
        if prepared:
            _deallocate(conn, name)
    m.before_ms = [round(logic.execution_ms(p), 3) for p in before]
    m.after_ms = [round(logic.execution_ms(p), 3) for p in after]
    m.before = {"ms": round(median(m.before_ms), 3), **logic.buffers(before[-1])}
    m.after = {"ms": round(median(m.after_ms), 3), **logic.buffers(after[-1])}
    m.outcome, _ = logic.verdict(m.before_ms, m.after_ms)
    m.detail = (f"--verify-real: {'; '.join(statements)} applied in a rolled-back transaction, "
                f"{runs} EXPLAIN ANALYZE runs before and after")
    if scan is not None:
        m.before["q_error"] = scan_q_error(before[-1], *scan)
        m.after["q_error"] = scan_q_error(after[-1], *scan)
        if m.before["q_error"] is not None and m.after["q_error"] is not None:
            m.detail += f"; the scan's row estimate q-error {m.before['q_error']:g} -> {m.after['q_error']:g}"
