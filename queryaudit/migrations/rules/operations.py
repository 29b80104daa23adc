"""Operational rules: timeouts, table-locking maintenance, TRUNCATE, enums, partitions."""

from __future__ import annotations

from pglast import ast
from pglast.enums import AlterTableType, ObjectType, VariableSetKind

from queryaudit.migrations import passes, rule, trigger
from queryaudit.migrations.locks import ACCESS_EXCLUSIVE
from queryaudit.migrations.rules._util import CreatedTables, alter_table_cmds, relname, violation
from queryaudit.migrations.rules.index import option_enabled

# Statements that take no lock another session could be queued behind for long.
QUICK_STATEMENTS = (
    ast.SelectStmt,
    ast.InsertStmt,
    ast.UpdateStmt,
    ast.DeleteStmt,
    ast.MergeStmt,
    ast.VariableSetStmt,
    ast.VariableShowStmt,
    ast.TransactionStmt,
    ast.ExplainStmt,
    ast.CreateFunctionStmt,
    ast.DoStmt,
    ast.PrepareStmt,
    ast.ExecuteStmt,
    ast.DeallocateStmt,
    ast.NotifyStmt,
    ast.ListenStmt,
    ast.DiscardStmt,
)
LOCK_TIMEOUT_SQL = "SET lock_timeout = '2s';"
STATEMENT_TIMEOUT_SQL = "SET statement_timeout = '5min';"


def _set_value(stmt, name: str) -> str | None:
    """The value a `SET [LOCAL] name = value` gives, lower-cased; None for any other statement."""
    node = stmt.node
    if not isinstance(node, ast.VariableSetStmt) or node.kind != VariableSetKind.VAR_SET_VALUE:
        return None
    if (node.name or "").lower() != name:
        return None
    value = node.args[0].val if node.args and isinstance(node.args[0], ast.A_Const) else None
    return str(getattr(value, "sval", getattr(value, "ival", ""))).strip().lower()


def _is_analyze(node) -> bool:
    """ANALYZE (not VACUUM): SHARE UPDATE EXCLUSIVE, which no read or write waits for, over a
    sample of bounded size (default_statistics_target)."""
    return isinstance(node, ast.VacuumStmt) and not node.is_vacuumcmd


def _references(node) -> list:
    """The tables a CREATE TABLE or ALTER TABLE points at: foreign keys, PARTITION OF, INHERITS, LIKE."""
    out = []
    if isinstance(node, ast.CreateStmt):
        out += list(node.inhRelations or ())
        for elt in node.tableElts or ():
            if isinstance(elt, ast.TableLikeClause):
                out.append(elt.relation)
            cons = [elt] if isinstance(elt, ast.Constraint) else getattr(elt, "constraints", None) or ()
            out += [c.pktable for c in cons if isinstance(c, ast.Constraint) and c.pktable is not None]
    elif isinstance(node, ast.AlterTableStmt):
        for cmd in node.cmds or ():
            d = getattr(cmd, "def_", None)
            cons = [d] if isinstance(d, ast.Constraint) else getattr(d, "constraints", None) or ()
            out += [c.pktable for c in cons if isinstance(c, ast.Constraint) and c.pktable is not None]
            if isinstance(d, ast.PartitionCmd):
                out.append(d.name)
            if isinstance(d, ast.RangeVar):  # INHERIT parent
                out.append(d)
    return out


