"""Trends for the audit report (`audit --store`): each top statement's mean time and calls over
the stored windows, when its plan changed, and each finding's lifecycle (new, open for N
days, resolved; first seen). Read from the store once; assembled here (pure); drawn by
the report's `_trends.html.j2` partial as inline SVG.
"""

from __future__ import annotations

import datetime as dt

WINDOWS = 30  # the stored audits a trend spans
STATEMENTS = 20


def _days(start: str | None, end: str | None) -> float | None:
    try:
        return round((dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds() / 86400, 1)
    except (TypeError, ValueError):
        return None


def plan_history(audits: list[dict], queryid: str) -> list[dict]:
    """The audits where the statement's plan shape changed (the first one it had included)."""
    out, last = [], None
    for audit in audits:
        shape = ((audit.get("evidence") or {}).get("statements") or {}).get(queryid)
        if not shape or shape["fingerprint"] == last:
            continue
        out.append(
            {
                "audit_id": audit["id"],
                "collected_at": audit["collected_at"],
                "fingerprint": shape["fingerprint"],
                "nodes": shape["nodes"][:6],
                "changed": last is not None,
            }
        )
        last = shape["fingerprint"]
    return out


def statement_trends(audits: list[dict], series: dict, queries: list[dict]) -> list[dict]:
    out = []
    for q in queries:
        points = []
        for audit in audits:
            point = series.get((audit["id"], q["queryid"]))
            calls = point["calls"] if point else 0
            points.append(
                {
                    "audit_id": audit["id"],
                    "collected_at": audit["collected_at"],
                    "calls": calls,
                    "mean_ms": round(point["total_ms"] / calls, 4) if point and calls else None,
                }
            )
        out.append(
            {
                "queryid": q["queryid"],
                "query": q["query"],
                "points": points,
                "plans": plan_history(audits, q["queryid"]),
            }
        )
    return out


def lifecycle(report: dict, seen: dict[str, dict], previous_ids: set[str], now: str) -> list[dict]:
    """Each finding of this audit (new, or open since it was first seen) and each one of the
    audit before that this one no longer has (resolved)."""
    out = []
    current = {f["id"] for f in report.get("findings", [])}
    for f in report.get("findings", []):
        info = seen.get(f["id"])
        first = info["first_seen"] if info else now
        # New: no stored audit before this one had it (this one is stored too when recorded).
        state = "new" if first >= now else "open"
        out.append(
            {
                "id": f["id"],
                "check": f["check"],
                "severity": f["severity"],
                "title": f["title"],
                "state": state,
                "first_seen": first,
                "open_days": _days(first, now),
            }
        )
    for finding_id in sorted(previous_ids - current):
        info = seen.get(finding_id) or {}
        out.append(
            {
                "id": finding_id,
                "check": info.get("check"),
                "severity": info.get("severity"),
                "title": info.get("title"),
                "state": "resolved",
                "first_seen": info.get("first_seen"),
                "open_days": _days(info.get("first_seen"), info.get("last_seen")),
            }
        )
    return out


def trends_section(store, target_id: int, report: dict, audit_id: int | None) -> dict:
    """report["history"]["trends"]: read from the store (this audit included when recorded)."""
    audits = store.recent_audits(target_id, WINDOWS)
    queries = report.get("queries", [])[:STATEMENTS]
    series = store.statement_series([a["id"] for a in audits], [q["queryid"] for q in queries]) if audits else {}
    seen = store.finding_lifecycle(target_id)
    earlier = [a for a in audits if a["id"] != audit_id]
    previous_ids = (
        {f for f, info in seen.items() if earlier and info["last_seen"] >= earlier[-1]["collected_at"]}
        if earlier
        else set()
    )
    now = (report.get("window") or {}).get("collected_at") or dt.datetime.now(dt.UTC).isoformat()
    return {
        "audits": len(audits),
        "statements": statement_trends(audits, series, queries),
        "findings": lifecycle(report, seen, previous_ids, now),
    }
