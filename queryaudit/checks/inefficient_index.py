"""An index scan that discards most of the rows it reads with a filter.

## What it detects
Index Scan, Index Only Scan and Bitmap Heap Scan nodes of EXPLAIN ANALYZE plans where
`Rows Removed by Filter` is most of what the index returned: the index condition
narrows little, and the filter on other columns does the real selection.

## Why it matters
Each row the index returns costs a heap visit (often a random read) before the filter
throws it away. An index that also covers the filtered columns reads only the rows
that match.

## How to fix
Extend the index with the filtered columns (equality columns first, then ranges), or
create one that leads with the most selective filtered column. The index advisor
(missing-index) verifies such candidates with hypothetical indexes.

## Example
```sql
-- Index Scan using orders_customer_id_idx  Index Cond: (customer_id = 42)
--   Filter: (status = 'paid')  Rows Removed by Filter: 9800
CREATE INDEX CONCURRENTLY ON public.orders (customer_id, status);
```

## Thresholds
Rows removed by filter >= 1 000 in total (`MIN_ROWS_REMOVED`) and >= 90 % of the rows
the index returned (`MIN_DISCARDED_SHARE`). Severity follows the predicted saving (the
node's exclusive share of the statement x the discarded share x the statement's share
of total time).

## Known false positives
A filter on an expression or a column of low selectivity may not be worth indexing;
the suggested index costs writes on the table.
"""

from __future__ import annotations

from queryaudit.advisor.ddl import create_index_sql
from queryaudit.checks import declare
from queryaudit.checks._plans import analyzed_plans, columns_of, node_evidence, severity_for, table_for
from queryaudit.findings import Finding
from queryaudit.snapshot import Snapshot

ID = "inefficient-index"
TITLE = "Index scan discarding most rows"
MIN_ROWS_REMOVED = 1000
MIN_DISCARDED_SHARE = 0.90
INDEX_SCANS = ("Index Scan", "Index Only Scan", "Bitmap Heap Scan")
CHECK = declare(ID, TITLE, family="plan", fix="create-index", thresholds=("MIN_ROWS_REMOVED", "MIN_DISCARDED_SHARE"))


def run(snapshot: Snapshot) -> list[Finding]:
    findings = []
    for captured in analyzed_plans(snapshot):
        for node in captured.plan.nodes:
            if node.node_type not in INDEX_SCANS:
                continue
            removed = node.rows_removed_by_filter
            kept = node.total_actual_rows or 0
            if removed < MIN_ROWS_REMOVED or removed < MIN_DISCARDED_SHARE * (removed + kept):
                continue
            table = table_for(snapshot, node)
            index = node.index_name or next((c.index_name for c in node.children if c.index_name), None)
            lead = columns_of(table, node, ("Index Cond", "Recheck Cond")) or [
                c for child in node.children for c in columns_of(table, child, ("Index Cond",))
            ]
            filtered = [c for c in columns_of(table, node, ("Filter",)) if c not in lead]
            columns = lead + filtered
            discarded = removed / (removed + kept)
            saving = captured.saving(snapshot, captured.plan.share(node) * discarded)
            fix = create_index_sql(table.qualified_name, columns, snapshot=snapshot) if table and filtered else None
            findings.append(
                Finding(
                    check=ID,
                    severity=severity_for(saving),
                    title=f"{node.label} discards {discarded:.0%} of the rows it reads ({removed:,.0f} by filter)",
                    table=table.qualified_name if table else None,
                    index=_qualified_index(snapshot, index),
                    columns=columns,
                    queryids=[captured.queryid],
                    fix_sql=fix,
                    advice="an index that also covers the filtered columns reads only the matching rows",
                    predicted_saving=saving,
                    confidence="medium",
                    effort="index",
                    evidence={
                        **node_evidence(captured, node, snapshot),
                        "rows_removed_by_filter": removed,
                        "rows_returned": kept,
                        "discarded_share": round(discarded, 4),
                        "filter": node.raw.get("Filter"),
                        "filter_columns": filtered,
                    },
                    key=f"{ID}|{captured.queryid}|{node.path}",
                )
            )
    return findings


def _qualified_index(snapshot: Snapshot, name: str | None) -> str | None:
    if not name:
        return None
    index = next((i for i in snapshot.indexes if i.name == name), None)
    return index.qualified_name if index else name
