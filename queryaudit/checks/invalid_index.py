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
A unique index usually failed on duplicate keys, which are still there: its fix starts
with the query that lists them and says it needs a manual step (`evidence.manual_step`):
remove or merge the duplicates, then drop and rebuild.

## Example
```sql
DROP INDEX CONCURRENTLY IF EXISTS public.orders_customer_id_idx;
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_customer_id_idx ON public.orders (customer_id);
-- a unique index: first the duplicates it failed on (a manual step: remove or merge them)
SELECT email, count(*) AS rows FROM public.customers WHERE email IS NOT NULL
GROUP BY email HAVING count(*) > 1 ORDER BY count(*) DESC LIMIT 100;
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
from queryaudit.snapshot import Index, Snapshot
from queryaudit.sql import quote_qualified

ID = "invalid-index"
TITLE = "Invalid index"
DUPLICATES_SHOWN = 100
MANUAL_STEP = (
    "remove or merge the duplicate keys the first query lists (which row to keep is a business "
    "decision), then run the DROP and CREATE INDEX"
)
CHECK = declare(ID, TITLE, family="hygiene", fix="rebuild-index")


def fix_sql(definition: str, qualified_index: str) -> str:
    """Drop and rebuild concurrently; pg_get_indexdef gives the definition to rebuild."""
    create = definition.replace("CREATE INDEX ", "CREATE INDEX CONCURRENTLY IF NOT EXISTS ", 1)
    create = create.replace("CREATE UNIQUE INDEX ", "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ", 1)
    return f"DROP INDEX CONCURRENTLY IF EXISTS {qualified_index};\n{create};"


def duplicates_sql(snapshot: Snapshot, index: Index) -> str:
    """The keys a unique index would reject: rows sharing a key, NULLs left out (they never
    conflict), within the index's predicate. Index columns come from pg_get_indexdef: already
    SQL (quoted names, expressions)."""
    table = snapshot.table(index.table)
    name = quote_qualified(table.schema, table.name) if table else quote_qualified(*index.table.split(".", 1))
    keys = ", ".join(index.columns)
    where = [f"({c}) IS NOT NULL" if not c.replace("_", "").isalnum() else f"{c} IS NOT NULL" for c in index.columns]
    if index.predicate:
        where.append(f"({index.predicate})")
    return (
        f"SELECT {keys}, count(*) AS rows FROM {name} WHERE {' AND '.join(where)} "
        f"GROUP BY {keys} HAVING count(*) > 1 ORDER BY count(*) DESC LIMIT {DUPLICATES_SHOWN};"
    )


def run(snapshot: Snapshot) -> list[Finding]:
    findings = []
    for index in snapshot.indexes:
        if index.is_valid:
            continue
        qualified = quote_qualified(index.schema, index.name)
        rebuild = fix_sql(index.definition, qualified)
        evidence = {
            "definition": index.definition,
            "indisvalid": False,
            "indisready": index.is_ready,
            "size_bytes": index.bytes,
        }
        advice = None
        if index.is_unique and index.columns:
            listing = duplicates_sql(snapshot, index)
            rebuild = (
                f"-- Manual step: {MANUAL_STEP}.\n-- 1. The duplicates that made the unique index fail:\n"
                f"{listing}\n-- 2. After removing them, rebuild:\n{rebuild}"
            )
            evidence.update(manual_step=MANUAL_STEP, duplicates_sql=listing)
            advice = (
                "A unique index is left invalid by duplicate keys: rebuilding it fails until they are gone. "
                f"List them with the first query, then {MANUAL_STEP}."
            )
        findings.append(
            Finding(
                check=ID,
                severity="high" if index.is_ready else "medium",
                title=f"Index {index.qualified_name} is invalid: never used, "
                f"{'still maintained on every write' if index.is_ready else 'not maintained'}",
                table=index.table,
                index=index.qualified_name,
                columns=index.columns,
                fix_sql=rebuild,
                advice=advice,
                confidence="high",
                effort="index",
                evidence=evidence,
            )
        )
    return findings
