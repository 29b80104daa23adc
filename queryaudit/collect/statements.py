"""pg_stat_statements, read the same way on PostgreSQL 13 to 18.

The view's columns changed across versions (13 split plan/exec time, 14 added
toplevel and pg_stat_statements_info, 15 jit and temp I/O timing, 17 renamed
blk_read_time to shared_blk_read_time and added stats_since, 18 parallel worker and
wal_buffers_full counters). Rather than branch on the server version, we read which
columns the installed extension version has and map each canonical field to the
first candidate that exists: the extension can lag the server after an upgrade.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from queryaudit.connect import OWN_STATEMENT_PATTERN, named_row, named_rows, scalar
from queryaudit.errors import AuditError
from queryaudit.redact import mask_passwords
from queryaudit.snapshot import Statement

# canonical Statement field -> SQL expression candidates (first available wins).
# An entry whose columns are all missing leaves the field at its default.
COLUMN_MAP: dict[str, list[str]] = {
    "total_exec_time_ms": ["total_exec_time", "total_time"],  # total_time: 12 and older
    "mean_exec_time_ms": ["mean_exec_time", "mean_time"],
    "min_exec_time_ms": ["min_exec_time", "min_time"],
    "max_exec_time_ms": ["max_exec_time", "max_time"],
    "stddev_exec_time_ms": ["stddev_exec_time", "stddev_time"],
    "total_plan_time_ms": ["total_plan_time"],
    "plans": ["plans"],
    "shared_blks_hit": ["shared_blks_hit"],
    "shared_blks_read": ["shared_blks_read"],
    "shared_blks_dirtied": ["shared_blks_dirtied"],
    "shared_blks_written": ["shared_blks_written"],
    "local_blks_hit": ["local_blks_hit"],
    "local_blks_read": ["local_blks_read"],
    "temp_blks_read": ["temp_blks_read"],
    "temp_blks_written": ["temp_blks_written"],
    "blk_read_time_ms": ["shared_blk_read_time", "blk_read_time"],  # renamed in 17
    "blk_write_time_ms": ["shared_blk_write_time", "blk_write_time"],
    "temp_blk_read_time_ms": ["temp_blk_read_time"],
    "temp_blk_write_time_ms": ["temp_blk_write_time"],
    "wal_records": ["wal_records"],
    "wal_bytes": ["wal_bytes"],
    "toplevel": ["toplevel"],
    "jit_functions": ["jit_functions"],
    "stats_since": ["stats_since"],
    "parallel_workers_to_launch": ["parallel_workers_to_launch"],
    "parallel_workers_launched": ["parallel_workers_launched"],
    "wal_buffers_full": ["wal_buffers_full"],
}
JIT_TIME_COLUMNS = [
    "jit_generation_time",
    "jit_inlining_time",
    "jit_optimization_time",
    "jit_emission_time",
    "jit_deform_time",
]

INSUFFICIENT_PRIVILEGE = "<insufficient privilege>"
OWN_STATEMENTS = OWN_STATEMENT_PATTERN  # the auditor's own statements are not the workload


def check_available(conn: psycopg.Connection) -> str:
    """The installed extension version, or a one-line error saying how to get it."""
    version = scalar(conn, "SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements'")
    if version is None:
        raise AuditError(
            "pg_stat_statements is not installed in this database: run "
            "CREATE EXTENSION pg_stat_statements (it must also be in shared_preload_libraries)"
        )
    # Whether it is preloaded shows when the view is read (shared_preload_libraries
    # itself is visible only to pg_read_all_settings).
    return version


def view_columns(conn: psycopg.Connection, relation: str = "pg_stat_statements") -> set[str]:
    rows = named_rows(
        conn,
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
        (relation,),
    )
    return {r["attname"] for r in rows}


def _select_list(columns: set[str]) -> tuple[sql.Composable, list[str]]:
    fields, exprs = [], []
    for field, candidates in COLUMN_MAP.items():
        found = next((c for c in candidates if c in columns), None)
        if found:
            fields.append(field)
            exprs.append(sql.SQL("{} AS {}").format(sql.Identifier(found), sql.Identifier(field)))
    jit = [c for c in JIT_TIME_COLUMNS if c in columns]
    if jit:
        fields.append("jit_total_time_ms")
        exprs.append(sql.SQL("{} AS jit_total_time_ms").format(sql.SQL(" + ").join(sql.Identifier(c) for c in jit)))
    return sql.SQL(", ").join(exprs), fields


def collect_statements(conn: psycopg.Connection, limit: int = 5000) -> tuple[list[Statement], dict]:
    """Statements of the current database, most total time first, and totals over all of them.

    Reading pg_stat_statements fails with 'must be loaded via shared_preload_libraries'
    when the library is not preloaded; other users' texts read as '<insufficient
    privilege>' without pg_read_all_stats.
    """
    columns = view_columns(conn)
    select_list, fields = _select_list(columns)
    query = sql.SQL(
        "SELECT s.queryid::text AS queryid, s.query, s.calls, s.rows, s.userid::oid::int8 AS userid, "
        "r.rolname AS username, {select_list} "
        "FROM pg_stat_statements s LEFT JOIN pg_roles r ON r.oid = s.userid "
        "WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND s.queryid IS NOT NULL AND s.query NOT LIKE %s ORDER BY {order} DESC LIMIT %s"
    ).format(
        select_list=select_list,
        order=sql.Identifier("total_exec_time" if "total_exec_time" in columns else "total_time"),
    )
    try:
        rows = named_rows(conn, query, (OWN_STATEMENTS, limit))
        totals = named_row(
            conn,
            sql.SQL(
                "SELECT coalesce(sum({t}), 0) AS total_exec_time_ms, coalesce(sum(calls), 0) AS total_calls, "
                "count(*) AS statement_count, count(*) FILTER (WHERE query = %s) AS hidden FROM pg_stat_statements "
                "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND query NOT LIKE %s"
            ).format(t=sql.Identifier("total_exec_time" if "total_exec_time" in columns else "total_time")),
            (INSUFFICIENT_PRIVILEGE, OWN_STATEMENTS),
        )
    except psycopg.errors.ObjectNotInPrerequisiteState:
        raise AuditError(
            "pg_stat_statements is not loaded: add shared_preload_libraries = 'pg_stat_statements' "
            "to postgresql.conf and restart the server"
        ) from None
    except psycopg.errors.InsufficientPrivilege as exc:
        raise AuditError(
            f"permission denied reading pg_stat_statements ({str(exc).strip().splitlines()[0]}): "
            "GRANT pg_read_all_stats TO the audit role"
        ) from None
    if totals["hidden"]:
        raise AuditError(
            f"{totals['hidden']} statements of other roles are hidden (<insufficient privilege>): "
            "GRANT pg_read_all_stats TO the audit role"
        )
    statements = []
    for row in rows:
        statement = Statement(
            queryid=row["queryid"],
            query=mask_passwords(row["query"]),
            calls=int(row["calls"]),
            rows=int(row["rows"]),
            userid=row["userid"],
            username=row["username"],
            total_exec_time_ms=0.0,
            mean_exec_time_ms=0.0,
        )
        for field in fields:
            value = row[field]
            if value is not None:
                setattr(statement, field, value if not hasattr(value, "isoformat") else value.isoformat())
        statements.append(statement)
    return statements, {
        "total_exec_time_ms": float(totals["total_exec_time_ms"]),
        "total_calls": int(totals["total_calls"]),
        "statement_count": int(totals["statement_count"]),
    }


def collect_info(conn: psycopg.Connection) -> tuple[str | None, int | None]:
    """pg_stat_statements_info (14+): (stats_reset, dealloc)."""
    if not view_columns(conn, "pg_stat_statements_info"):
        return None, None
    row = named_row(conn, "SELECT stats_reset, dealloc FROM pg_stat_statements_info")
    return (row["stats_reset"].isoformat() if row["stats_reset"] else None), row["dealloc"]
