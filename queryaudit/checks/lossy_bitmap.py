"""A bitmap heap scan whose bitmap went lossy: whole pages rechecked row by row.

## What it detects
Bitmap Heap Scan nodes of EXPLAIN ANALYZE plans with `Lossy Heap Blocks` > 0.

## Why it matters
When the bitmap of matching rows does not fit in work_mem, PostgreSQL keeps one bit per
page instead of one per row ("lossy"), then rechecks every row of those pages against
the condition (`Rows Removed by Index Recheck`). The scan reads and tests far more rows
than match.

## How to fix
More work_mem for this statement (scoped with `SET LOCAL` or per role), sized from the
number of heap blocks; or a more selective index so the bitmap is smaller.

## Example
```sql
-- Heap Blocks: exact=1200 lossy=52000
SET LOCAL work_mem = '16MB';
```

## Thresholds
Every lossy bitmap heap scan. Severity follows the predicted saving (the scan's
exclusive share of the statement x the statement's share of total time).

## Known false positives
When most rows of the lossy pages match anyway, the recheck costs little.
"""

from __future__ import annotations

from queryaudit.checks import declare
from queryaudit.checks._plans import (
    analyzed_plans,
    node_evidence,
    scoped_work_mem_sql,
    severity_for,
    table_for,
    work_mem_for,
)
from queryaudit.findings import Finding
from queryaudit.snapshot import Snapshot

ID = "lossy-bitmap"
TITLE = "Lossy bitmap heap scan"
# An exact bitmap costs roughly this many bytes per heap page (tidbitmap.c's page entry).
BYTES_PER_EXACT_PAGE = 64
CHECK = declare(ID, TITLE, family="plan", fix="setting", thresholds=("BYTES_PER_EXACT_PAGE",))


def run(snapshot: Snapshot) -> list[Finding]:
    findings = []
    for captured in analyzed_plans(snapshot):
        for node in captured.plan.nodes:
            lossy = int(node.raw.get("Lossy Heap Blocks") or 0)
            if node.node_type != "Bitmap Heap Scan" or lossy <= 0:
                continue
            exact = int(node.raw.get("Exact Heap Blocks") or 0)
            table = table_for(snapshot, node)
            saving = captured.saving(snapshot, captured.plan.share(node))
            work_mem = work_mem_for((exact + lossy) * BYTES_PER_EXACT_PAGE / 1024)
            findings.append(
                Finding(
                    check=ID,
                    severity=severity_for(saving),
                    title=f"Bitmap scan of {table.qualified_name if table else node.relation} went lossy on "
                    f"{lossy:,} pages",
                    table=table.qualified_name if table else None,
                    queryids=[captured.queryid],
                    fix_sql=scoped_work_mem_sql(work_mem),
                    advice=f"give this statement work_mem = {work_mem}, or a more selective index",
                    predicted_saving=saving,
                    confidence="medium",
                    effort="config",
                    evidence={
                        **node_evidence(captured, node, snapshot),
                        "lossy_heap_blocks": lossy,
                        "exact_heap_blocks": exact,
                        "rows_removed_by_index_recheck": node.rows_removed_by_index_recheck,
                        "suggested_work_mem": work_mem,
                    },
                    key=f"{ID}|{captured.queryid}|{node.path}",
                )
            )
    return findings
