"""An index identical to another index on the same table.

## What it detects
Two or more valid indexes on one table with the same access method, the same key
columns and expressions in the same order, the same operator classes, the same INCLUDE
columns and the same predicate. The one to keep is, in order: the one backing a
constraint, a unique one, the most scanned, the one with PostgreSQL's own name; the
others are reported. A unique, primary-key or exclusion index is never the one
reported.

## Why it matters
The planner can use only one of them for a lookup, yet every INSERT, every non-HOT
UPDATE and every VACUUM maintains all of them: twice the write amplification, WAL,
cache and disk for no read benefit. Duplicates usually come from an ORM migration that
re-creates an index under another name, or from an index added to "fix" a query that
already had one.

## How to fix
Drop the duplicate concurrently (no lock that blocks reads or writes). Check first that
no `pg_hint_plan` hint or application code names the index you drop.

## Example
```sql
-- products_category_idx and products_category_dup_idx are both (category)
DROP INDEX CONCURRENTLY IF EXISTS public.products_category_dup_idx;
```

## Thresholds
None: every duplicate is reported; medium severity when the duplicate is larger than
`MEDIUM_BYTES` (8 MiB), low otherwise.

## Known false positives
Indexes that differ only by collation or sort direction (ASC/DESC, NULLS FIRST) look the
same in the catalog columns read here; compare the definitions in the evidence before
dropping.
"""

from __future__ import annotations

from queryaudit.checks import declare
from queryaudit.checks._indexes import drop_finding, duplicate_groups
from queryaudit.findings import Finding, size_text
from queryaudit.snapshot import Snapshot

ID = "duplicate-index"
TITLE = "Duplicate index"
MEDIUM_BYTES = 8 * 1024 * 1024
CHECK = declare(ID, TITLE, family="hygiene", fix="drop-index", thresholds=("MEDIUM_BYTES",))


def run(snapshot: Snapshot) -> list[Finding]:
    return [
        drop_finding(
            ID,
            index,
            keep,
            "duplicate_of",
            f"Index {index.qualified_name} duplicates {keep.qualified_name} "
            f"({size_text(index.bytes)} maintained for nothing)",
            MEDIUM_BYTES,
        )
        for keep, duplicates in duplicate_groups(snapshot)
        for index in duplicates
    ]