def _blocks_nobody(stmt, created: CreatedTables) -> bool:
    """A new table (or an index, ALTER or comment on a table created earlier in the file) that
    points at no existing table: no other session can be waiting for or on its locks."""
    node = stmt.node
    if isinstance(node, ast.CreateStmt):
        target = node.relation
    elif isinstance(node, ast.IndexStmt):
        target = node.relation if created.before(stmt, node.relation) else None
    elif isinstance(node, ast.AlterTableStmt) and node.objtype == ObjectType.OBJECT_TABLE:
        target = node.relation if created.before(stmt, node.relation) else None
    elif isinstance(node, ast.CommentStmt) and node.objtype in (ObjectType.OBJECT_TABLE, ObjectType.OBJECT_COLUMN):
        parts = [n.sval for n in node.object if isinstance(n, ast.String)] if isinstance(node.object, tuple) else []
        table = parts[-1] if node.objtype == ObjectType.OBJECT_TABLE else (parts[-2] if len(parts) > 1 else None)
        target = ast.RangeVar(relname=table) if table and created.before(stmt, ast.RangeVar(relname=table)) else None
    else:
        return False
    if target is None:
        return False
    return all(
        rv is not None and (rv.relname == target.relname or created.before(stmt, rv)) for rv in _references(node)
    )


def _missing_timeout(mig, name: str, fix: str, rule_id: str):
    created = CreatedTables(mig)
    # CREATE TABLE IF NOT EXISTS may find the table already there, with its readers: only an
    # unconditional CREATE TABLE makes the later statements on it harmless.
    created.created = {
        t: i for t, i in created.created.items() if not getattr(mig.statements[i].node, "if_not_exists", False)
    }
    turned_off = None  # the SET name = 0 that disables it, when that is what the file did
    for stmt in mig.statements:
        value = _set_value(stmt, name)
        if value is not None:
            if value not in ("0", ""):  # 0 turns the timeout off
                return
            turned_off = stmt
        elif (
            not isinstance(stmt.node, QUICK_STATEMENTS)
            and not _is_analyze(stmt.node)
            and not _blocks_nobody(stmt, created)
        ):
            consequence = (
                "a lock wait queues every query behind it"
                if name == "lock_timeout"
                else "a slow statement runs unbounded"
            )
            why = (
                f"{name} = 0 (line {turned_off.line}) disables the timeout for the first DDL"
                if turned_off
                else f"no {name} set before the first DDL"
            )
            yield violation(
                stmt, f"{why}: {consequence}", safe_sql=fix + "  -- at the top of the migration", severity=None
            )
            return


