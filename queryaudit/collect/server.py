"""Server identity, the settings that shape performance, and relevant extensions."""

from __future__ import annotations

import psycopg

from queryaudit.connect import named_row, named_rows, scalar
from queryaudit.snapshot import ServerInfo

PERFORMANCE_SETTINGS = [
    "work_mem",
    "maintenance_work_mem",
    "shared_buffers",
    "effective_cache_size",
    "random_page_cost",
    "seq_page_cost",
    "effective_io_concurrency",
    "default_statistics_target",
    "jit",
    "jit_above_cost",
    "plan_cache_mode",
    "track_io_timing",
    "track_activity_query_size",
    "max_parallel_workers_per_gather",
    "max_parallel_workers",
    "max_worker_processes",
    "autovacuum",
    "autovacuum_analyze_threshold",
    "autovacuum_analyze_scale_factor",
    "autovacuum_vacuum_threshold",
    "autovacuum_vacuum_scale_factor",
    "hash_mem_multiplier",
    "enable_seqscan",
    "enable_indexscan",
    "enable_bitmapscan",
    "enable_nestloop",
    "enable_hashjoin",
    "enable_mergejoin",
    "shared_preload_libraries",
    "compute_query_id",
    "log_min_duration_statement",
    "log_lock_waits",
    "log_line_prefix",
    "log_destination",
    "deadlock_timeout",
    "idle_in_transaction_session_timeout",
    "statement_timeout",
    "lock_timeout",
    "max_connections",
    "server_encoding",
    "pg_stat_statements.max",
    "pg_stat_statements.track",
    "pg_stat_statements.track_utility",
    "pg_stat_statements.track_planning",
    "pg_stat_statements.save",
    "auto_explain.log_min_duration",
    "data_directory_mode",
    "search_path",  # how names.py resolves unqualified table names
    "block_size",  # temp blocks per call -> kB (checks/workload_spill.py)
]

RELEVANT_EXTENSIONS = (
    "pg_stat_statements",
    "hypopg",
    "pg_qualstats",
    "auto_explain",
    "pg_stat_kcache",
    "pg_hint_plan",
    "pg_buffercache",
    "pgstattuple",
)


def collect_server(conn: psycopg.Connection) -> ServerInfo:
    info = named_row(
        conn,
        "SELECT current_setting('server_version_num')::int AS version_num, version(), "
        "current_database() AS database, current_user AS user, "
        "pg_is_in_recovery() AS in_recovery, pg_postmaster_start_time() AS started",
    )
    # reset_val, not setting: the server's (database's, role's) value, not the audit
    # session's own statement_timeout and friends.
    # Every enable_* too: the planner switches a history cause (setting-changed) may name.
    settings = _pairs(
        conn,
        "SELECT name AS key, reset_val || coalesce(' ' || unit, '') AS value FROM pg_settings "
        "WHERE name = ANY(%s) OR name LIKE 'enable\\_%%'",
        (PERFORMANCE_SETTINGS,),
    )
    # Per-role and per-database overrides (ALTER ROLE/DATABASE ... SET) that apply here:
    # the session's reset_val shows only the auditing role's own.
    role_settings = [
        {"role": r["role"], "database": r["database"], "settings": list(r["settings"] or [])}
        for r in named_rows(
            conn,
            "SELECT r.rolname AS role, d.datname AS database, s.setconfig AS settings "
            "FROM pg_db_role_setting s "
            "LEFT JOIN pg_roles r ON r.oid = s.setrole "
            "LEFT JOIN pg_database d ON d.oid = s.setdatabase "
            "WHERE s.setdatabase IN (0, (SELECT oid FROM pg_database "
            "WHERE datname = current_database())) ORDER BY 1 NULLS FIRST, 2 NULLS FIRST",
        )
    ]
    extensions = _pairs(
        conn,
        "SELECT extname AS key, extversion AS value FROM pg_extension WHERE extname = ANY(%s)",
        (list(RELEVANT_EXTENSIONS),),
    )
    available = _pairs(
        conn,
        "SELECT name AS key, default_version AS value FROM pg_available_extensions WHERE name = ANY(%s)",
        (list(RELEVANT_EXTENSIONS),),
    )
    stats_reset = scalar(conn, "SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()")
    started = info.pop("started")
    return ServerInfo(
        **info,
        host=getattr(conn.info, "host", None),
        extensions=extensions,
        available_extensions=available,
        settings=settings,
        role_settings=role_settings,
        stats_reset=stats_reset.isoformat() if stats_reset else None,
        postmaster_start=started.isoformat() if started else None,
        port=_port(conn),
        system_identifier=system_identifier(conn),
    )


def _pairs(conn: psycopg.Connection, query: str, params) -> dict:
    return {r["key"]: r["value"] for r in named_rows(conn, query, params)}


def _port(conn: psycopg.Connection) -> int | None:
    try:
        return int(conn.info.port)
    except (TypeError, ValueError):
        return None


def system_identifier(conn: psycopg.Connection) -> str | None:
    """The cluster's system identifier (pg_control_system(), 9.6+), or None when this role may
    not execute it: it tells the audit history that another cluster now answers at a target."""
    try:
        with conn.transaction():
            return scalar(conn, "SELECT system_identifier::text FROM pg_control_system()")
    except psycopg.Error:
        return None
