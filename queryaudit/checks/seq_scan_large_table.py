"""A sequential scan of a large table that keeps few of its rows.

## What it detects
Seq Scan nodes (parallel ones included) on tables of at least `LARGE_TABLE_ROWS` rows
whose filter keeps at most `MAX_KEPT_SHARE` of the rows read: in EXPLAIN ANALYZE plans
from the actual rows and `Rows Removed by Filter`; in plans without ANALYZE from the
planner's estimate. The evidence names the table and the columns of the filter, the
input of the index advisor (missing-index), which proposes and verifies the index.

## Why it matters
The scan reads every page of the table to return a handful of rows, on every
execution; its cost grows with the table, not with the result.

## How to fix
An index on the filtered columns (equality columns first), verified by the index
advisor; or a partial index when the filter is a fixed condition.

## Example
```sql
-- Seq Scan on orders  Filter: (customer_id = 42)  Rows Removed by Filter: 99995
CREATE INDEX CONCURRENTLY ON public.orders (customer_id);
```

## Thresholds
Table >= 10 000 rows (`LARGE_TABLE_ROWS`), rows kept <= 1 % of rows read
(`MAX_KEPT_SHARE`). Severity follows the predicted saving (the scan's exclusive share
of the statement x the statement's share of total time), capped at medium when the
numbers are estimates.

## Known false positives
A rare report may be better served by a scan than by an index maintained on every
write; small statement shares are reported as low.
"""

from __future__ import annotations

from queryaudit.checks import declare
from queryaudit.checks._plans import captured_plans, columns_of, node_evidence, severity_for, table_for
from queryaudit.findings import Finding
from queryaudit.snapshot import Snapshot

ID = "seq-scan-large-table"
TITLE = "Sequential scan of a large table returning few rows"
LARGE_TABLE_ROWS = 10_000
MAX_KEPT_SHARE = 0.01
CHECK = declare(ID, TITLE, family="plan", fix="create-index", thresholds=("LARGE_TABLE_ROWS", "MAX_KEPT_SHARE"))


def run(snapshot: Snapshot) -> list[Finding]:
    findings = []
    for captured in captured_plans(snapshot):
        plan = captured.plan
        for node in plan.nodes:
            if node.node_type not in ("Seq Scan", "Parallel Seq Scan") or not node.raw.get("Filter"):
                continue
            table = table_for(snapshot, node)
            if table is None or table.reltuples < LARGE_TABLE_ROWS:
                continue
            if plan.analyzed:
                if node.never_executed:
                    continue
                kept = node.total_actual_rows or 0
                removed = node.rows_removed_by_filter
                read = kept + removed
                measured = True
            else:
                kept = node.estimated_rows * max(1, node.parallel_processes)
                read = table.reltuples
                measured = False
            if read < LARGE_TABLE_ROWS or kept > MAX_KEPT_SHARE * read:
                continue
            fraction = plan.share(node) if measured else _estimated_share(plan, node)
            saving = captured.saving(snapshot, fraction)
            severity = severity_for(saving)
            if not measured and severity == "high":
                severity = "medium"
            filter_columns = columns_of(table, node, ("Filter",))
            findings.append(
                Finding(
                    check=ID,
                    severity=severity,
                    title=f"Sequential scan of {table.qualified_name} ({table.reltuples:,.0f} rows) keeps "
                    f"{kept:,.0f} of {read:,.0f} rows",
                    table=table.qualified_name,
                    columns=filter_columns,
                    queryids=[captured.queryid],
                    advice="an index on the filtered columns; the index advisor (missing-index) verifies candidates",
                    predicted_saving=saving,
                    confidence="high" if measured else "low",
                    effort="index",
                    evidence={
                        **node_evidence(captured, node, snapshot),
                        "rows_read": read,
                        "rows_kept": kept,
                        "kept_share": round(kept / read, 6) if read else None,
                        "measured": measured,
                        "filter": node.raw.get("Filter"),
                        "filter_columns": filter_columns,
                        "table_rows": table.reltuples,
                        "table_pages": table.relpages,
                    },
                    key=f"{ID}|{captured.queryid}|{node.path}",
                )
            )
    return findings


def _estimated_share(plan, node) -> float:
    """Without ANALYZE: the scan's own cost as a share of the plan's total cost."""
    total = plan.root.total_cost
    own = node.total_cost - sum(c.total_cost for c in node.children)
    return max(0.0, min(1.0, own / total)) if total > 0 else 0.0