@rule(
    "require-lock-timeout",
    "No lock_timeout before DDL",
    "medium",
    "operations",
    squawk=True,
    cases=[
        trigger("ALTER TABLE t ADD COLUMN c boolean;"),
        passes("SET lock_timeout = '1s';\nALTER TABLE t ADD COLUMN c boolean;"),
        passes("CREATE TABLE t (id bigint);\nCREATE INDEX t_id ON t (id);\nALTER TABLE t ADD COLUMN c text;"),
        trigger("CREATE TABLE t (id bigint, user_id bigint REFERENCES users (id));"),
        trigger("CREATE TABLE t (id bigint);\nALTER TABLE t ADD FOREIGN KEY (id) REFERENCES users (id);"),
        passes('ANALYZE "identities";\nANALYZE "identity_credentials";'),
        trigger("SET LOCAL lock_timeout = 0;\nALTER TABLE t ADD COLUMN c boolean;"),
    ],
)
def require_lock_timeout(mig, settings):
    """DDL run without a lock_timeout.

    ## What it detects
    The first statement that takes a table lock (any DDL, LOCK, VACUUM, COMMENT, ...)
    when no `SET lock_timeout` (non-zero, unqualified) came before it in the file.
    ANALYZE does not count: its SHARE UPDATE EXCLUSIVE lock makes no read or write wait.
    When the file set it to 0, the finding says so (0 disables the timeout).
    Statements that block nobody do not count: CREATE TABLE of a new table with no
    foreign key, PARTITION OF, INHERITS or LIKE pointing at an existing table, and CREATE
    INDEX, ALTER TABLE or COMMENT on a table created earlier in the file (unless they add a
    foreign key to an existing table).

    ## Why it matters
    Even an instant ALTER TABLE needs ACCESS EXCLUSIVE; while it waits for a long-running
    query to finish, every other query on the table queues behind it: a few seconds of
    waiting becomes an outage. lock_timeout makes it give up (and retry) instead.

    ## How to fix
    Start the migration with `SET lock_timeout = '2s'` (or per transaction with `SET
    LOCAL`), and retry on timeout.

    ## Example
    ```sql
    SET lock_timeout = '2s';
    ALTER TABLE t ADD COLUMN c boolean;
    ```

    ## Thresholds
    None; `SET lock_timeout = 0` does not count (it disables the timeout, and the finding
    says so).

    ## Known false positives
    Migration tools that set it on the connection (e.g. in the DSN `options=-c
    lock_timeout=2s`): `--ignore require-timeout-settings`.

    ## Differences from squawk
    squawk (2.70) also fires on a file that only creates a new table and alters or
    indexes it. Nothing else can hold a lock on a table that did not exist, so such a
    file cannot queue anyone: queryaudit stays quiet (medium severity on every new-table
    migration was noise, 12 files of one real-world project). A foreign key to an
    existing table still counts: it locks that table SHARE ROW EXCLUSIVE. `CREATE OR
    REPLACE FUNCTION` takes no table lock and does not count either; squawk counts it.

    On the real-world corpus (416 files of kratos and supabase auth, each file in its
    runner's transaction, `bench/migrations_realworld.py`), the tools disagree on 4 files,
    read by hand:
    - kratos `20230405000000000001_create_session_token_exchanges`: a new table and two
      indexes on it. queryaudit is right: no session can hold or wait for a lock on it.
    - supabase auth `20211124214934_update_auth_functions`, `20211202183645_update_auth_uid`,
      `20220224000811_update_auth_functions`: only `CREATE OR REPLACE FUNCTION`.
      queryaudit is right: no table lock is taken, so nothing queues.

    squawk counts `SET lock_timeout = 0` as a timeout set; 0 disables it, so queryaudit
    reports the DDL after it and says that the timeout is disabled.
    """
    yield from _missing_timeout(mig, "lock_timeout", LOCK_TIMEOUT_SQL, "require-lock-timeout")


@rule(
    "require-statement-timeout",
    "No statement_timeout before DDL",
    "medium",
    "operations",
    squawk=True,
    cases=[
        trigger("ALTER TABLE t ADD COLUMN c boolean;"),
        passes("SET statement_timeout = '5s';\nALTER TABLE t ADD COLUMN c boolean;"),
        passes("CREATE TABLE t (id bigint);\nCOMMENT ON TABLE t IS 'new';"),
        trigger("CREATE TABLE t_2024 PARTITION OF t FOR VALUES FROM (1) TO (2);"),
        passes('ANALYZE "identities";'),
        trigger("BEGIN;\nSET LOCAL statement_timeout = 0;\nALTER TABLE t ALTER COLUMN c TYPE bigint;\nCOMMIT;"),
    ],
)
def require_statement_timeout(mig, settings):
    """DDL run without a statement_timeout.

    ## What it detects
    The first statement that takes a table lock when no `SET statement_timeout`
    (non-zero, unqualified) came before it in the file; statements that block nobody (new
    tables with no foreign key to an existing one, see require-lock-timeout) and ANALYZE
    (a bounded sample, under a lock no read or write waits for) do not count.

    ## Why it matters
    A statement that turns out slow (a scan or rewrite on a larger table than expected)
    holds its lock for as long as it runs; a statement_timeout bounds the damage.

    ## How to fix
    Set a statement_timeout sized for the migration at its top.

    ## Example
    ```sql
    SET statement_timeout = '5min';
    ```

    ## Thresholds
    None; `SET statement_timeout = 0` does not count (it disables the timeout, and the
    finding says so).

    ## Known false positives
    Timeouts set by the migration tool on the connection.

    ## Differences from squawk
    As for require-lock-timeout: a file that only creates new tables (no foreign key to
    an existing table), or only replaces functions, is not reported; squawk (2.70) reports
    it. The same 4 real-world files disagree (see require-lock-timeout); queryaudit is
    right on each: none of their statements can run long on a table clients use.
    squawk counts `SET statement_timeout = 0` as a timeout set; 0 disables it, so
    queryaudit reports the DDL after it and says that the timeout is disabled.
    """
    yield from _missing_timeout(mig, "statement_timeout", STATEMENT_TIMEOUT_SQL, "require-statement-timeout")


