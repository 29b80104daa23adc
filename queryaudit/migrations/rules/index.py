"""Index rules: build, drop and rebuild indexes without blocking writes."""

from __future__ import annotations

from pglast import ast
from pglast.enums import ObjectType, ReindexObjectType

from queryaudit.migrations import passes, rule, trigger
from queryaudit.migrations.locks import ACCESS_EXCLUSIVE, SHARE
from queryaudit.migrations.rules._util import CreatedTables, relname, violation, with_changes


def option_enabled(params, name: str) -> bool:
    """`(CONCURRENTLY)`, `(CONCURRENTLY true)` -> True; `(CONCURRENTLY false)` -> False."""
    for p in params or ():
        if isinstance(p, ast.DefElem) and p.defname == name:
            arg = p.arg
            if arg is None:
                return True
            value = getattr(arg, "sval", None) if isinstance(arg, ast.String) else getattr(arg, "ival", None)
            if value is None and isinstance(arg, ast.Boolean):
                value = arg.boolval
            return str(value).lower() not in ("false", "off", "0", "no")
    return False


def is_concurrent(node) -> bool:
    if isinstance(node, (ast.IndexStmt, ast.DropStmt)):
        return bool(node.concurrent)
    if isinstance(node, ast.ReindexStmt):
        return option_enabled(node.params, "concurrently")
    return False


@rule(
    "require-concurrent-index-creation",
    "CREATE INDEX without CONCURRENTLY",
    "high",
    "index",
    squawk=True,
    cases=[
        trigger("CREATE INDEX orders_customer_idx ON orders (customer_id);"),
        passes("CREATE INDEX CONCURRENTLY orders_customer_idx ON orders (customer_id);"),
        passes("CREATE TABLE t (id bigint);\nCREATE INDEX t_id ON t (id);"),
    ],
)
def require_concurrent_index_creation(mig, settings):
    """CREATE INDEX on an existing table without CONCURRENTLY.

    ## What it detects
    `CREATE INDEX` (or `CREATE UNIQUE INDEX`) without `CONCURRENTLY` on a table that was
    not created earlier in the same migration.

    ## Why it matters
    A plain index build takes a SHARE lock on the table for the whole build: every
    INSERT, UPDATE and DELETE waits (reads continue). On a large table that is minutes of
    failed writes. The table is not rewritten.

    ## How to fix
    Build it with `CREATE INDEX CONCURRENTLY` (SHARE UPDATE EXCLUSIVE: reads and writes
    continue), outside a transaction block, with `IF NOT EXISTS` so a retry is safe. If
    it fails it leaves an INVALID index: drop it and retry.

    ## Example
    ```sql
    -- instead of
    CREATE INDEX orders_customer_idx ON orders (customer_id);
    -- use
    CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_customer_idx ON orders (customer_id);
    ```

    ## Thresholds
    None. A table created earlier in the same migration is empty and exempt.

    ## Known false positives
    Partitioned tables: `CREATE INDEX CONCURRENTLY` is not supported on the partitioned
    parent; build each partition's index concurrently, then `CREATE INDEX ON ONLY` the
    parent and `ALTER INDEX ... ATTACH PARTITION`. Small tables build in milliseconds.

    ## Differences from squawk
    squawk (2.70) exempts a table created earlier in the file only when the file runs in a
    transaction; queryaudit exempts it either way: nobody else uses a table that did not
    exist before this migration, so its lock blocks no one.
    """
    created = CreatedTables(mig)
    for stmt in mig.statements:
        node = stmt.node
        if isinstance(node, ast.IndexStmt) and not node.concurrent and not created.before(stmt, node.relation):
            safe = with_changes(node, concurrent=True, if_not_exists=bool(node.idxname))
            yield violation(
                stmt,
                f"CREATE INDEX on {relname(node.relation)} without CONCURRENTLY blocks writes for the whole build",
                lock=SHARE,
                rewrite=False,
                safe_sql=safe + ";",
                table=relname(node.relation),
            )


@rule(
    "require-concurrent-index-deletion",
    "DROP INDEX without CONCURRENTLY",
    "high",
    "index",
    squawk=True,
    cases=[
        trigger("DROP INDEX orders_customer_idx;"),
        passes("DROP INDEX CONCURRENTLY IF EXISTS orders_customer_idx;"),
    ],
)
def require_concurrent_index_deletion(mig, settings):
    """DROP INDEX without CONCURRENTLY.

    ## What it detects
    `DROP INDEX` without `CONCURRENTLY`.

    ## Why it matters
    A plain `DROP INDEX` takes an ACCESS EXCLUSIVE lock on the index's table: it waits
    behind every running query on the table and, while it waits, blocks every new read
    and write behind it. The drop itself is fast; the queue is the outage.

    ## How to fix
    `DROP INDEX CONCURRENTLY IF EXISTS` (one index per statement, outside a transaction
    block) waits for running transactions without blocking new ones.

    ## Example
    ```sql
    DROP INDEX CONCURRENTLY IF EXISTS orders_customer_idx;
    ```

    ## Thresholds
    None.

    ## Known false positives
    Indexes of a table created in the same migration; `DROP INDEX CONCURRENTLY` cannot
    drop the index of a partitioned table's parent.
    """
    for stmt in mig.statements:
        node = stmt.node
        if isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_INDEX and not node.concurrent:
            safe = "\n".join(
                with_changes(node, concurrent=True, missing_ok=True, objects=(obj,)) + ";" for obj in node.objects or ()
            )
            yield violation(
                stmt,
                "DROP INDEX without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on the table",
                lock=ACCESS_EXCLUSIVE,
                rewrite=False,
                safe_sql=safe,
            )


