"""Collection: the facts every audit reads (pg_stat_statements, catalog, settings).

The audited server is read by collection stages only: these, and the stages each feature
package owns (plan capture in plans/stage.py over plans/explain.py, lock sampling in
locks/sampling.py, the estimate experiments in estimates/stage.py, fix verification in
verify/, the index advisor's advisor/stage.py and advisor/costing.py), all in the audit's
read-only session. tests/test_layers.py holds the list.

Each stage after the first is independent: a stage that fails is recorded in the
snapshot's errors (the snapshot becomes partial) and the others still run, so
nothing already collected is lost.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from queryaudit import __version__, names
from queryaudit.collect import catalog, server, statements
from queryaudit.connect import AUDIT_COST
from queryaudit.errors import AuditError
from queryaudit.snapshot import Snapshot


@dataclass
class CollectOptions:
    top: int = 20  # statements that get pg_stats and (with the EXPLAIN stage) plans
    max_statements: int = 5000  # pg_stat_statements rows kept in the snapshot
    # Extra stages run after the catalog, each (name, function(conn, snapshot)).
    stages: list[tuple[str, Callable[[psycopg.Connection, Snapshot], None]]] = field(default_factory=list)


def top_statements(snapshot: Snapshot, top: int):
    """The top statements by total time: what the report lists and EXPLAIN looks at."""
    return sorted(snapshot.statements, key=lambda s: s.total_exec_time_ms, reverse=True)[:top]


def collect_snapshot(
    conn: psycopg.Connection, options: CollectOptions = CollectOptions(), progress: Callable[[str], None] | None = None
) -> Snapshot:
    step = progress or (lambda name: None)
    cost_before = dict(AUDIT_COST)
    try:
        step("server")
        info = server.collect_server(conn)
        step("pg_stat_statements")
        statements.check_available(conn)
        rows, totals = statements.collect_statements(conn, options.max_statements)
        info.pgss_stats_reset, info.pgss_dealloc = statements.collect_info(conn)
    except psycopg.errors.InsufficientPrivilege as exc:
        raise AuditError(
            f"permission denied ({str(exc).strip().splitlines()[0]}): "
            "GRANT pg_monitor (or pg_read_all_stats) TO the audit role"
        ) from None
    snapshot = Snapshot(
        server=info,
        collected_at=dt.datetime.now(dt.UTC).isoformat(),
        tool_version=__version__,
        statements=rows,
        **totals,
    )

    interrupted: list[str] = []

    def stage(name: str, fn: Callable[[], None]) -> None:
        step(name)
        if interrupted:
            snapshot.record_error(name, "skipped: the audit was interrupted")
            return
        if conn.closed or conn.broken:
            snapshot.record_error(name, "skipped: the connection to the server was lost earlier")
            return
        try:
            fn()
        except KeyboardInterrupt:
            # Ctrl-C keeps what was collected: the report is written, marked partial.
            interrupted.append(name)
            snapshot.record_error(name, "interrupted (Ctrl-C): the report holds what was collected before")
            try:
                conn.cancel_safe() if hasattr(conn, "cancel_safe") else conn.cancel()
            except Exception:
                pass
        except AuditError as exc:
            snapshot.record_error(name, str(exc))
        except psycopg.Error as exc:
            snapshot.record_error(name, (str(exc).strip().splitlines() or [type(exc).__name__])[0])

    def read_catalog():
        snapshot.tables = catalog.collect_tables(conn)
        snapshot.views = catalog.collect_views(conn)
        snapshot.indexes = catalog.collect_indexes(conn)
        snapshot.foreign_keys = catalog.collect_foreign_keys(conn)
        snapshot.extended_statistics = catalog.collect_extended_statistics(conn)

    def read_column_stats():
        touched: list[str] = []
        for s in top_statements(snapshot, options.top):
            for t in names.resolve(s.query, snapshot).base_tables:  # views: the tables they read
                if t not in touched:
                    touched.append(t)
        snapshot.column_stats = catalog.collect_column_stats(conn, touched)

    stage("catalog", read_catalog)
    stage("column statistics", read_column_stats)
    for name, fn in options.stages:
        stage(name, functools.partial(fn, conn, snapshot))
    snapshot.extras["audit_cost"] = {
        "statements": AUDIT_COST["statements"] - cost_before["statements"],
        "ms": round(AUDIT_COST["ms"] - cost_before["ms"], 3),
    }
    return snapshot
