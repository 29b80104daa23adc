"""A foreign key whose columns lead no index on the referencing table.

## What it detects
Foreign keys where no valid, non-partial index on the referencing (child) table has the
foreign-key columns as its leading key columns (in any order). The finding is weighted
by the deletes and updates on the referenced (parent) table, which are what make
PostgreSQL look up the child rows.

## Why it matters
PostgreSQL indexes the referenced side (it must be unique) but never the referencing
side. Every DELETE of a parent row and every UPDATE of its key runs a lookup of the
child table by the foreign-key columns; without an index that is a sequential scan of
the child, per parent row, under a lock. `ON DELETE CASCADE` makes it worse. Joins from
the parent to its children (`JOIN orders o ON o.customer_id = c.id`) need the same index.

## How to fix
Create an index on the foreign-key columns, concurrently.

## Example
```sql
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_customer_id_idx ON public.orders (customer_id);
```

## Thresholds
Severity high when the parent saw at least `HIGH_PARENT_WRITES` (1000) deletes and
updates and the child has at least `HIGH_CHILD_ROWS` (10 000) rows; medium when the
parent saw any delete or update and the child has at least `MIN_CHILD_ROWS` (1000)
rows, or the child alone has at least `LARGE_CHILD_ROWS` (100 000) rows; low otherwise.

## Known false positives
A parent that is never deleted from and whose key never changes, with children never
joined from the parent side: the index would only cost writes. `n_tup_upd` counts all
updates of the parent, not only those of its key.
"""

from __future__ import annotations

from queryaudit.advisor.candidates import Candidate
from queryaudit.advisor.select import create_sql, index_name
from queryaudit.checks import declare
from queryaudit.findings import Finding
from queryaudit.snapshot import ForeignKey, Snapshot

ID = "fk-without-index"
TITLE = "Foreign key without an index"
HIGH_PARENT_WRITES = 1000
HIGH_CHILD_ROWS = 10_000
MIN_CHILD_ROWS = 1000
LARGE_CHILD_ROWS = 100_000
CHECK = declare(
    ID,
    TITLE,
    family="hygiene",
    fix="create-index",
    thresholds=("HIGH_PARENT_WRITES", "HIGH_CHILD_ROWS", "MIN_CHILD_ROWS", "LARGE_CHILD_ROWS"),
)


def _indexed(snapshot: Snapshot, fk: ForeignKey) -> bool:
    n = len(fk.columns)
    for index in snapshot.indexes_of(fk.table):
        if index.is_valid and not index.predicate and (index.method == "btree" or (index.method == "hash" and n == 1)):
            if set(c.strip('"') for c in index.columns[:n]) == set(fk.columns):
                return True
    return False


def run(snapshot: Snapshot) -> list[Finding]:
    findings = []
    taken = {i.name for i in snapshot.indexes}
    for fk in snapshot.foreign_keys:
        if _indexed(snapshot, fk):
            continue
        parent, child = snapshot.table(fk.ref_table), snapshot.table(fk.table)
        parent_writes = (parent.n_tup_del + parent.n_tup_upd) if parent else 0
        child_rows = max(child.reltuples, 0) if child else 0
        if parent_writes >= HIGH_PARENT_WRITES and child_rows >= HIGH_CHILD_ROWS:
            severity = "high"
        elif (parent_writes > 0 and child_rows >= MIN_CHILD_ROWS) or child_rows >= LARGE_CHILD_ROWS:
            severity = "medium"
        else:
            severity = "low"
        candidate = Candidate(fk.table, tuple(fk.columns), equality_prefix=len(fk.columns))
        name = index_name(candidate, taken)
        findings.append(
            Finding(
                check=ID,
                severity=severity,
                title=f"Foreign key {fk.name} ({fk.table} ({', '.join(fk.columns)}) -> {fk.ref_table}) has no index: "
                f"each delete or key update on {fk.ref_table} scans {fk.table}",
                table=fk.table,
                columns=list(fk.columns),
                fix_sql=create_sql(candidate, name, snapshot=snapshot),
                confidence="high",
                effort="index",
                key=f"{fk.table}|{fk.name}",
                evidence={
                    "constraint": fk.name,
                    "referenced_table": fk.ref_table,
                    "referenced_columns": fk.ref_columns,
                    "on_delete": fk.on_delete,
                    "parent_deletes": parent.n_tup_del if parent else None,
                    "parent_updates": parent.n_tup_upd if parent else None,
                    "child_rows": int(child_rows),
                },
            )
        )
    return findings