@rule(
    "require-concurrent-reindex",
    "REINDEX without CONCURRENTLY",
    "high",
    "index",
    squawk=True,
    cases=[
        trigger("REINDEX INDEX orders_customer_idx;"),
        trigger("REINDEX (CONCURRENTLY false) TABLE orders;"),
        passes("REINDEX INDEX CONCURRENTLY orders_customer_idx;"),
        passes("REINDEX SYSTEM shop;"),
    ],
)
def require_concurrent_reindex(mig, settings):
    """REINDEX without CONCURRENTLY.

    ## What it detects
    `REINDEX INDEX | TABLE | SCHEMA | DATABASE` without `CONCURRENTLY` (REINDEX SYSTEM
    cannot run concurrently and is left alone).

    ## Why it matters
    REINDEX locks each index ACCESS EXCLUSIVE (queries that would use it wait) and its
    table SHARE (writes wait) for the whole rebuild.

    ## How to fix
    PostgreSQL 12+: `REINDEX ... CONCURRENTLY`, outside a transaction block. Before 12:
    `CREATE INDEX CONCURRENTLY` a copy, then drop the old index concurrently and rename.

    ## Example
    ```sql
    REINDEX INDEX CONCURRENTLY orders_customer_idx;
    ```

    ## Thresholds
    None.

    ## Known false positives
    Tiny tables and indexes of tables created in the same migration.

    ## Differences from squawk
    squawk (2.70) takes `REINDEX (CONCURRENTLY false)` for concurrent; queryaudit reads the
    option's value: false is a plain, blocking REINDEX.
    """
    for stmt in mig.statements:
        node = stmt.node
        if not isinstance(node, ast.ReindexStmt) or node.kind == ReindexObjectType.REINDEX_OBJECT_SYSTEM:
            continue
        if is_concurrent(node):
            continue
        if settings.pg_version >= (12, 0):
            params = tuple(p for p in node.params or () if getattr(p, "defname", None) != "concurrently")
            safe = with_changes(node, params=params + (ast.DefElem(defname="concurrently"),)) + ";"
        else:
            safe = (
                "-- PostgreSQL < 12 has no REINDEX CONCURRENTLY: build a copy and swap\n"
                "CREATE INDEX CONCURRENTLY new_idx ON tbl (...);\nDROP INDEX CONCURRENTLY old_idx;\n"
                "ALTER INDEX new_idx RENAME TO old_idx;"
            )
        yield violation(
            stmt,
            "REINDEX without CONCURRENTLY blocks writes to the table and reads that use the index",
            lock=ACCESS_EXCLUSIVE,
            rewrite=False,
            safe_sql=safe,
        )


@rule(
    "ban-concurrent-index-creation-in-transaction",
    "CONCURRENTLY inside a transaction block",
    "high",
    "index",
    squawk=True,
    cases=[
        trigger("BEGIN;\nCREATE INDEX CONCURRENTLY i ON t (c);\nCOMMIT;"),
        trigger("BEGIN;\nDROP INDEX CONCURRENTLY i;\nCOMMIT;"),
        passes("CREATE INDEX CONCURRENTLY i ON t (c);"),
    ],
)
def ban_concurrent_index_creation_in_transaction(mig, settings):
    """CREATE / DROP INDEX or REINDEX CONCURRENTLY inside a transaction block.

    ## What it detects
    `CREATE INDEX CONCURRENTLY`, `DROP INDEX CONCURRENTLY` or `REINDEX CONCURRENTLY`
    after a `BEGIN` (or in a file the migration tool wraps in a transaction:
    `--assume-in-transaction`), when the file holds more than one statement.

    ## Why it matters
    PostgreSQL refuses them inside a transaction block ("cannot run inside a transaction
    block"): the migration fails in production, often after earlier statements ran.

    ## How to fix
    Put the concurrent statement in a migration of its own, outside any transaction
    (most tools have a per-migration switch: Django `atomic = False`, Rails
    `disable_ddl_transaction!`, Flyway/Sqitch non-transactional scripts).

    ## Example
    ```sql
    -- a migration of its own, no BEGIN/COMMIT
    CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_customer_idx ON orders (customer_id);
    ```

    ## Thresholds
    None.

    ## Known false positives
    Like squawk, a single-statement file is not flagged even when a transaction is
    assumed (tools usually run those outside one).

    ## Differences from squawk
    squawk (2.70) checks only CREATE INDEX CONCURRENTLY; PostgreSQL refuses DROP INDEX and
    REINDEX CONCURRENTLY in a transaction block just the same, so queryaudit reports them too.
    """
    if len(mig.statements) <= 1:
        return
    for stmt in mig.statements:
        if stmt.in_transaction and is_concurrent(stmt.node):
            yield violation(
                stmt,
                "CONCURRENTLY cannot run inside a transaction block: this migration will fail",
                safe_sql="COMMIT;  -- or run this migration without a transaction\n" + stmt.text.strip() + ";",
            )
