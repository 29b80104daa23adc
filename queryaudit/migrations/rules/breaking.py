"""Breaking changes: renames and drops that break the application code still running."""

from __future__ import annotations

from pglast import ast
from pglast.enums import AlterTableType, ObjectType

from queryaudit.migrations import passes, rule, trigger
from queryaudit.migrations.locks import ACCESS_EXCLUSIVE
from queryaudit.migrations.rules._util import CreatedTables, alter_table_cmds, relname, violation

# Columns (and composite-type attributes) that running code names, as squawk 2.70 counts them.
COLUMN_OWNERS = (
    ObjectType.OBJECT_TABLE,
    ObjectType.OBJECT_VIEW,
    ObjectType.OBJECT_MATVIEW,
    ObjectType.OBJECT_FOREIGN_TABLE,
    ObjectType.OBJECT_TYPE,
)
EXPAND_CONTRACT = (
    "-- expand/contract: ship code that no longer uses it first, deploy, then run this in a later migration"
)


def _breaks_running_code(stmt, message: str, table: str | None):
    """An instant catalog change (no rewrite) under ACCESS EXCLUSIVE that running code still
    relies on: the fix is expand/contract, not a safer statement."""
    return violation(stmt, message, lock=ACCESS_EXCLUSIVE, rewrite=False, table=table, safe_sql=EXPAND_CONTRACT)


@rule(
    "renaming-column",
    "RENAME COLUMN",
    "high",
    "breaking",
    squawk=True,
    cases=[trigger('ALTER TABLE "t" RENAME COLUMN "a" TO "b";'), passes("ALTER TABLE t ADD COLUMN b text;")],
)
def renaming_column(mig, settings):
    """A column renamed under running application code.

    ## What it detects
    `ALTER TABLE | VIEW | MATERIALIZED VIEW | FOREIGN TABLE ... RENAME COLUMN` and `ALTER
    TYPE ... RENAME ATTRIBUTE`.

    ## Why it matters
    Every query of the running application that names the old column fails from the
    moment the rename commits until the new code is deployed. It also takes a brief
    ACCESS EXCLUSIVE lock.

    ## How to fix
    Expand/contract: add the new column, write both, backfill, switch reads, then drop the
    old one in a later release; or expose the old name through a view during the switch.

    ## Example
    ```sql
    ALTER TABLE users ADD COLUMN full_name text;  -- then dual-write, backfill, switch, drop
    ```

    ## Thresholds
    None.

    ## Known false positives
    Columns no deployed code uses; tables created in the same migration.
    """
    created = CreatedTables(mig)
    for stmt in mig.statements:
        node = stmt.node
        if (
            isinstance(node, ast.RenameStmt)
            and node.renameType in (ObjectType.OBJECT_COLUMN, ObjectType.OBJECT_ATTRIBUTE)
            and node.relationType in COLUMN_OWNERS
            and not created.before(stmt, node.relation)
        ):
            yield _breaks_running_code(
                stmt,
                f"RENAME COLUMN {node.subname} -> {node.newname} breaks running code that uses {node.subname}",
                relname(node.relation),
            )


@rule(
    "renaming-table",
    "RENAME a table",
    "high",
    "breaking",
    squawk=True,
    cases=[trigger('ALTER TABLE "t" RENAME TO "u";'), passes("ALTER TABLE t ADD COLUMN b text;")],
)
def renaming_table(mig, settings):
    """A table renamed under running application code.

    ## What it detects
    `ALTER TABLE ... RENAME TO`.

    ## Why it matters
    Every running query that names the old table fails until the new code is deployed.

    ## How to fix
    Rename, then create a view with the old name (`CREATE VIEW old AS SELECT * FROM new`,
    updatable for simple tables) until no code uses it; or copy and dual-write.

    ## Example
    ```sql
    BEGIN;
    ALTER TABLE customers RENAME TO clients;
    CREATE VIEW customers AS SELECT * FROM clients;
    COMMIT;
    ```

    ## Thresholds
    None.

    ## Known false positives
    Tables no deployed code uses.
    """
    created = CreatedTables(mig)
    for stmt in mig.statements:
        node = stmt.node
        if (
            isinstance(node, ast.RenameStmt)
            and node.renameType == ObjectType.OBJECT_TABLE
            and not created.before(stmt, node.relation)
        ):
            old = relname(node.relation)
            yield violation(
                stmt,
                f"RENAME TABLE {old} -> {node.newname} breaks running code that uses {old}",
                lock=ACCESS_EXCLUSIVE,
                rewrite=False,
                table=old,
                safe_sql=f"BEGIN;\n{stmt.text.strip()};\nCREATE VIEW {old} AS SELECT * FROM {node.newname};\nCOMMIT;",
            )


