"""What the report shows from the logs: latency percentiles per query and a summary."""

from __future__ import annotations

from queryaudit.snapshot import Snapshot, Statement
from queryaudit.sql import fingerprint

EMPTY = {"p50_ms": None, "p95_ms": None, "p99_ms": None, "log_calls": None}


def query_latency(snapshot: Snapshot, statement: Statement) -> dict:
    """p50/p95/p99 of a pg_stat_statements entry from the logged durations (by queryid, else
    by fingerprint); None values when no log matched it."""
    logs = snapshot.logs
    if logs is None or not logs.statements:
        return dict(EMPTY)
    match = logs.statement_for(statement.queryid, fingerprint(statement.query))
    if match is None or match.count == 0:
        return dict(EMPTY)
    return {"p50_ms": match.p50_ms, "p95_ms": match.p95_ms, "p99_ms": match.p99_ms, "log_calls": match.count}


def workload_sources(snapshot: Snapshot) -> str:
    """The line above every workload table: which figures come from which source."""
    logs = snapshot.logs
    has_pgss = bool(snapshot.statements)
    if logs is None or not logs.executions:
        return (
            (
                "calls, total and mean: pg_stat_statements; no p50/p95/p99 (pg_stat_statements keeps no "
                "percentiles: give the server log with --log, log_min_duration_statement = 0)"
            )
            if has_pgss
            else "no statements: neither pg_stat_statements nor a server log with durations"
        )
    span = f"{logs.first_timestamp} → {logs.last_timestamp}" if logs.first_timestamp else "no timestamps"
    log = f"the server log ({logs.executions:,} logged executions, {span})"
    if has_pgss:
        return f"calls, total and mean: pg_stat_statements; p50/p95/p99 and log calls: {log}"
    return f"count, total, p50/p95/p99: {log}"


def log_section(snapshot: Snapshot, top: int = 20) -> dict | None:
    logs = snapshot.logs
    if logs is None:
        return None
    return {
        "files": logs.files,
        "formats": logs.formats,
        "line_prefix": logs.line_prefix,
        "lines": logs.lines,
        "records": logs.records,
        "malformed_lines": logs.malformed_lines,
        "executions": logs.executions,
        "total_ms": logs.total_ms,
        "first_timestamp": logs.first_timestamp,
        "last_timestamp": logs.last_timestamp,
        "statement_count": logs.statement_count,
        "lock_events": logs.lock_events,
        "deadlocks": logs.deadlocks,
        "lock_timeouts": logs.lock_timeouts,
        "temp_files": logs.temp_files,
        "temp_bytes": logs.temp_bytes,
        "auto_explain_plans": logs.plans,
        "n_plus_one_loops": len(logs.n_plus_one),
        "statements": [
            {
                "key": s.key,
                "queryid": s.queryid,
                "fingerprint": s.fingerprint,
                "query": s.query,
                "count": s.count,
                "total_ms": s.total_ms,
                "min_ms": s.min_ms,
                "max_ms": s.max_ms,
                "p50_ms": s.p50_ms,
                "p95_ms": s.p95_ms,
                "p99_ms": s.p99_ms,
                "has_plan": s.plan is not None or s.plan_text is not None,
            }
            for s in logs.statements[:top]
        ],
    }
