"""The rules the scratch-database run reports (their ids, severities and pages), kept apart from
dynamic.py so listing and documenting the rules does not import the database driver."""

from __future__ import annotations

from queryaudit.migrations import dynamic_rule

# A plan whose estimated total cost grows by more than this fraction is a regression.
COST_REGRESSION = 0.25
# A new sequential scan matters on a table with at least this many rows (pg_class.reltuples).
LARGE_TABLE_ROWS = 10_000
# A regression on a statement with at least this share of database time is high severity.
HIGH_SHARE = 0.05
NOT_IN_TRANSACTION = "25001"  # active_sql_transaction: "cannot run inside a transaction block"

_DOC = """{summary}

## What it detects
{detects}

## Why it matters
{why}

## How to fix
{fix}

## Example
```
{example}
```

## Thresholds
{thresholds}

## Known false positives
{fp}
"""

dynamic_rule(
    "table-rewrite",
    "Measured table rewrite",
    "high",
    _DOC.format(
        summary="A statement rewrote an existing table (measured on the scratch database).",
        detects="A relation that existed before the migration whose `pg_class.relfilenode` changed while the statement "
        "ran: the table (or materialized view) was copied, with its indexes.",
        why="A rewrite holds ACCESS EXCLUSIVE for the time it takes to copy the whole table and rebuild its indexes, "
        "and needs the disk space of a second copy.",
        fix="See the static finding on the same statement for the non-rewriting alternative (add a column and "
        "backfill; NOT VALID constraints; binary-coercible type changes).",
        example="ALTER TABLE orders ALTER COLUMN id TYPE bigint;  -- relfilenode 16402 -> 16431: rewritten",
        thresholds="None: every rewrite of a table that existed before the migration.",
        fp="Tables that are small in production (the scratch copy may hold different data).",
    ),
    "queryaudit.migrations.dynamic",
)
dynamic_rule(
    "plan-regression",
    "A top statement's plan got worse",
    "high",
    _DOC.format(
        summary="A top production statement plans worse after the migration.",
        detects="Comparing the generic plan of each top statement (from `--workload`) before and after applying the "
        "migration: total cost up by more than the threshold, an index used before no longer used, or a new "
        "sequential scan on a large table.",
        why="The statement carries a known share of production database time; a worse plan multiplies it.",
        fix="Keep (or replace) the index the statement relies on; re-check the migration's index and type changes.",
        example="Index Scan using orders_customer_idx on orders -> Seq Scan on orders (cost 8.3 -> 1834.0)",
        thresholds=f"Cost up by {COST_REGRESSION:.0%} (`--cost-threshold`); large table: {LARGE_TABLE_ROWS} rows; "
        f"high severity when the statement has at least {HIGH_SHARE:.0%} of database time.",
        fp="Scratch statistics that differ from production (load production statistics into the scratch database).",
    ),
    "queryaudit.migrations.dynamic",
)
dynamic_rule(
    "plan-improvement",
    "A top statement's plan got better",
    "info",
    _DOC.format(
        summary="A top production statement plans better after the migration.",
        detects="Total cost down by more than the threshold, or a new index used.",
        why="Confirms that an index added for a statement is used.",
        fix="Nothing to fix.",
        example="Seq Scan on orders -> Index Scan using orders_status_idx on orders",
        thresholds=f"Cost down by {COST_REGRESSION:.0%}.",
        fp="Scratch statistics that differ from production.",
    ),
    "queryaudit.migrations.dynamic",
)
dynamic_rule(
    "statement-breaks",
    "A top statement fails after the migration",
    "critical",
    _DOC.format(
        summary="A top production statement no longer plans after the migration.",
        detects="EXPLAIN of the statement succeeds before the migration and fails after it (a dropped or renamed "
        "column or table, a changed type).",
        why="The running application sends this statement; it will fail in production as soon as the migration "
        "commits.",
        fix="Expand/contract: deploy code that no longer uses the object before removing it.",
        example='ERROR: column "email" does not exist',
        thresholds="None.",
        fp="Statements from code that is deployed together with the migration.",
    ),
    "queryaudit.migrations.dynamic",
)
dynamic_rule(
    "migration-error",
    "The migration fails on the scratch database",
    "critical",
    _DOC.format(
        summary="A statement of the migration failed when applied to the scratch database.",
        detects="The error PostgreSQL raised applying the migration statement by statement.",
        why="It will fail the same way in production, possibly after earlier statements were applied.",
        fix="Fix the statement; make the scratch schema match production.",
        example='ERROR: column "total" contains null values',
        thresholds="None.",
        fp="A scratch database whose schema differs from production.",
    ),
    "queryaudit.migrations.dynamic",
)