@rule(
    "ban-drop-column",
    "DROP COLUMN",
    "high",
    "breaking",
    squawk=True,
    cases=[trigger('ALTER TABLE "t" DROP COLUMN "c" CASCADE;'), passes("ALTER TABLE t ADD COLUMN c text;")],
)
def ban_drop_column(mig, settings):
    """A column dropped under running application code.

    ## What it detects
    `ALTER TABLE | FOREIGN TABLE ... DROP COLUMN` and `ALTER TYPE ... DROP ATTRIBUTE`.

    ## Why it matters
    Running code that reads or writes the column fails; `SELECT *` consumers change shape;
    the data is gone (no rollback after commit). ACCESS EXCLUSIVE briefly; no rewrite.

    ## How to fix
    Stop using the column in the code and deploy first; drop it in a later migration.

    ## Example
    ```sql
    -- release N: code no longer reads or writes users.legacy_flag
    -- release N+1:
    ALTER TABLE users DROP COLUMN IF EXISTS legacy_flag;
    ```

    ## Thresholds
    None.

    ## Known false positives
    Columns already unused by deployed code (the usual second step of expand/contract):
    suppress with `-- queryaudit: ignore ban-drop-column <reason>`.
    """
    for stmt, node, cmd in alter_table_cmds(mig, COLUMN_OWNERS):
        if cmd.subtype == AlterTableType.AT_DropColumn:
            yield _breaks_running_code(
                stmt,
                f"DROP COLUMN {cmd.name} breaks running code that uses it and loses its data",
                relname(node.relation),
            )


@rule(
    "ban-drop-table",
    "DROP TABLE",
    "high",
    "breaking",
    squawk=True,
    cases=[trigger('DROP TABLE "t";'), passes("CREATE TABLE t (id bigint);\nDROP TABLE t;")],
)
def ban_drop_table(mig, settings):
    """A table dropped under running application code.

    ## What it detects
    `DROP TABLE` and `DROP FOREIGN TABLE` of a table not created in the same migration.

    ## Why it matters
    Running code that uses the table fails and the data is gone.

    ## How to fix
    Stop using the table first; rename it aside (`..._deprecated`) for a release before
    dropping it, so a rollback is a rename.

    ## Example
    ```sql
    ALTER TABLE old_events RENAME TO old_events_deprecated;  -- release N
    DROP TABLE IF EXISTS old_events_deprecated;              -- release N+1
    ```

    ## Thresholds
    None.

    ## Known false positives
    Tables no deployed code uses.

    ## Differences from squawk
    squawk (2.70) exempts a table created earlier in the file only when the file runs in a
    transaction; queryaudit exempts it either way: nobody else uses a table that did not
    exist before this migration, so its lock blocks no one.
    """
    created = CreatedTables(mig)
    for stmt in mig.statements:
        node = stmt.node
        if isinstance(node, ast.DropStmt) and node.removeType in (
            ObjectType.OBJECT_TABLE,
            ObjectType.OBJECT_FOREIGN_TABLE,
        ):
            tables = [".".join(n.sval for n in obj) for obj in node.objects or ()]
            if all(created.created.get(t.split(".")[-1], 1 << 30) < stmt.index for t in tables):
                continue
            yield _breaks_running_code(
                stmt,
                f"DROP TABLE {', '.join(tables)} breaks running code and loses the data",
                tables[0] if tables else None,
            )


@rule(
    "ban-drop-database",
    "DROP DATABASE",
    "critical",
    "breaking",
    squawk=True,
    cases=[trigger('DROP DATABASE "shop";'), passes("DROP TABLE IF EXISTS t;")],
)
def ban_drop_database(mig, settings):
    """DROP DATABASE in a migration.

    ## What it detects
    `DROP DATABASE`.

    ## Why it matters
    Everything in it is gone; a migration has no business doing this.

    ## How to fix
    Remove it from the migration; drop databases by hand, with a backup.

    ## Example
    ```sql
    -- not in a migration
    ```

    ## Thresholds
    None.

    ## Known false positives
    Test scripts linted by mistake.
    """
    for stmt in mig.statements:
        if isinstance(stmt.node, ast.DropdbStmt):
            yield violation(stmt, f"DROP DATABASE {stmt.node.dbname}: everything in it is lost")


@rule(
    "ban-drop-not-null",
    "DROP NOT NULL",
    "medium",
    "breaking",
    squawk=True,
    cases=[
        trigger('ALTER TABLE "t" ALTER COLUMN "c" DROP NOT NULL;'),
        passes("ALTER TABLE t ALTER COLUMN c SET DEFAULT 1;"),
    ],
)
def ban_drop_not_null(mig, settings):
    """A column made nullable under code that assumes it is not.

    ## What it detects
    `ALTER TABLE | FOREIGN TABLE ... ALTER COLUMN ... DROP NOT NULL` and `ALTER DOMAIN ...
    DROP NOT NULL`.

    ## Why it matters
    Running code (and typed clients) that assume a value may crash on the first NULL;
    re-adding NOT NULL later needs a full scan.

    ## How to fix
    Ship code that handles NULL first, then drop the constraint.

    ## Example
    ```sql
    ALTER TABLE users ALTER COLUMN nickname DROP NOT NULL;  -- after the code handles NULL
    ```

    ## Thresholds
    None.

    ## Known false positives
    Columns no code reads.
    """
    for stmt, node, cmd in alter_table_cmds(mig, (ObjectType.OBJECT_TABLE, ObjectType.OBJECT_FOREIGN_TABLE)):
        if cmd.subtype == AlterTableType.AT_DropNotNull:
            yield violation(
                stmt,
                f"DROP NOT NULL on {cmd.name}: code that assumes a value may break",
                lock=ACCESS_EXCLUSIVE,
                rewrite=False,
                table=relname(node.relation),
            )
    for stmt in mig.statements:
        if isinstance(stmt.node, ast.AlterDomainStmt) and stmt.node.subtype == "N":
            yield violation(stmt, "DROP NOT NULL on a domain: code that assumes its columns hold a value may break")