@rule(
    "ban-truncate-cascade",
    "TRUNCATE ... CASCADE",
    "high",
    "operations",
    squawk=True,
    cases=[trigger("TRUNCATE a, b CASCADE;"), passes("TRUNCATE a;")],
)
def ban_truncate_cascade(mig, settings):
    """TRUNCATE ... CASCADE, which empties every table that references these.

    ## What it detects
    `TRUNCATE ... CASCADE`.

    ## Why it matters
    CASCADE truncates every table with a foreign key to the named ones, recursively:
    data you did not name is deleted, under ACCESS EXCLUSIVE on all of them.

    ## How to fix
    Name every table to truncate explicitly, without CASCADE.

    ## Example
    ```sql
    TRUNCATE order_lines, orders;
    ```

    ## Thresholds
    None.

    ## Known false positives
    None known.
    """
    for stmt in mig.statements:
        node = stmt.node
        if isinstance(node, ast.TruncateStmt) and node.behavior.name == "DROP_CASCADE":
            yield violation(
                stmt,
                "TRUNCATE CASCADE also empties every table that references these",
                lock=ACCESS_EXCLUSIVE,
                rewrite=True,
            )


def _vacuum_full(node) -> bool:
    return isinstance(node, ast.VacuumStmt) and node.is_vacuumcmd and option_enabled(node.options, "full")


REPACK_VERSION = (19, 0)  # PostgreSQL 19: REPACK (CONCURRENTLY) replaces VACUUM FULL / CLUSTER


@rule(
    "prefer-repack",
    "VACUUM FULL / CLUSTER where REPACK exists (PostgreSQL 19+)",
    "high",
    "operations",
    squawk=True,
    cases=[
        trigger("VACUUM FULL foo;", pg_version="19"),
        passes("VACUUM FULL foo;"),
        passes("VACUUM (FULL false) foo;", pg_version="19"),
    ],
)
def prefer_repack(mig, settings):
    """VACUUM FULL or CLUSTER on PostgreSQL 19+, which has REPACK.

    ## What it detects
    `VACUUM FULL` and `CLUSTER` when the target is PostgreSQL 19 or newer.

    ## Why it matters
    Both rewrite the table under ACCESS EXCLUSIVE: no reads or writes for the duration.
    PostgreSQL 19's `REPACK` does the same work and `REPACK (CONCURRENTLY)` keeps the table
    available.

    ## How to fix
    Use `REPACK (CONCURRENTLY)`.

    ## Example
    ```sql
    REPACK (CONCURRENTLY) foo;
    ```

    ## Thresholds
    PostgreSQL 19 and newer (ban-vacuum-full covers older versions).

    ## Known false positives
    Tables nobody uses during the maintenance window.
    """
    if settings.pg_version < REPACK_VERSION:
        return
    for stmt in mig.statements:
        if _vacuum_full(stmt.node) or isinstance(stmt.node, ast.ClusterStmt):
            target = stmt.node.relation if isinstance(stmt.node, ast.ClusterStmt) else None
            yield violation(
                stmt,
                "VACUUM FULL / CLUSTER rewrite the table under ACCESS EXCLUSIVE; REPACK (CONCURRENTLY) does not block",
                lock=ACCESS_EXCLUSIVE,
                rewrite=True,
                safe_sql=f"REPACK (CONCURRENTLY) {relname(target) or '<table>'};",
            )


