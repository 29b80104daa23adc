"""An index left invalid, usually by a failed or cancelled CREATE INDEX CONCURRENTLY.

## What it detects
Indexes whose `pg_index.indisvalid` is false.

## Why it matters
PostgreSQL never uses an invalid index to answer queries, yet it still maintains it
on every INSERT and UPDATE (once `indisready` is set): the table pays the write cost
and gets none of the read benefit. A unique index left invalid enforces nothing the
planner can rely on. Invalid indexes usually come from `CREATE INDEX CONCURRENTLY` or
`REINDEX CONCURRENTLY` that failed (a duplicate key, a deadlock, a cancelled session).

## How to fix
Drop the invalid index and build it again concurrently, outside a transaction block.
If it failed on a duplicate key, remove the duplicates first.

## Example
```sql
DROP INDEX CONCURRENTLY IF EXISTS public.orders_customer_id_idx;
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_customer_id_idx ON public.orders (customer_id);
```

## Thresholds
None: every invalid index is reported, high severity when it is still maintained.

## Known false positives
An index being built right now by `CREATE INDEX CONCURRENTLY` is invalid until the
build ends; re-run the audit after it completes.
"""
from __future__ import annotations

from queryaudit.checks import declare
from queryaudit.findings import Finding
from queryaudit.snapshot import Snapshot

ID = "invalid-index"
TITLE = "Invalid index"
CHECK = declare(ID, TITLE, family="hygiene", fix="rebuild-index")


def fix_sql(definition: str, qualified_index: str) -> str:
    """Drop and rebuild concurrently; pg_get_indexdef gives the definition to rebuild."""
    create = definition.replace("CREATE INDEX ", "CREATE INDEX CONCURRENTLY IF NOT EXISTS ", 1)
    create = create.replace("CREATE UNIQUE INDEX ", "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ", 1)
    return f"DROP INDEX CONCURRENTLY IF EXISTS {qualified_index};\n{create};"


def run(snapshot: Snapshot) -> list[Finding]:
    findings = []
    for index in snapshot.indexes:
        if index.is_valid:
            continue
        findings.append(Finding(
            check=ID, severity="high" if index.is_ready else "medium",
            title=f"Index {index.qualified_name} is invalid: never used, "
                  f"{'still maintained on every write' if index.is_ready else 'not maintained'}",
            table=index.table, index=index.qualified_name, columns=index.columns,
            fix_sql=fix_sql(index.definition, index.qualified_name), confidence="high", effort="index",
            evidence={"definition": index.definition, "indisvalid": False, "indisready": index.is_ready,
                      "size_bytes": index.bytes},
        ))
    return findings
