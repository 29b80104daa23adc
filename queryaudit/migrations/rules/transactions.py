"""Transaction structure rules: nesting and unfinished transactions."""

from __future__ import annotations

from queryaudit.migrations import passes, rule, trigger
from queryaudit.migrations.rules._util import violation
from queryaudit.migrations.source import BEGIN_KINDS, END_KINDS, is_transaction


@rule(
    "transaction-nesting",
    "BEGIN inside a transaction, or COMMIT outside one",
    "medium",
    "transactions",
    squawk=True,
    cases=[
        trigger("BEGIN;\nBEGIN;\nSELECT 1;\nCOMMIT;"),
        trigger("SELECT 1;\nCOMMIT;", assume_in_transaction=True),
        passes("BEGIN;\nSELECT 1;\nCOMMIT;"),
    ],
)
def transaction_nesting(mig, settings):
    """Transaction control that does not do what it looks like.

    ## What it detects
    `BEGIN` inside an open transaction, `COMMIT`/`ROLLBACK` with none open, and any
    transaction control in a file the migration tool wraps in a transaction
    (`--assume-in-transaction`).

    ## Why it matters
    PostgreSQL only warns on a nested BEGIN, and a COMMIT inside the tool's transaction
    ends it early: the rest of the migration runs outside it, without rollback on failure.

    ## How to fix
    Let one layer own the transaction: remove BEGIN/COMMIT from files the tool wraps, or
    mark the migration as non-transactional in the tool.

    ## Example
    ```sql
    -- the tool wraps this file in a transaction: no BEGIN/COMMIT here
    ALTER TABLE t ADD COLUMN c text;
    ```

    ## Thresholds
    None.

    ## Known false positives
    Several migrations concatenated into one file each with its own BEGIN/COMMIT (allowed).
    """
    depth = 0
    for stmt in mig.statements:
        if is_transaction(stmt.node, *BEGIN_KINDS):
            if mig.assume_in_transaction or depth:
                yield violation(stmt, "BEGIN inside a transaction that is already open: it does nothing")
            depth += 1
        elif is_transaction(stmt.node, *END_KINDS):
            if mig.assume_in_transaction or not depth:
                yield violation(stmt, "COMMIT/ROLLBACK ends the migration tool's transaction (or none is open)")
            depth = 0


@rule(
    "ban-uncommitted-transaction",
    "BEGIN without COMMIT",
    "high",
    "transactions",
    squawk=True,
    cases=[
        trigger("BEGIN;\nCREATE TABLE users (id bigint);"),
        passes("BEGIN;\nCREATE TABLE users (id bigint);\nCOMMIT;"),
    ],
)
def ban_uncommitted_transaction(mig, settings):
    """A transaction opened and never committed.

    ## What it detects
    A `BEGIN` / `START TRANSACTION` with no `COMMIT` or `ROLLBACK` after it in the file.

    ## Why it matters
    The session ends with the transaction open: its work is rolled back, or (with a
    pooler) the open transaction holds its locks and blocks the tables it touched.

    ## How to fix
    End the transaction in the same file.

    ## Example
    ```sql
    BEGIN;
    CREATE TABLE users (id bigint);
    COMMIT;
    ```

    ## Thresholds
    None.

    ## Known false positives
    Files that are concatenated with a following file that commits.
    """
    open_at = None
    for stmt in mig.statements:
        if is_transaction(stmt.node, *BEGIN_KINDS):
            open_at = open_at or stmt
        elif is_transaction(stmt.node, *END_KINDS):
            open_at = None
    if open_at is not None:
        yield violation(open_at, "transaction opened here is never committed", safe_sql="COMMIT;")
