"""A foreign-key trigger takes a large part of a write: usually the referencing column has no index.

## What it detects
Triggers in EXPLAIN ANALYZE plans of INSERT/UPDATE/DELETE (taken with `--analyze-dml`,
rolled back) that enforce a foreign key (`RI_ConstraintTrigger_*`, with a constraint
name) and take a large share of the statement's execution time.

## Why it matters
Deleting or updating a referenced row makes PostgreSQL look for referencing rows in
the child table, once per row changed. Without an index on the referencing columns
each check is a sequential scan of the child table, inside the writing transaction,
holding its locks the whole time. Inserting into the child checks the parent, which
always has a unique index: slow checks there mean lock waits or a huge number of rows.

## How to fix
Index the referencing columns of the foreign key (the constraint named in the
evidence).

## Example
```sql
-- Trigger for constraint orders_customer_id_fkey: time=850.2 calls=1
CREATE INDEX CONCURRENTLY ON public.orders (customer_id);
```

## Thresholds
Trigger time >= 20 % of the execution time (`MIN_TRIGGER_SHARE`) and >= 1 ms
(`MIN_TRIGGER_MS`). Severity follows the predicted saving (the trigger's share of the
statement x the statement's share of total time).

## Known false positives
Only statements EXPLAIN ANALYZEd with `--analyze-dml` show trigger times; a check slow
because of lock waits during the run is not an indexing problem.
"""

from __future__ import annotations

from queryaudit.advisor.ddl import create_index_sql
from queryaudit.checks import declare
from queryaudit.checks._plans import analyzed_plans, severity_for
from queryaudit.findings import Finding
from queryaudit.snapshot import Snapshot

ID = "slow-foreign-key-trigger"
TITLE = "Slow foreign-key trigger"
MIN_TRIGGER_SHARE = 0.20
MIN_TRIGGER_MS = 1.0
CHECK = declare(ID, TITLE, family="plan", fix="create-index", thresholds=("MIN_TRIGGER_SHARE", "MIN_TRIGGER_MS"))


def _leads_an_index(snapshot: Snapshot, table: str, columns: list[str]) -> bool:
    return any(i.columns[: len(columns)] == columns and i.is_valid for i in snapshot.indexes_of(table))


def run(snapshot: Snapshot) -> list[Finding]:
    findings = []
    for captured in analyzed_plans(snapshot):
        exec_ms = captured.plan.execution_ms
        for trigger in captured.plan.triggers:
            constraint = trigger.get("Constraint Name")
            ms = float(trigger.get("Time") or 0)
            if not constraint or not exec_ms or ms < MIN_TRIGGER_MS or ms < MIN_TRIGGER_SHARE * exec_ms:
                continue
            fk = next((f for f in snapshot.foreign_keys if f.name == constraint), None)
            share = min(1.0, ms / exec_ms)
            saving = captured.saving(snapshot, share)
            unindexed = fk is not None and not _leads_an_index(snapshot, fk.table, fk.columns)
            fix = None
            if unindexed:
                fix = create_index_sql(fk.table, fk.columns, snapshot=snapshot)
            findings.append(
                Finding(
                    check=ID,
                    severity=severity_for(saving),
                    title=f"Foreign-key check {constraint} takes {share:.0%} of a write ({ms:,.1f} ms)"
                    + (f": {fk.table} ({', '.join(fk.columns)}) has no index" if unindexed else ""),
                    table=fk.table if fk else trigger.get("Relation"),
                    columns=list(fk.columns) if fk else [],
                    queryids=[captured.queryid],
                    fix_sql=fix,
                    advice="index the referencing columns of the foreign key"
                    if unindexed
                    else "the check itself is slow: look for lock waits on the referenced rows",
                    predicted_saving=saving,
                    confidence="high" if unindexed else "low",
                    effort="index",
                    evidence={
                        "queryid": captured.queryid,
                        "trigger": trigger.get("Trigger Name"),
                        "constraint": constraint,
                        "relation": trigger.get("Relation"),
                        "trigger_ms": ms,
                        "calls": trigger.get("Calls"),
                        "execution_ms": round(exec_ms, 3),
                        "trigger_share": round(share, 4),
                        "plan_method": captured.capture.method,
                        "referencing": {"table": fk.table, "columns": fk.columns} if fk else None,
                    },
                    key=f"{ID}|{constraint}",
                )
            )
    return findings