@rule(
    "ban-vacuum-full",
    "VACUUM FULL / CLUSTER in a migration",
    "high",
    "operations",
    cases=[
        trigger("VACUUM FULL orders;"),
        trigger("CLUSTER orders USING orders_pkey;"),
        passes("VACUUM (ANALYZE) orders;"),
        passes("VACUUM FULL orders;", pg_version="19"),
    ],
)
def ban_vacuum_full(mig, settings):
    """VACUUM FULL or CLUSTER (before PostgreSQL 19): a full rewrite that blocks reads and writes.

    ## What it detects
    `VACUUM FULL` and `CLUSTER` when the target is older than PostgreSQL 19 (there,
    prefer-repack reports them).

    ## Why it matters
    Both copy the whole table and rebuild its indexes under ACCESS EXCLUSIVE: every read
    and write waits until the copy ends, and the disk needs room for a second copy.

    ## How to fix
    Use pg_repack (an extension that rebuilds online), or plain `VACUUM` if the goal is
    to make space reusable rather than to return it to the OS.

    ## Example
    ```sql
    -- shell: pg_repack --table=public.orders --no-superuser-check shop
    VACUUM (ANALYZE) orders;
    ```

    ## Thresholds
    None.

    ## Known false positives
    Maintenance windows with the application stopped.
    """
    if settings.pg_version >= REPACK_VERSION:
        return
    for stmt in mig.statements:
        node = stmt.node
        if _vacuum_full(node) or isinstance(node, ast.ClusterStmt):
            what = "CLUSTER" if isinstance(node, ast.ClusterStmt) else "VACUUM FULL"
            yield violation(
                stmt,
                f"{what} rewrites the table under ACCESS EXCLUSIVE: reads and writes wait for the whole copy",
                lock=ACCESS_EXCLUSIVE,
                rewrite=True,
                safe_sql="-- pg_repack --table=<schema.table> <database>   (online rebuild)\n"
                "VACUUM (ANALYZE) <table>;  -- if reusable space is enough",
            )


ENUM_IN_TRANSACTION_VERSION = (12, 0)  # PostgreSQL 12 allows ALTER TYPE ... ADD VALUE in a transaction block


@rule(
    "ban-enum-add-value-in-transaction",
    "ALTER TYPE ... ADD VALUE inside a transaction (PostgreSQL < 12)",
    "high",
    "operations",
    cases=[
        trigger("BEGIN;\nALTER TYPE mood ADD VALUE 'meh';\nCOMMIT;", pg_version="11"),
        passes("BEGIN;\nALTER TYPE mood ADD VALUE 'meh';\nCOMMIT;"),
        passes("ALTER TYPE mood ADD VALUE 'meh';", pg_version="11"),
    ],
)
def ban_enum_add_value_in_transaction(mig, settings):
    """ALTER TYPE ... ADD VALUE inside a transaction block on PostgreSQL 11 and older.

    ## What it detects
    `ALTER TYPE ... ADD VALUE` after `BEGIN` (or with `--assume-in-transaction`) when the
    target is older than PostgreSQL 12.

    ## Why it matters
    Before 12 PostgreSQL refuses it ("cannot run inside a transaction block"): the
    migration fails. From 12 it is allowed, but the new value cannot be used in the same
    transaction.

    ## How to fix
    Run it in a migration of its own without a transaction.

    ## Example
    ```sql
    ALTER TYPE mood ADD VALUE IF NOT EXISTS 'meh';  -- its own migration, no BEGIN
    ```

    ## Thresholds
    PostgreSQL < 12.

    ## Known false positives
    None known.
    """
    if settings.pg_version >= ENUM_IN_TRANSACTION_VERSION:
        return
    for stmt in mig.statements:
        if (
            isinstance(stmt.node, ast.AlterEnumStmt)
            and stmt.node.newVal
            and not stmt.node.oldVal
            and stmt.in_transaction
        ):
            yield violation(
                stmt,
                "ALTER TYPE ... ADD VALUE cannot run inside a transaction block before "
                "PostgreSQL 12: the migration fails",
                safe_sql=stmt.text.strip() + ";  -- alone, outside a transaction",
            )


