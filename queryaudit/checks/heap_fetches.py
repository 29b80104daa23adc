"""An index-only scan that fetched many rows from the table: the visibility map is stale.

## What it detects
Index Only Scan nodes of EXPLAIN ANALYZE plans whose `Heap Fetches` are a large part of
the rows they returned.

## Why it matters
An index-only scan skips the table only for pages the visibility map marks all-visible.
Pages changed since the last VACUUM are fetched from the heap for every row, so the
"index-only" scan does the random heap reads of a plain index scan.

## How to fix
`VACUUM` the table (it sets the visibility map), and let autovacuum vacuum it more
often on insert- or update-heavy tables (`autovacuum_vacuum_scale_factor`,
`autovacuum_vacuum_insert_scale_factor` on 13+).

## Example
```sql
-- Index Only Scan using orders_created_at_idx on orders  Heap Fetches: 48210
VACUUM (ANALYZE) public.orders;
```

## Thresholds
Heap fetches >= 10 % of the rows returned (`MIN_FETCH_RATIO`) and >= 1 000
(`MIN_FETCHES`). Severity follows the predicted saving (the scan's exclusive share of
the statement x the statement's share of total time).

## Known false positives
A table changed continuously is never all-visible for long; vacuuming helps until the
next wave of writes.
"""

from __future__ import annotations

from queryaudit.checks import declare
from queryaudit.checks._plans import analyzed_plans, node_evidence, qualified, severity_for, table_for
from queryaudit.findings import Finding
from queryaudit.snapshot import Snapshot

ID = "heap-fetches"
TITLE = "Index-only scan fetching heap rows"
MIN_FETCH_RATIO = 0.10
MIN_FETCHES = 1000
CHECK = declare(ID, TITLE, family="plan", fix="vacuum", thresholds=("MIN_FETCH_RATIO", "MIN_FETCHES"))


def run(snapshot: Snapshot) -> list[Finding]:
    findings = []
    for captured in analyzed_plans(snapshot):
        for node in captured.plan.nodes:
            if node.node_type != "Index Only Scan":
                continue
            fetches = float(node.raw.get("Heap Fetches") or 0)
            returned = node.total_actual_rows or 0
            if fetches < MIN_FETCHES or fetches < MIN_FETCH_RATIO * max(returned, 1):
                continue
            table = table_for(snapshot, node)
            saving = captured.saving(snapshot, captured.plan.share(node) * min(1.0, fetches / max(returned, 1)))
            name = table.qualified_name if table else node.relation
            findings.append(
                Finding(
                    check=ID,
                    severity=severity_for(saving),
                    title=f"Index-only scan on {name} fetched {fetches:,.0f} rows from the table",
                    table=table.qualified_name if table else None,
                    index=node.index_name,
                    queryids=[captured.queryid],
                    fix_sql=f"VACUUM (ANALYZE) {qualified(table)};" if table else None,
                    advice="vacuum the table so the visibility map marks its pages all-visible; "
                    "tune autovacuum to vacuum it more often",
                    predicted_saving=saving,
                    confidence="medium",
                    effort="maintenance",
                    evidence={
                        **node_evidence(captured, node, snapshot),
                        "heap_fetches": fetches,
                        "rows_returned": returned,
                        "n_dead_tup": table.n_dead_tup if table else None,
                        "last_vacuum": (table.last_vacuum or table.last_autovacuum) if table else None,
                    },
                    key=f"{ID}|{name}|{node.index_name}",
                )
            )
    return findings
