"""A proposed index sized on the plan that reproduces the workload, without HypoPG.

The advisor's estimate without HypoPG comes from the generic plan and pg_stats; the plan
capture kept an EXPLAIN ANALYZE with the values closest to the workload
(queryaudit.plans.workload). Its sequential scan of the index's table, filtered on the
index's leading column, says what the workload's own values keep: a scan keeping 0.25 %
of the table is what the index serves; one keeping 98 % is never served by an index.
Not a check (the leading underscore keeps it out of the registry); the missing-index
check reads it when `snapshot.extras["index_sizing"]` (HypoPG) has nothing for a statement.
"""

from __future__ import annotations

from queryaudit.checks._plans import captured_plans, columns_of, table_for
from queryaudit.snapshot import Snapshot

MAX_KEPT_SHARE = 0.2  # a scan keeping more of the table than this is not one an index would replace
ESTIMATE_CAP = 0.9  # the index still costs lookups: at most this much of the scan is removed


def plan_sizing(snapshot: Snapshot, table: str, leading_column: str, queryid: str) -> dict | None:
    """The share of the statement the index removes, on the values of its representative
    plan, or None when that plan has no filtered scan of the table on the column."""
    captured = next((c for c in captured_plans(snapshot) if c.queryid == queryid and c.plan.analyzed), None)
    match = captured.capture.workload_match if captured else None
    if captured is None or match is None or match.verdict == "unknown":
        return None
    for node in captured.plan.nodes:
        if node.node_type not in ("Seq Scan", "Parallel Seq Scan") or node.never_executed:
            continue
        found = table_for(snapshot, node)
        if found is None or found.qualified_name != table or leading_column not in columns_of(found, node, ("Filter",)):
            continue
        kept = node.total_actual_rows or 0.0
        read = kept + node.rows_removed_by_filter
        kept_share = kept / read if read else 1.0
        uses = kept_share <= MAX_KEPT_SHARE
        return {
            "queryid": queryid,
            "values": list(captured.capture.parameters),
            "method": "plan",
            "verdict": match.verdict,
            "rows_ratio": match.rows_ratio,
            "rows_kept": kept,
            "rows_read": read,
            "uses_index": uses,
            "fraction_removed": round(ESTIMATE_CAP * captured.plan.share(node) * (1 - kept_share), 4) if uses else 0.0,
        }
    return None
