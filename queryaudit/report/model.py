"""The report: one plain dict built from the snapshot and the findings.

Every renderer (terminal, JSON, HTML, Markdown) formats this dict and computes
nothing of its own. Its JSON form is the contract in report.schema.json.
"""

from __future__ import annotations

import datetime as dt
import re

from queryaudit import __version__
from queryaudit.checks import ids
from queryaudit.collect import top_statements
from queryaudit.findings import SEVERITIES, Finding, combined_saving_share, merge_overlapping, prioritise
from queryaudit.history.evidence import evidence_from_snapshot
from queryaudit.locks.report import locks_section
from queryaudit.logs.report import log_section, query_latency, workload_sources
from queryaudit.report.derive import enrich, saves_time
from queryaudit.report.workload import workload_match_entry, workload_summary
from queryaudit.snapshot import Snapshot
from queryaudit.sql import statement_kind

SCHEMA_VERSION = 1
TOP_FIXES = 5


def _query_entry(snapshot: Snapshot, statement) -> dict:
    total = snapshot.total_exec_time_ms
    capture = next((p for p in snapshot.plans if p.queryid == statement.queryid), None)
    return {
        "queryid": statement.queryid,
        "query": statement.query,
        "calls": statement.calls,
        "total_exec_time_ms": round(statement.total_exec_time_ms, 3),
        "mean_exec_time_ms": round(statement.mean_exec_time_ms, 4),
        "rows": statement.rows,
        "share_of_total_time": round(min(1.0, statement.total_exec_time_ms / total), 6) if total > 0 else 0.0,
        "rows_per_call": round(statement.rows / statement.calls, 2) if statement.calls else 0,
        "cache_hit_ratio": round(statement.cache_hit_ratio, 4) if statement.cache_hit_ratio is not None else None,
        "min_exec_time_ms": round(statement.min_exec_time_ms, 3),
        "max_exec_time_ms": round(statement.max_exec_time_ms, 3),
        "stddev_exec_time_ms": round(statement.stddev_exec_time_ms, 3),
        # What the calls did, whatever the machine's load: compare weighs a time change against it.
        "shared_blks_hit": statement.shared_blks_hit,
        "shared_blks_read": statement.shared_blks_read,
        "temp_blks_written": statement.temp_blks_written,
        "toplevel": statement.toplevel,
        "username": statement.username,
        "plan": capture.plan if capture else None,
        "plan_method": capture.method if capture else None,
        "plan_skipped_reason": capture.skipped_reason if capture else None,
        "plan_coverage": coverage_kind(capture),
        "plan_parameter_source": capture.parameter_source if capture else None,
        "plan_sample_ms": _spread(capture.sample_ms) if capture and capture.sample_ms else None,
        # plan / workload per call (rows, blocks, temp, time) and the values used: queryaudit.plans.workload
        "workload_match": workload_match_entry(capture),
        # p50/p95/p99 from logged durations (--log), None when no log matched the statement.
        **query_latency(snapshot, statement),
    }


COVERAGE = {
    "analyze": "analyzed",
    "analyze-rolled-back": "analyzed",
    "generic": "generic",
    "explain": "explained",
    "skipped": "skipped",
}


def coverage_kind(capture) -> str:
    """analyzed (EXPLAIN ANALYZE), generic (no values: the generic plan), explained (plain
    EXPLAIN with values), skipped (no plan, with its reason), or not-captured."""
    if capture is None:
        return "not-captured"
    if capture.method == "logged" and capture.plan:  # an auto_explain plan from the server log
        return "analyzed" if "Actual Total Time" in capture.plan.get("Plan", {}) else "explained"
    return (
        COVERAGE.get(capture.method, "skipped")
        if capture.plan is not None or capture.method == "skipped"
        else "skipped"
    )


