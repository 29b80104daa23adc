"""An index whose key columns are a left prefix of another valid index.

## What it detects
A valid B-tree index A on a table that has another valid B-tree index B whose first key
columns are exactly A's key columns (same order, same operator classes), with the same
predicate (or neither partial), and whose key and INCLUDE columns contain A's INCLUDE
columns. Every lookup A serves, B serves too: `(city)` is redundant next to
`(city, zip)`. A unique, primary-key or exclusion index is never the one reported (it
enforces something B does not), and exact duplicates are left to `duplicate-index`.

## Why it matters
A redundant index costs writes, WAL, VACUUM time and cache like any other index, while
the planner could use the wider one for the same queries. It is usually left behind
when a composite index was added for a new query.

## How to fix
Drop the redundant index concurrently. The wider index is somewhat larger per entry, so
a query that depended on the narrow one may get a little slower; check the statements
that scan it (`idx_scan` in the evidence) first.

## Example
```sql
-- customers_city_idx (city) is a left prefix of customers_city_zip_idx (city, zip)
DROP INDEX CONCURRENTLY IF EXISTS public.customers_city_idx;
```

## Thresholds
None; medium severity when the redundant index is larger than `MEDIUM_BYTES` (8 MiB),
low otherwise.

## Known false positives
Sort direction (DESC, NULLS FIRST) and collation are not compared: an index kept for a
specific ORDER BY direction or collation may look redundant. A much narrower index
(e.g. `(id)` next to `(id, large_text)`) can still be worth keeping for index-only scans.
"""

from __future__ import annotations

from queryaudit.checks import declare
from queryaudit.checks._indexes import drop_finding, redundant_pairs
from queryaudit.findings import Finding
from queryaudit.snapshot import Snapshot

ID = "redundant-index"
TITLE = "Redundant index (left prefix of another)"
MEDIUM_BYTES = 8 * 1024 * 1024
CHECK = declare(ID, TITLE, family="hygiene", fix="drop-index", thresholds=("MEDIUM_BYTES",))


def run(snapshot: Snapshot) -> list[Finding]:
    return [
        drop_finding(
            ID,
            index,
            covering,
            "covered_by",
            f"Index {index.qualified_name} ({', '.join(index.columns)}) is a left prefix of "
            f"{covering.qualified_name} ({', '.join(covering.columns)})",
            MEDIUM_BYTES,
        )
        for index, covering in redundant_pairs(snapshot)
    ]
