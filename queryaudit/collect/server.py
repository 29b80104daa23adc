"""Server identity, the settings that shape performance, and relevant extensions."""
from __future__ import annotations

import psycopg

from queryaudit.snapshot import ServerInfo

PERFORMANCE_SETTINGS = [
    "work_mem", "maintenance_work_mem", "shared_buffers", "effective_cache_size", "random_page_cost",
    "seq_page_cost", "effective_io_concurrency", "default_statistics_target", "jit", "jit_above_cost",
    "plan_cache_mode", "track_io_timing", "track_activity_query_size", "max_parallel_workers_per_gather",
    "max_parallel_workers", "max_worker_processes", "autovacuum", "autovacuum_analyze_threshold",
    "autovacuum_analyze_scale_factor", "autovacuum_vacuum_threshold", "autovacuum_vacuum_scale_factor",
    "hash_mem_multiplier", "enable_seqscan", "enable_indexscan", "enable_bitmapscan", "enable_nestloop",
    "enable_hashjoin", "enable_mergejoin", "shared_preload_libraries", "compute_query_id", "log_min_duration_statement",
    "log_lock_waits", "log_line_prefix", "log_destination", "deadlock_timeout", "idle_in_transaction_session_timeout",
    "statement_timeout", "lock_timeout", "max_connections", "server_encoding", "pg_stat_statements.max",
    "pg_stat_statements.track", "pg_stat_statements.track_utility", "pg_stat_statements.track_planning",
    "pg_stat_statements.save", "auto_explain.log_min_duration", "data_directory_mode",
    "search_path",  # how names.py resolves unqualified table names
    "block_size",  # temp blocks per call -> kB (checks/workload_spill.py)
]

RELEVANT_EXTENSIONS = ("pg_stat_statements", "hypopg", "pg_qualstats", "auto_explain", "pg_stat_kcache",
                       "pg_hint_plan", "pg_buffercache", "pgstattuple")


def collect_server(conn: psycopg.Connection) -> ServerInfo:
    version_num, version, database, user, in_recovery, started = conn.execute(
        "SELECT current_setting('server_version_num')::int, version(), current_database(), current_user, "
        "pg_is_in_recovery(), pg_postmaster_start_time()").fetchone()
    # reset_val, not setting: the server's (database's, role's) value, not the audit
    # session's own statement_timeout and friends.
    settings = dict(conn.execute("SELECT name, reset_val || coalesce(' ' || unit, '') FROM pg_settings "
                                 "WHERE name = ANY(%s)", (PERFORMANCE_SETTINGS,)).fetchall())
    extensions = dict(conn.execute("SELECT extname, extversion FROM pg_extension WHERE extname = ANY(%s)",
                                   (list(RELEVANT_EXTENSIONS),)).fetchall())
    available = dict(conn.execute("SELECT name, default_version FROM pg_available_extensions WHERE name = ANY(%s)",
                                  (list(RELEVANT_EXTENSIONS),)).fetchall())
    stats_reset = conn.execute("SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()"
                               ).fetchone()
    return ServerInfo(version_num=version_num, version=version, database=database, user=user,
                      host=getattr(conn.info, "host", None), in_recovery=in_recovery, extensions=extensions,
                      available_extensions=available,
                      settings=settings,
                      stats_reset=stats_reset[0].isoformat() if stats_reset and stats_reset[0] else None,
                      postmaster_start=started.isoformat() if started else None,
                      port=_port(conn), system_identifier=system_identifier(conn))


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
            row = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
    except psycopg.Error:
        return None
    return row[0] if row else None