def _spread(times: list[float]) -> dict:
    ordered = sorted(times)
    return {"samples": len(ordered), "min": ordered[0], "median": ordered[len(ordered) // 2], "max": ordered[-1]}


def plan_coverage(queries: list[dict]) -> dict:
    """The totals over the reported statements: "planned 19/19, 17 with ANALYZE". Utility
    statements (BEGIN, SET...) have no plan by nature and are counted apart."""
    kinds = [q["plan_coverage"] for q in queries]
    utility = sum(1 for q in queries if (q.get("plan_skipped_reason") or "").startswith("not a plannable statement"))
    counts = {k: kinds.count(k) for k in ("analyzed", "generic", "explained", "skipped", "not-captured")}
    plannable = len(queries) - utility
    planned = counts["analyzed"] + counts["generic"] + counts["explained"]
    parts = [f"planned {planned}/{plannable}", f"{counts['analyzed']} with ANALYZE"]
    parts += [f"{counts[k]} {k}" for k in ("generic", "explained") if counts[k]]
    if counts["skipped"] - utility > 0:
        parts.append(f"{counts['skipped'] - utility} skipped")
    if counts["not-captured"]:
        parts.append(f"{counts['not-captured']} not explained (no EXPLAIN stage)")
    return {
        "statements": len(queries),
        "plannable": plannable,
        "planned": planned,
        **counts,
        "utility": utility,
        "summary": ", ".join(parts),
        "workload": workload_summary(queries),
    }


def is_workload(query: str) -> bool:
    """Whether a statement is the application's work: not a utility statement (BEGIN,
    COMMIT, SET, SHOW, DDL...: pg_stat_statements tracks them, nothing in them can be
    tuned) and not a statistics reset, which only an administrator or a tool sends."""
    return statement_kind(query) != "other" and not _RESET_CALL.search(query)


_RESET_CALL = re.compile(r"\bpg_stat_(statements_)?reset\w*\s*\(", re.I)


def _reported_statements(snapshot: Snapshot, top: int) -> list:
    """The top statements of the workload (utility statements left out: `left_out`), then the
    ones a --queries file asked for (snapshot.extras["queries_file"])."""
    listed = [s for s in top_statements(snapshot, len(snapshot.statements)) if is_workload(s.query)][:top]
    asked = {q.get("queryid") for q in snapshot.extras.get("queries_file") or []}
    return listed + [s for s in snapshot.statements if s.queryid in asked and s not in listed]


def left_out(snapshot: Snapshot) -> dict:
    """The utility statements not listed as workload: how many, their time and a few texts."""
    utility = [s for s in snapshot.statements if not is_workload(s.query)]
    total = snapshot.total_exec_time_ms
    time_ms = sum(s.total_exec_time_ms for s in utility)
    return {
        "statements": len(utility),
        "total_exec_time_ms": round(time_ms, 3),
        "share_of_total_time": round(time_ms / total, 6) if total > 0 else 0.0,
        "examples": [
            " ".join(s.query.split())[:60]
            for s in sorted(utility, key=lambda s: s.total_exec_time_ms, reverse=True)[:4]
        ],
    }


def _statement_shares(snapshot: Snapshot) -> dict[str, float]:
    total = snapshot.total_exec_time_ms
    return {s.queryid: s.total_exec_time_ms / total for s in snapshot.statements} if total > 0 else {}


def build_report(snapshot: Snapshot, findings: list[Finding], top: int = 20) -> dict:
    ordered = prioritise(merge_overlapping(findings, ids(fix="create-index")))
    # Fixes that save time first, in their order; then the notes (hygiene, a fix measured as
    # not faster, advice without a figure), which have no place among prioritised fixes.
    dicts = [f.to_dict() for f in ordered]
    keep = [saves_time(d) for d in dicts]
    ordered = [f for f, k in zip(ordered, keep, strict=True) if k] + [
        f for f, k in zip(ordered, keep, strict=True) if not k
    ]
    by_severity = {s: sum(1 for f in ordered if f.severity == s) for s in SEVERITIES}
    server = snapshot.server
    report = {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "queryaudit", "version": __version__},
        "generated_at": dt.datetime.now(dt.UTC).isoformat(),
        "target": {
            "server_version_num": server.version_num,
            "server_version": server.version,
            "database": server.database,
            "host": server.host,
            "in_recovery": server.in_recovery,
            "extensions": server.extensions,
        },
        "window": {
            "collected_at": snapshot.collected_at,
            "statistics_since": server.pgss_stats_reset or server.postmaster_start,
            "total_exec_time_ms": round(snapshot.total_exec_time_ms, 3),
            "total_calls": snapshot.total_calls,
            "statement_count": snapshot.statement_count,
            "evicted_entries": server.pgss_dealloc,
        },
        "partial": snapshot.partial,
        "errors": [{"stage": e.stage, "message": e.message} for e in snapshot.errors],
        "settings": server.settings,
        "queries": [_query_entry(snapshot, s) for s in _reported_statements(snapshot, top)],
        # Which figures of the workload tables come from pg_stat_statements, which from the log.
        "workload_sources": workload_sources(snapshot),
        # Utility statements (BEGIN, COMMIT, SET, a statistics reset) tracked but not listed.
        "left_out": left_out(snapshot),
        "findings": [f.to_dict() for f in ordered],
        "summary": {
            "findings_by_severity": by_severity,
            "predicted_saving_share": combined_saving_share(ordered, _statement_shares(snapshot)),
            "top_fixes": [
                {
                    "id": f.id,
                    "check": f.check,
                    "severity": f.severity,
                    "title": f.title,
                    "share_of_total_time": f.saving_share,
                    "fix_sql": f.fix_sql,
                }
                for f in ordered
                if saves_time(f.to_dict())
            ][:TOP_FIXES],
        },
        "extras": snapshot.extras,
        # What explains a change between two audits: plans, catalog state, settings (history.evidence).
        "evidence": evidence_from_snapshot(snapshot),
        # Lock sampling / log_lock_waits: timeline, chains as trees, top blockers (lock_report.py).
        "locks": locks_section(snapshot),
        # What --log read: files, counts, malformed lines, top logged statements with percentiles.
        "logs": log_section(snapshot),
    }
    report["plan_coverage"] = plan_coverage(report["queries"])
    return enrich(report, snapshot)
