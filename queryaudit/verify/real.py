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

from queryaudit.plans.explain import deallocate, explain_execute, prepare, set_local
from queryaudit.plans.model import build
from queryaudit.verify import logic
from queryaudit.verify.measure import OPTIONS, Runner
from queryaudit.verify.model import FixMeasurement


def _explain(conn: psycopg.Connection, query: str) -> dict:
    return explain_execute(conn, OPTIONS)


def scan_q_error(explain: dict, relation: str, alias: str | None) -> float | None:
    """The worst q-error of the scans of `relation` (under `alias`, when given) in a plan."""
    errors = [
        n.q_error
        for n in build(explain).nodes
        if n.raw.get("Relation Name") == relation and (alias is None or n.alias == alias) and n.q_error is not None
    ]
    return round(max(errors), 1) if errors else None


def measure_statistics(
    conn: psycopg.Connection,
    runner: Runner,
    m: FixMeasurement,
    query: str,
    values,
    types,
    fix_sql: str,
    runs: int,
    scan: tuple[str, str | None] | None = None,
) -> None:
    """Time the statement before and after `fix_sql` (rolled back); with `scan` (relation,
    alias), the misestimated scan's q-error before and after too."""
    statements = [str(s).strip() for s in pglast.split(fix_sql) if str(s).strip()]
    try:
        with conn.transaction(force_rollback=True):
            set_local(conn, "statement_timeout", f"{runner.timeout_ms()}ms")
            set_local(conn, "plan_cache_mode", "force_custom_plan")
            # The one prepared statement and EXPLAIN text of queryaudit.plans.explain,
            # with or without values: pg_stat_statements gets no entry per statement.
            prepare(conn, query, values, types)
            _explain(conn, query)  # warm-up
            before = [_explain(conn, query) for _ in range(runs)]
            for text in statements:
                conn.execute(text)
            _explain(conn, query)
            after = [_explain(conn, query) for _ in range(runs)]
    finally:
        # DEALLOCATE after the transaction, not inside one an error aborted (there it failed,
        # hid the error, and the measurement was lost as a failed DEALLOCATE).
        deallocate(conn)
    m.before_ms = [round(logic.execution_ms(p), 3) for p in before]
    m.after_ms = [round(logic.execution_ms(p), 3) for p in after]
    m.before = {"ms": round(median(m.before_ms), 3), **logic.buffers(before[-1])}
    m.after = {"ms": round(median(m.after_ms), 3), **logic.buffers(after[-1])}
    m.outcome, _ = logic.verdict(m.before_ms, m.after_ms)
    m.detail = (
        f"--verify-real: {'; '.join(statements)} applied in a rolled-back transaction, "
        f"{runs} EXPLAIN ANALYZE runs before and after"
    )
    if scan is not None:
        m.before["q_error"] = scan_q_error(before[-1], *scan)
        m.after["q_error"] = scan_q_error(after[-1], *scan)
        if m.before["q_error"] is not None and m.after["q_error"] is not None:
            m.detail += f"; the scan's row estimate q-error {m.before['q_error']:g} -> {m.after['q_error']:g}"
