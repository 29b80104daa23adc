"""An index never scanned since the statistics were reset.

## What it detects
Valid indexes with `pg_stat_user_indexes.idx_scan = 0` that are larger than
`MIN_BYTES`. Indexes backing a primary key, unique or exclusion constraint, and unique
indexes, are never reported: they enforce something even when no query reads them.
Indexes already reported as duplicate or redundant are left to those checks. The
finding says since when the statistics cover (`pg_stat_database.stats_reset`, else the
server start).

No verdict without history: an index is called unused only when the statistics have
watched it for at least `MIN_WINDOW_DAYS` (7; `queryaudit audit --unused-index-min-days`).
The window is the shorter of the server's (since `pg_stat_database.stats_reset`, else the
server start) and the index's own age when the history store knows it (`--store`: the
audit where the index first appeared, for indexes that appeared after the target's first
stored audit). Unscanned indexes with a shorter window are listed in one info finding,
"not enough history", with no fix.

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
`MIN_WINDOW_DAYS` (7) of statistics before any verdict (configurable per audit).
`MIN_BYTES` (1 MiB): smaller indexes cost too little to matter. Severity medium from
`MEDIUM_BYTES` (100 MiB) when the statistics cover at least `TRUSTED_DAYS` (7) days, else
low. Confidence: high from 30 days of statistics, medium from 7, low below.

## Known false positives
Statistics reset recently, or a workload that runs rarely (month-end reports). An index
used only on a replica, or only by the planner for its statistics (an expression
index's statistics help estimates even when it is never scanned).
"""

from __future__ import annotations

import datetime as dt

from queryaudit.checks import declare
from queryaudit.checks._indexes import drop_sql, duplicate_groups, protected, redundant_pairs, stats_since, window_days
from queryaudit.findings import Finding, size_text
from queryaudit.snapshot import Index, Snapshot

ID = "unused-index"
TITLE = "Unused index"
MIN_BYTES = 1024 * 1024
MEDIUM_BYTES = 100 * 1024 * 1024
MIN_WINDOW_DAYS = 7.0  # default of snapshot.extras["unused_index_min_days"]
TRUSTED_DAYS = 7
CONFIDENT_DAYS = 30
CHECK = declare(
    ID,
    TITLE,
    family="hygiene",
    fix="drop-index",
    thresholds=("MIN_BYTES", "MEDIUM_BYTES", "MIN_WINDOW_DAYS", "TRUSTED_DAYS", "CONFIDENT_DAYS"),
)


def _days_between(start: str | None, end: str | None) -> float | None:
    try:
        a, b = dt.datetime.fromisoformat(start), dt.datetime.fromisoformat(end)
    except (TypeError, ValueError):
        return None
    if (a.tzinfo is None) != (b.tzinfo is None):
        a, b = a.replace(tzinfo=None), b.replace(tzinfo=None)
    return max(0.0, (b - a).total_seconds() / 86400)


def index_window(snapshot: Snapshot, index: Index, server_days: float | None) -> tuple[float | None, str]:
    """Days the statistics have watched this index, and what bounds it."""
    first_seen = (snapshot.extras.get("index_first_seen") or {}).get(index.qualified_name)
    age = _days_between(first_seen, snapshot.collected_at) if first_seen else None
    if age is not None and (server_days is None or age < server_days):
        return age, f"first seen by the history store at {first_seen}"
    return server_days, "server statistics"


def run(snapshot: Snapshot) -> list[Finding]:
    elsewhere = {d.qualified_name for _, dups in duplicate_groups(snapshot) for d in dups}
    elsewhere |= {a.qualified_name for a, _ in redundant_pairs(snapshot)}
    since, server_days = stats_since(snapshot), window_days(snapshot)
    min_days = float(snapshot.extras.get("unused_index_min_days", MIN_WINDOW_DAYS))
    findings, too_young = [], []
    for index in snapshot.indexes:
        if (
            not index.is_valid
            or index.idx_scan > 0
            or protected(index)
            or index.bytes < MIN_BYTES
            or index.qualified_name in elsewhere
        ):
            continue
        days, bounded_by = index_window(snapshot, index, server_days)
        if days is None or days < min_days:
            too_young.append(
                {
                    "index": index.qualified_name,
                    "size_bytes": index.bytes,
                    "window_days": round(days, 3) if days is not None else None,
                    "bounded_by": bounded_by,
                }
            )
            continue
        confidence = "low" if days < TRUSTED_DAYS else "medium" if days < CONFIDENT_DAYS else "high"
        window = f"since {since}" if since and bounded_by == "server statistics" else f"({bounded_by})"
        window += f" ({days:.1f} days)"
        serious = index.bytes >= MEDIUM_BYTES and days >= TRUSTED_DAYS
        table = snapshot.table(index.table)
        findings.append(
            Finding(
                check=ID,
                severity="medium" if serious else "low",
                title=f"Index {index.qualified_name} ({size_text(index.bytes)}) was never scanned {window}",
                table=index.table,
                index=index.qualified_name,
                columns=index.columns,
                fix_sql=drop_sql(index),
                confidence=confidence,
                effort="index",
                evidence={
                    "definition": index.definition,
                    "idx_scan": 0,
                    "size_bytes": index.bytes,
                    "statistics_since": since,
                    "window_days": round(days, 2),
                    "window_bounded_by": bounded_by,
                    "min_window_days": min_days,
                    "last_idx_scan": index.last_idx_scan,
                    "in_recovery": snapshot.server.in_recovery,
                    "table_writes": (table.n_tup_ins + table.n_tup_upd + table.n_tup_del) if table else None,
                    "note": "counters are per server: check the primary and every replica before dropping",
                },
            )
        )
    if too_young:
        shortest = min((i["window_days"] for i in too_young if i["window_days"] is not None), default=None)
        span = f"{shortest:.1f} days" if shortest is not None else "an unknown time"
        findings.append(
            Finding(
                check=ID,
                severity="info",
                confidence="low",
                effort="index",
                title=f"Not enough history to call {len(too_young)} unscanned "
                f"index{'es' if len(too_young) > 1 else ''} unused: watched for {span}, {min_days:g} days needed",
                advice=f"Re-audit once the statistics cover {min_days:g} days (since the last statistics reset, "
                "and since each index was created); record audits with --store so queryaudit knows when an index "
                "appeared.",
                evidence={
                    "indexes": too_young,
                    "min_window_days": min_days,
                    "statistics_since": since,
                    "server_window_days": round(server_days, 3) if server_days is not None else None,
                },
                key="not-enough-history",
            )
        )
    return findings
