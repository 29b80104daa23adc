"""One audit against an earlier one: per-statement change and new/resolved findings.

Both sides are AuditViews: per-statement numbers of a window (from the store, or a
fresh audit's window against the last stored one) or, for a plain JSON report, its
cumulative numbers. The comparison itself is queryaudit.before_after's (the report-vs-report
`queryaudit compare`): a view is put in the shape of a report and compared the same way,
so statements match by queryid, then by normalized text, in both commands. Pure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

STATEMENTS_IN_REPORT = 50
BLOCKS = ("shared_blks_hit", "shared_blks_read", "temp_blks_written")


@dataclass
class StatementMetrics:
    queryid: str
    query: str
    calls: int
    total_ms: float
    rows: int = 0
    kind: str = "delta"  # how the numbers were obtained (windows.DELTA, NEW, ... or "cumulative")
    sumsq_ms2: float | None = None  # sum of squared execution times: the spread (None: unknown)
    shared_blks_hit: int | None = None
    shared_blks_read: int | None = None
    temp_blks_written: int | None = None

    @property
    def mean_ms(self) -> float | None:
        return self.total_ms / self.calls if self.calls else None

    @property
    def stddev_ms(self) -> float | None:
        """Population deviation, as pg_stat_statements reports it."""
        if self.sumsq_ms2 is None or not self.calls:
            return None
        mean = self.total_ms / self.calls
        return math.sqrt(max(0.0, self.sumsq_ms2 / self.calls - mean * mean))

    def to_dict(self) -> dict:
        mean = self.mean_ms
        return {
            "calls": self.calls,
            "total_ms": round(self.total_ms, 3),
            "mean_ms": round(mean, 4) if mean is not None else None,
            "rows": self.rows,
            "kind": self.kind,
        }


@dataclass
class AuditView:
    """What a comparison reads from one side."""

    label: str
    collected_at: str | None = None
    window_start: str | None = None
    window_kind: str = "cumulative"
    window_note: str | None = None
    audit_id: int | None = None
    statements: dict[str, StatementMetrics] = field(default_factory=dict)  # by queryid
    findings: dict[str, dict] = field(default_factory=dict)  # finding id -> check, severity, title, object
    total_exec_time_ms: float | None = None
    evidence: dict | None = None  # plans, catalog state, settings (history.evidence)

    def describe(self) -> dict:
        from queryaudit.report.derive import when  # deferred: report rendering (all checks) costs `history` start-up

        return {
            "label": self.label,
            "audit_id": self.audit_id,
            "collected_at": self.collected_at,
            "collected_label": when(self.collected_at),
            "window_start": self.window_start,
            "window_start_label": when(self.window_start),
            "window_kind": self.window_kind,
            "window_note": self.window_note,
            "total_exec_time_ms": round(self.total_exec_time_ms, 3) if self.total_exec_time_ms is not None else None,
        }


def finding_object(finding: dict) -> str | None:
    """The object a finding names, for tables and the store."""
    if finding.get("index"):
        return finding["index"]
    if finding.get("table"):
        columns = finding.get("columns") or []
        return f"{finding['table']} ({', '.join(columns)})" if columns else finding["table"]
    if finding.get("queryids"):
        return "queryid " + ", ".join(finding["queryids"][:3])
    return None


def findings_of_report(report: dict) -> dict[str, dict]:
    return {
        f["id"]: {"check": f["check"], "severity": f["severity"], "title": f["title"], "object": finding_object(f)}
        for f in report.get("findings", [])
    }


def aggregate(entries) -> dict[str, StatementMetrics]:
    """Window entries (windows.Entry) summed per queryid across roles and nesting levels."""
    out: dict[str, StatementMetrics] = {}
    for entry in entries:
        if entry.delta is None:
            continue
        s = entry.sample
        m = out.get(s.queryid)
        sumsq = entry.delta.get("sumsq_exec_time")
        if m is None:
            out[s.queryid] = StatementMetrics(
                s.queryid,
                s.query,
                int(entry.delta["calls"]),
                float(entry.delta["total_exec_time_ms"]),
                int(entry.delta["rows"]),
                entry.kind,
                sumsq,
                *(int(entry.delta[c]) for c in BLOCKS),
            )
        else:
            for c in BLOCKS:
                setattr(m, c, (getattr(m, c) or 0) + int(entry.delta[c]))
            m.calls += int(entry.delta["calls"])
            m.total_ms += float(entry.delta["total_exec_time_ms"])
            m.rows += int(entry.delta["rows"])
            m.sumsq_ms2 = m.sumsq_ms2 + sumsq if m.sumsq_ms2 is not None and sumsq is not None else None
            if entry.kind != m.kind:
                m.kind = "mixed-entries"
    return out


def view_from_window(window, report: dict, label: str, audit_id: int | None = None) -> AuditView:
    statements = aggregate(window.entries)
    return AuditView(
        label=label,
        collected_at=window.end,
        window_start=window.start,
        window_kind=window.kind,
        window_note=window.note,
        audit_id=audit_id,
        statements=statements,
        findings=findings_of_report(report),
        total_exec_time_ms=sum(m.total_ms for m in statements.values()),
        evidence=report.get("evidence"),
    )


def view_from_report(report: dict, label: str) -> AuditView:
    """A JSON report's own numbers: cumulative since the statistics began, top statements only."""
    statements = {
        q["queryid"]: StatementMetrics(
            q["queryid"],
            q["query"],
            int(q["calls"]),
            float(q["total_exec_time_ms"]),
            int(q.get("rows") or 0),
            "cumulative",
            _sumsq(q),
        )
        for q in report.get("queries", [])
    }
    window = report.get("window") or {}
    return AuditView(
        label=label,
        collected_at=window.get("collected_at") or report.get("generated_at"),
        window_start=window.get("statistics_since"),
        window_kind="cumulative",
        statements=statements,
        findings=findings_of_report(report),
        total_exec_time_ms=window.get("total_exec_time_ms"),
        evidence=report.get("evidence"),
    )