@rule(
    "require-enum-value-ordering",
    "ALTER TYPE ... ADD VALUE without BEFORE/AFTER",
    "low",
    "operations",
    squawk=True,
    cases=[trigger("ALTER TYPE mood ADD VALUE 'meh';"), passes("ALTER TYPE mood ADD VALUE 'meh' AFTER 'ok';")],
)
def require_enum_value_ordering(mig, settings):
    """A new enum value appended without saying where it sorts.

    ## What it detects
    `ALTER TYPE ... ADD VALUE` without `BEFORE` or `AFTER`.

    ## Why it matters
    Enum values sort in declaration order (ORDER BY, comparisons, range checks);
    appending may put the value in the wrong place, and the order cannot be changed later
    without recreating the type.

    ## How to fix
    State the position explicitly.

    ## Example
    ```sql
    ALTER TYPE status ADD VALUE 'shipped' AFTER 'paid';
    ```

    ## Thresholds
    None.

    ## Known false positives
    Enums whose order nobody relies on.
    """
    for stmt in mig.statements:
        node = stmt.node
        if isinstance(node, ast.AlterEnumStmt) and node.newVal and not node.oldVal and not node.newValNeighbor:
            yield violation(
                stmt, f"enum value {node.newVal!r} added without BEFORE/AFTER: its sort position is implicit"
            )


DETACH_CONCURRENTLY_VERSION = (14, 0)


@rule(
    "require-concurrent-partition-detach",
    "DETACH PARTITION without CONCURRENTLY",
    "high",
    "operations",
    squawk=True,
    cases=[
        trigger("ALTER TABLE t DETACH PARTITION p;"),
        passes("ALTER TABLE t DETACH PARTITION p CONCURRENTLY;"),
        passes("ALTER TABLE t DETACH PARTITION p;", pg_version="13"),
    ],
)
def require_concurrent_partition_detach(mig, settings):
    """DETACH PARTITION without CONCURRENTLY (PostgreSQL 14+).

    ## What it detects
    `ALTER TABLE ... DETACH PARTITION` without `CONCURRENTLY` or `FINALIZE` when the
    target is PostgreSQL 14 or newer.

    ## Why it matters
    A plain detach takes ACCESS EXCLUSIVE on the partitioned table: every query on any
    partition waits.

    ## How to fix
    `DETACH PARTITION ... CONCURRENTLY` (SHARE UPDATE EXCLUSIVE), outside a transaction
    block; if interrupted, finish it with `DETACH PARTITION ... FINALIZE`.

    ## Example
    ```sql
    ALTER TABLE events DETACH PARTITION events_2020 CONCURRENTLY;
    ```

    ## Thresholds
    PostgreSQL 14 and newer.

    ## Known false positives
    Tables with a default partition cannot detach concurrently.

    ## Differences from squawk
    squawk (2.70) reports it on every version; DETACH PARTITION CONCURRENTLY only exists
    from PostgreSQL 14, so queryaudit is quiet for `--pg-version` 13 and older, where there
    is nothing better to do.
    """
    if settings.pg_version < DETACH_CONCURRENTLY_VERSION:
        return
    for stmt, node, cmd in alter_table_cmds(mig):
        if cmd.subtype == AlterTableType.AT_DetachPartition and not cmd.def_.concurrent:
            yield violation(
                stmt,
                "DETACH PARTITION without CONCURRENTLY blocks every query on the partitioned table",
                lock=ACCESS_EXCLUSIVE,
                rewrite=False,
                table=relname(node.relation),
                safe_sql=f"ALTER TABLE {relname(node.relation)} DETACH PARTITION "
                f"{relname(cmd.def_.name)} CONCURRENTLY;",
            )
        elif cmd.subtype == AlterTableType.AT_DetachPartitionFinalize:
            continue
