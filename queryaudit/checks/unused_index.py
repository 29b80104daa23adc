"""An index never scanned since the statistics were reset.

## What it detects
Valid indexes with `pg_stat_user_indexes.idx_scan = 0` that are larger than
`MIN_BYTES`. Indexes backing a primary key, unique or exclusion constraint, and unique
indexes, are never reported: they enforce something even when no query reads them.
Indexes already reported as duplicate or redundant are left to those checks. The
finding says since when the statistics cover (`pg_stat_database.stats_reset`, else the
server start).

## Why it matters
An index nobody reads still costs on every write: each INSERT and non-HOT UPDATE adds an
entry (and WAL), it can turn HOT updates into non-HOT ones, VACUUM scans it, and it takes
cache and disk. Dropping it speeds up writes and VACUUM and frees memory for the
indexes that are used.

## How to fix
Confirm the window is long enough to include monthly and yearly jobs, and that the
index is not used on another server (the counters are per server: a replica's reads are
not counted on the primary and the other way round). Then drop it concurrently; keep
its definition (in the evidence) to re-create it if needed.

## Example
```sql
DROP INDEX CONCURRENTLY IF EXISTS public.orders_total_idx;
-- to undo: CREATE INDEX CONCURRENTLY orders_total_idx ON public.orders USING btree (total);
```

## Thresholds
`MIN_BYTES` (1 MiB): smaller indexes cost too little to matter. Severity medium from
`MEDIUM_BYTES` (100 MiB) when the statistics cover at least `TRUSTED_DAYS` (7) days, else
low. Confidence: high from 30 days of statistics, medium from 7, low below.

## Known false positives
Statistics reset recently, or a workload that runs rarely (month-end reports). An index
used only on a replica, or only by the planner for its statistics (an expression
index's statistics help estimates even when it is never scanned).
"""
from __future__ import annotations

from queryaudit.checks import declare
from queryaudit.checks._indexes import drop_sql, duplicate_groups, protected, redundant_pairs, stats_since, \
    window_days
from queryaudit.findings import Finding
from queryaudit.snapshot import Snapshot

ID = "unused-index"
TITLE = "Unused index"
MIN_BYTES = 1024 * 1024
MEDIUM_BYTES = 100 * 1024 * 1024
TRUSTED_DAYS = 7
CONFIDENT_DAYS = 30
CHECK = declare(ID, TITLE, family="hygiene", fix="drop-index",
                thresholds=("MIN_BYTES", "MEDIUM_BYTES", "TRUSTED_DAYS", "CONFIDENT_DAYS"))


def run(snapshot: Snapshot) -> list[Finding]:
    elsewhere = {d.qualified_name for _, dups in duplicate_groups(snapshot) for d in dups}
    elsewhere |= {a.qualified_name for a, _ in redundant_pairs(snapshot)}
    since, days = stats_since(snapshot), window_days(snapshot)
    confidence = "low" if days is None or days < TRUSTED_DAYS else "medium" if days < CONFIDENT_DAYS else "high"
    window = f"since {since}" if since else "since the statistics began"
    if days is not None:
        window += f" ({days:.1f} days)"
    findings = []
    for index in snapshot.indexes:
        if (not index.is_valid or index.idx_scan > 0 or protected(index) or index.bytes < MIN_BYTES
                or index.qualified_name in elsewhere):
            continue
        serious = index.bytes >= MEDIUM_BYTES and days is not None and days >= TRUSTED_DAYS
        table = snapshot.table(index.table)
        findings.append(Finding(
            check=ID, severity="medium" if serious else "low",
            title=f"Index {index.qualified_name} ({index.bytes / 1024 / 1024:.1f} MiB) was never scanned {window}",
            table=index.table, index=index.qualified_name, columns=index.columns, fix_sql=drop_sql(index),
            confidence=confidence, effort="index",
            evidence={"definition": index.definition, "idx_scan": 0, "size_bytes": index.bytes,
                      "statistics_since": since, "window_days": round(days, 2) if days is not None else None,
                      "last_idx_scan": index.last_idx_scan, "in_recovery": snapshot.server.in_recovery,
                      "table_writes": (table.n_tup_ins + table.n_tup_upd + table.n_tup_del) if table else None,
                      "note": "counters are per server: check the primary and every replica before dropping"},
        ))
    return findings