def _sumsq(q: dict) -> float | None:
    if q.get("stddev_exec_time_ms") is None or q.get("mean_exec_time_ms") is None:
        return None
    return int(q["calls"]) * (q["stddev_exec_time_ms"] ** 2 + q["mean_exec_time_ms"] ** 2)


def as_report(view: AuditView | None, database: str = "", server_version_num: int = 0) -> dict:
    """A view in the shape of a JSON report, so the report-vs-report comparison
    (queryaudit.before_after, statements matched by queryid then normalized text) serves here too."""
    view = view or AuditView(label="no baseline")
    total = view.total_exec_time_ms or 0.0
    queries = [
        {
            "queryid": m.queryid,
            "query": m.query,
            "calls": m.calls,
            "total_exec_time_ms": round(m.total_ms, 3),
            "mean_exec_time_ms": round(m.mean_ms, 4) if m.mean_ms is not None else None,
            "rows": m.rows,
            "stddev_exec_time_ms": round(m.stddev_ms, 4) if m.stddev_ms is not None else None,
            "share_of_total_time": round(m.total_ms / total, 6) if total > 0 else 0.0,
            "window_kind": m.kind,
            **{c: getattr(m, c) for c in BLOCKS},
        }
        # A statement that did not run in a window is absent from it, as from a report.
        for m in sorted(view.statements.values(), key=lambda m: -m.total_ms)
        if m.calls > 0
    ]
    return {
        "target": {"database": database, "server_version_num": server_version_num},
        "generated_at": view.collected_at,
        "window": {
            "collected_at": view.collected_at,
            "statistics_since": view.window_start,
            "total_exec_time_ms": round(total, 3),
            "total_calls": sum(m.calls for m in view.statements.values()),
        },
        "evidence": view.evidence,
        "queries": queries,
        "findings": [{"id": i, **f} for i, f in view.findings.items()],
    }


def compare(before: AuditView | None, after: AuditView) -> dict:
    """The comparison dict of queryaudit.before_after.build_comparison, on window numbers."""
    from queryaudit.before_after import (
        build_comparison,  # deferred: loads report rendering, which costs `history` start-up
    )

    comparison = build_comparison(as_report(before), as_report(after))
    comparison["before"] = before.describe() if before else None
    comparison["after"] = after.describe()
    return comparison


def _moved_ms(row: dict) -> float:
    b, a = row.get("before") or {}, row.get("after") or {}
    return abs((a.get("total_exec_time_ms") or 0.0) - (b.get("total_exec_time_ms") or 0.0))


def baseline_section(comparison: dict, limit: int = STATEMENTS_IN_REPORT) -> dict:
    """What goes into report["baseline"]: the comparison with the statements that moved the most
    database time (all regressions among them first), and new/resolved findings."""
    rows = comparison["statements"]
    shown = sorted(rows, key=lambda r: (r["status"] != "regressed", -_moved_ms(r)))[:limit]
    for row in shown:
        b, a = row.get("before") or {}, row.get("after") or {}
        row["mean_change_pct"] = _pct(b.get("mean_exec_time_ms"), a.get("mean_exec_time_ms"))
        row["total_change_pct"] = _pct(b.get("total_exec_time_ms"), a.get("total_exec_time_ms"))
    findings = comparison["findings"]
    return {
        "before": comparison["before"],
        "after": comparison["after"],
        "statement_counts": comparison["statement_counts"],
        "statements": shown,
        "findings": {
            "new": [_finding_row(f) for f in findings["new"]],
            "resolved": [_finding_row(f) for f in findings["resolved"]],
            "persisting": len(findings["persisting"]),
        },
        "predictions": comparison.get("predictions", []),
    }


def _finding_row(f: dict) -> dict:
    return {
        "id": f["id"],
        "check": f["check"],
        "severity": f.get("severity"),
        "title": f.get("title"),
        "object": f.get("object") or finding_object(f),
    }


def _pct(before: float | None, after: float | None) -> float | None:
    if before is None or after is None or before == 0:
        return None
    return round((after - before) / before * 100.0, 1)
