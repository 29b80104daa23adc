"""Compatibility rules (squawk 2.70's opt-in ones): changes that are safe for the database but
change what existing clients see or may write. All opt-in, as in squawk; objects created
earlier in the same file are exempt, as squawk does for its own compatibility rules."""

from __future__ import annotations

import re

from pglast import ast
from pglast.enums import AlterTableType, ConstrType, ObjectType

from queryaudit.migrations import passes, rule, trigger
from queryaudit.migrations.rules._util import (
    INDEX,
    SEQUENCE,
    TABLE,
    TRIGGER,
    TYPE,
    NewObjects,
    constraints_of,
    last_name,
    relname,
    violation,
)

TABLE_LIKE = (ObjectType.OBJECT_TABLE, ObjectType.OBJECT_FOREIGN_TABLE)


def _table_cmds(mig, objtypes=TABLE_LIKE, kind: str = TABLE):
    """(statement, ALTER node, command) of ALTER TABLE-shaped statements on objects not created in the file."""
    new = NewObjects(mig)
    for stmt in mig.statements:
        node = stmt.node
        if (
            isinstance(node, ast.AlterTableStmt)
            and node.objtype in objtypes
            and not new.before(kind, node.relation.relname, stmt)
        ):
            for cmd in node.cmds or ():
                if isinstance(cmd, ast.AlterTableCmd):
                    yield stmt, node, cmd


@rule(
    "ban-add-column",
    "ADD COLUMN to an existing table (row shape changes)",
    "low",
    "compatibility",
    default=False,
    squawk=True,
    cases=[
        trigger("ALTER TABLE users ADD COLUMN nickname text;"),
        trigger("ALTER FOREIGN TABLE remote_users ADD COLUMN nickname text;"),
        passes("CREATE TABLE users (id bigint);\nALTER TABLE users ADD COLUMN nickname text;"),
    ],
)
def ban_add_column(mig, settings):
    """A column added to a table existing clients read (opt-in).

    ## What it detects
    `ALTER TABLE | FOREIGN TABLE ... ADD COLUMN` on a table not created earlier in the file.

    ## Why it matters
    `SELECT *` and positional `INSERT ... VALUES` without a column list see a different row
    shape: clients that map columns by position break.

    ## How to fix
    Make sure no client selects `*` into a fixed shape or inserts positionally.

    ## Example
    ```sql
    INSERT INTO users (id, email) VALUES (1, 'a@example.com');  -- name the columns
    ```

    ## Thresholds
    None. Off by default, as in squawk: select it with `--rule ban-add-column`.

    ## Known false positives
    Clients that always name their columns.
    """
    for stmt, node, cmd in _table_cmds(mig):
        if cmd.subtype == AlterTableType.AT_AddColumn:
            yield violation(
                stmt,
                f"ADD COLUMN {cmd.def_.colname}: the rows of {relname(node.relation)} change shape "
                "for SELECT * and positional INSERT",
                table=relname(node.relation),
            )


WRITE_RESTRICTING = {
    ConstrType.CONSTR_CHECK,
    ConstrType.CONSTR_FOREIGN,
    ConstrType.CONSTR_UNIQUE,
    ConstrType.CONSTR_PRIMARY,
    ConstrType.CONSTR_EXCLUSION,
    ConstrType.CONSTR_NOTNULL,
}


@rule(
    "ban-new-write-restriction",
    "A new constraint, NOT NULL or unique index that can reject writes",
    "medium",
    "compatibility",
    default=False,
    squawk=True,
    cases=[
        trigger("ALTER TABLE t ADD CONSTRAINT ck CHECK (id > 0) NOT VALID;"),
        trigger("ALTER TABLE t ALTER COLUMN id SET NOT NULL;"),
        trigger("CREATE UNIQUE INDEX CONCURRENTLY idx ON t (id);"),
        trigger("ALTER DOMAIN d SET NOT NULL;"),
        trigger("ALTER TABLE t ADD COLUMN c int NOT NULL;"),
        passes("CREATE INDEX CONCURRENTLY idx ON t (id);"),
        passes(
            "CREATE TABLE t (id int);\nALTER TABLE t ADD CONSTRAINT ck CHECK (id > 0) NOT VALID;\n"
            "CREATE UNIQUE INDEX idx ON t (id);"
        ),
    ],
)
def ban_new_write_restriction(mig, settings):
    """A new rule that can reject writes existing clients make (opt-in).

    ## What it detects
    On tables not created earlier in the file: ADD CONSTRAINT (CHECK, FOREIGN KEY,
    UNIQUE, PRIMARY KEY, EXCLUDE, NOT NULL), SET NOT NULL, ADD COLUMN with such a
    constraint, ALTER CONSTRAINT that enforces it or changes when it is checked, CREATE
    UNIQUE INDEX (even CONCURRENTLY); ALTER DOMAIN ... SET NOT NULL / ADD CONSTRAINT.

    ## Why it matters
    Even `NOT VALID` checks every new write: code that wrote rows the constraint rejects
    starts failing the moment it commits.

    ## How to fix
    Ship code that writes only valid rows first; then add the constraint.

    ## Example
    ```sql
    -- release N: the app never writes qty <= 0
    ALTER TABLE items ADD CONSTRAINT qty_positive CHECK (qty > 0) NOT VALID;  -- release N+1
    ```

    ## Thresholds
    None. Off by default, as in squawk.

    ## Known false positives
    Constraints the code already respects.
    """
    new = NewObjects(mig)
    for stmt in mig.statements:
        node = stmt.node
        if isinstance(node, ast.IndexStmt) and node.unique and not new.before(TABLE, node.relation.relname, stmt):
            yield violation(
                stmt, "a unique index rejects duplicate writes from existing clients", table=relname(node.relation)
            )
        elif (
            isinstance(node, ast.AlterDomainStmt)
            and (node.subtype == "O" or node.subtype == "C")
            and not new.before(TYPE, last_name(node.typeName), stmt)
        ):
            yield violation(stmt, f"domain {last_name(node.typeName)} now rejects values existing clients may write")
    for stmt, node, cmd in _table_cmds(mig):
        t = relname(node.relation)
        if (
            cmd.subtype == AlterTableType.AT_AddConstraint
            and isinstance(cmd.def_, ast.Constraint)
            and cmd.def_.contype in WRITE_RESTRICTING
        ):
            yield violation(stmt, f"a new constraint on {t} rejects writes that break it, even NOT VALID", table=t)
        elif cmd.subtype == AlterTableType.AT_SetNotNull:
            yield violation(stmt, f"SET NOT NULL on {t}.{cmd.name} rejects writes of NULL", table=t)
        elif cmd.subtype == AlterTableType.AT_AddColumn and (
            cmd.def_.is_not_null or any(c.contype in WRITE_RESTRICTING for c in constraints_of(cmd.def_))
        ):
            yield violation(
                stmt, f"the new column {cmd.def_.colname} carries a constraint that rejects writes", table=t
            )
        elif (
            cmd.subtype == AlterTableType.AT_AlterConstraint
            and isinstance(cmd.def_, ast.ATAlterConstraint)
            and ((cmd.def_.alterEnforceability and cmd.def_.is_enforced) or cmd.def_.alterDeferrability)
        ):
            yield violation(stmt, f"constraint {cmd.def_.conname} is now enforced or checked at another time", table=t)


@rule(
    "ban-add-enum-value",
    "ALTER TYPE ... ADD VALUE on an existing enum",
    "low",
    "compatibility",
    default=False,
    squawk=True,
    cases=[
        trigger("ALTER TYPE mood ADD VALUE 'meh' AFTER 'ok';"),
        passes("CREATE TYPE mood AS ENUM ('ok');\nALTER TYPE mood ADD VALUE 'meh';"),
    ],
)
def ban_add_enum_value(mig, settings):
    """A value added to an enum existing clients read (opt-in).

    ## What it detects
    `ALTER TYPE ... ADD VALUE` on a type not created earlier in the file.

    ## Why it matters
    Clients that map the enum to a closed set (generated types, switch statements) fail on
    the first row with the new value.

    ## How to fix
    Deploy clients that accept the new value before any row uses it.

    ## Example
    ```sql
    ALTER TYPE order_status ADD VALUE IF NOT EXISTS 'refunded' AFTER 'paid';
    ```

    ## Thresholds
    None. Off by default, as in squawk.

    ## Known false positives
    Clients that treat the enum as text.
    """
    new = NewObjects(mig)
    for stmt in mig.statements:
        node = stmt.node
        if (
            isinstance(node, ast.AlterEnumStmt)
            and node.newVal
            and not node.oldVal
            and not new.before(TYPE, last_name(node.typeName), stmt)
        ):
            yield violation(
                stmt,
                f"enum {last_name(node.typeName)} gains {node.newVal!r}: "
                "clients with a closed set of values may fail on it",
            )


@rule(
    "ban-add-composite-attribute",
    "ALTER TYPE ... ADD ATTRIBUTE on an existing composite type",
    "low",
    "compatibility",
    default=False,
    squawk=True,
    cases=[
        trigger("ALTER TYPE address ADD ATTRIBUTE zip text;"),
        passes("CREATE TYPE address AS (street text);\nALTER TYPE address ADD ATTRIBUTE zip text;"),
    ],
)
def ban_add_composite_attribute(mig, settings):
    """An attribute added to a composite type existing clients read (opt-in).

    ## What it detects
    `ALTER TYPE ... ADD ATTRIBUTE` on a type not created earlier in the file.

    ## Why it matters
    Clients that decode the composite by position get a different shape.

    ## How to fix
    Deploy clients that decode by name (or ignore extra attributes) first.

    ## Example
    ```sql
    ALTER TYPE address ADD ATTRIBUTE zip text;  -- after the clients are ready
    ```

    ## Thresholds
    None. Off by default, as in squawk.

    ## Known false positives
    Types no client decodes.
    """
    for stmt, node, cmd in _table_cmds(mig, (ObjectType.OBJECT_TYPE,), TYPE):
        if cmd.subtype == AlterTableType.AT_AddColumn:
            yield violation(stmt, f"type {node.relation.relname} gains attribute {cmd.def_.colname}")


@rule(
    "ban-detach-inheritance",
    "DETACH PARTITION / NO INHERIT",
    "medium",
    "compatibility",
    default=False,
    squawk=True,
    cases=[
        trigger("ALTER TABLE events DETACH PARTITION events_2020 CONCURRENTLY;"),
        trigger("ALTER TABLE child NO INHERIT parent;"),
        passes("CREATE TABLE child (id int);\nALTER TABLE child NO INHERIT parent;"),
    ],
)
def ban_detach_inheritance(mig, settings):
    """A partition or child table detached from its parent (opt-in).

    ## What it detects
    `DETACH PARTITION` (FINALIZE included) and `NO INHERIT` on a table not created earlier
    in the file.

    ## Why it matters
    Queries on the parent stop seeing the child's rows, and inserts through the parent
    that would route there fail (no partition for the value).

    ## How to fix
    Detach only data no client reads through the parent any more.

    ## Example
    ```sql
    ALTER TABLE events DETACH PARTITION events_2020 CONCURRENTLY;  -- 2020 is archived
    ```

    ## Thresholds
    None. Off by default, as in squawk.

    ## Known false positives
    Archival of data nobody queries.
    """
    for stmt, node, cmd in _table_cmds(mig):
        if cmd.subtype in (
            AlterTableType.AT_DetachPartition,
            AlterTableType.AT_DetachPartitionFinalize,
            AlterTableType.AT_DropInherit,
        ):
            what = "NO INHERIT" if cmd.subtype == AlterTableType.AT_DropInherit else "DETACH PARTITION"
            yield violation(
                stmt, f"{what}: queries through the parent stop seeing those rows", table=relname(node.relation)
            )


SEQUENCE_NAMING_OPTIONS = {"owned_by", "logged", "unlogged", "sequence_name"}


@rule(
    "ban-alter-sequence-values",
    "ALTER SEQUENCE (or identity) RESTART, INCREMENT, MIN/MAX...",
    "medium",
    "compatibility",
    default=False,
    squawk=True,
    cases=[
        trigger("ALTER SEQUENCE ids RESTART WITH 1 INCREMENT BY 2;"),
        trigger("ALTER TABLE t ALTER COLUMN id RESTART WITH 5;"),
        passes("ALTER SEQUENCE ids OWNED BY t.id;"),
        passes("CREATE SEQUENCE ids;\nALTER SEQUENCE ids RESTART WITH 1;"),
    ],
)
def ban_alter_sequence_values(mig, settings):
    """The values a sequence or identity column generates changed (opt-in).

    ## What it detects
    `ALTER SEQUENCE` with any option but OWNED BY / LOGGED / UNLOGGED, on a sequence not
    created earlier in the file; `ALTER COLUMN ... RESTART` and identity sequence options.

    ## Why it matters
    RESTART can hand out ids that already exist (duplicate-key failures); a new increment,
    minimum or maximum changes what clients receive or makes nextval() fail.

    ## How to fix
    Restart only above the current maximum; check what clients assume about the values.

    ## Example
    ```sql
    SELECT setval('ids', (SELECT max(id) FROM t));
    ```

    ## Thresholds
    None. Off by default, as in squawk.

    ## Known false positives
    Sequences whose values nobody relies on.
    """
    new = NewObjects(mig)
    for stmt in mig.statements:
        node = stmt.node
        if isinstance(node, ast.AlterSeqStmt) and not new.before(SEQUENCE, node.sequence.relname, stmt):
            changed = [d.defname for d in node.options or () if d.defname not in SEQUENCE_NAMING_OPTIONS]
            if changed:
                yield violation(
                    stmt, f"ALTER SEQUENCE {node.sequence.relname} {', '.join(changed)}: the values it generates change"
                )
    for stmt, node, cmd in _table_cmds(mig):
        if cmd.subtype == AlterTableType.AT_SetIdentity:
            changed = [d.defname for d in cmd.def_ or () if d.defname != "generated"]
            if changed:
                yield violation(
                    stmt,
                    f"identity of {relname(node.relation)}.{cmd.name}: {', '.join(changed)} changes "
                    "the values it generates",
                    table=relname(node.relation),
                )


@rule(
    "ban-set-default",
    "SET DEFAULT on an existing column",
    "low",
    "compatibility",
    default=False,
    squawk=True,
    cases=[
        trigger("ALTER TABLE t ALTER COLUMN c SET DEFAULT 1;"),
        passes("ALTER TABLE t ALTER COLUMN c DROP DEFAULT;"),
        passes("CREATE TABLE t (c int);\nALTER TABLE t ALTER COLUMN c SET DEFAULT 1;"),
    ],
)
def ban_set_default(mig, settings):
    """A column default set or changed under existing writers (opt-in).

    ## What it detects
    `ALTER COLUMN ... SET DEFAULT` on a table (or view, foreign table) not created earlier
    in the file, and `ALTER DOMAIN ... SET DEFAULT`.

    ## Why it matters
    Inserts that omit the column silently start writing the new value.

    ## How to fix
    Check that every writer expects the new default.

    ## Example
    ```sql
    ALTER TABLE orders ALTER COLUMN status SET DEFAULT 'new';
    ```

    ## Thresholds
    None. Off by default, as in squawk.

    ## Known false positives
    Columns every insert sets.

    ## Differences from squawk
    squawk (2.70) exempts only the tables its compatibility rules track; queryaudit skips
    every object created earlier in the same file (no client knows it yet).
    """
    new = NewObjects(mig)
    for stmt in mig.statements:
        node = stmt.node
        if (
            isinstance(node, ast.AlterDomainStmt)
            and node.subtype == "T"
            and node.def_ is not None
            and not new.before(TYPE, last_name(node.typeName), stmt)
        ):
            yield violation(
                stmt,
                f"SET DEFAULT on domain {last_name(node.typeName)}: inserts that omit its columns write the new value",
            )
    for stmt, node, cmd in _table_cmds(mig, TABLE_LIKE + (ObjectType.OBJECT_VIEW,)):
        if cmd.subtype == AlterTableType.AT_ColumnDefault and cmd.def_ is not None:
            yield violation(
                stmt,
                f"SET DEFAULT on {relname(node.relation)}.{cmd.name}: inserts that omit it write the new value",
                table=relname(node.relation),
            )


@rule(
    "ban-alter-generated-expression",
    "SET EXPRESSION of a generated column, or a generated column added",
    "medium",
    "compatibility",
    default=False,
    squawk=True,
    cases=[
        trigger("ALTER TABLE t ALTER COLUMN total SET EXPRESSION AS (qty * price);"),
        trigger("ALTER TABLE t ADD COLUMN total numeric GENERATED ALWAYS AS (qty * price) STORED;"),
        passes("ALTER TABLE t ALTER COLUMN total DROP EXPRESSION;"),
    ],
)
def ban_alter_generated_expression(mig, settings):
    """A generated column's expression changed, or a generated column added (opt-in).

    ## What it detects
    `ALTER COLUMN ... SET EXPRESSION AS (...)` (PostgreSQL 17+) and `ADD COLUMN ...
    GENERATED ALWAYS AS (...) STORED` or `GENERATED ALWAYS AS IDENTITY`, on a table not
    created earlier in the file.

    ## Why it matters
    Clients read different values for the same rows; for a stored column PostgreSQL also
    rewrites the table under ACCESS EXCLUSIVE. A new generated column rejects explicit
    values: inserts that list every column positionally, or copy rows with `SELECT *`,
    fail.

    ## How to fix
    Add a new generated column, move the readers, then drop the old one.

    ## Example
    ```sql
    ALTER TABLE t ADD COLUMN total_v2 numeric GENERATED ALWAYS AS (qty * price) STORED;
    ```

    ## Thresholds
    None. Off by default, as in squawk.

    ## Known false positives
    Columns nobody reads.
    """
    for stmt, node, cmd in _table_cmds(mig):
        if cmd.subtype == AlterTableType.AT_SetExpression:
            yield violation(
                stmt,
                f"SET EXPRESSION on {relname(node.relation)}.{cmd.name}: readers get different values",
                lock="ACCESS EXCLUSIVE",
                rewrite=True,
                table=relname(node.relation),
            )
        elif cmd.subtype == AlterTableType.AT_AddColumn and any(
            c.contype == ConstrType.CONSTR_GENERATED
            or (c.contype == ConstrType.CONSTR_IDENTITY and c.generated_when == "a")
            for c in constraints_of(cmd.def_)
        ):
            yield violation(
                stmt,
                f"generated column {cmd.def_.colname} added to {relname(node.relation)}: inserts "
                "that list every column, or copy rows with SELECT *, now fail",
                table=relname(node.relation),
            )


@rule(
    "ban-drop-index",
    "DROP INDEX (even CONCURRENTLY)",
    "low",
    "compatibility",
    default=False,
    squawk=True,
    cases=[
        trigger("DROP INDEX CONCURRENTLY IF EXISTS orders_customer_idx;"),
        passes("CREATE INDEX CONCURRENTLY i ON t (id);"),
        passes("CREATE INDEX i ON t (id);\nDROP INDEX i;"),
    ],
)
def ban_drop_index(mig, settings):
    """An index dropped: plans change, and a unique index's guarantee goes (opt-in).

    ## What it detects
    `DROP INDEX` (with or without CONCURRENTLY) of an index not created earlier in the file.
    require-concurrent-index-deletion covers the lock; this rule covers the effect.

    ## Why it matters
    Queries that used the index fall back to other plans (often a sequential scan); a
    unique index stops rejecting duplicates.

    ## How to fix
    Check the index is unused (`pg_stat_user_indexes.idx_scan`, `queryaudit audit`) on
    every replica before dropping it.

    ## Example
    ```sql
    DROP INDEX CONCURRENTLY IF EXISTS orders_legacy_idx;  -- idx_scan = 0 for 30 days
    ```

    ## Thresholds
    None. Off by default, as in squawk.

    ## Known false positives
    Indexes no plan uses.

    ## Differences from squawk
    squawk (2.70) exempts only the tables its compatibility rules track; queryaudit skips
    every object created earlier in the same file (no client knows it yet).
    """
    new = NewObjects(mig)
    for stmt in mig.statements:
        node = stmt.node
        if isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_INDEX:
            dropped = [last_name(o) for o in node.objects or () if not new.before(INDEX, last_name(o), stmt)]
            if dropped:
                yield violation(stmt, f"DROP INDEX {', '.join(dropped)}: plans that use it change")


@rule(
    "ban-drop-trigger",
    "DROP TRIGGER",
    "medium",
    "compatibility",
    default=False,
    squawk=True,
    cases=[
        trigger("DROP TRIGGER audit_orders ON orders;"),
        passes("CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f();\nDROP TRIGGER tr ON t;"),
    ],
)
def ban_drop_trigger(mig, settings):
    """A trigger dropped: the work it did for every write stops (opt-in).

    ## What it detects
    `DROP TRIGGER` of a trigger not created earlier in the file.

    ## Why it matters
    Audit rows, denormalised columns and checks the trigger maintained silently stop.

    ## How to fix
    Move the work elsewhere first, or recreate the trigger in the same transaction.

    ## Example
    ```sql
    BEGIN;
    DROP TRIGGER audit_orders ON orders;
    CREATE TRIGGER audit_orders AFTER INSERT OR UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION audit_v2();
    COMMIT;
    ```

    ## Thresholds
    None. Off by default, as in squawk.

    ## Known false positives
    Triggers replaced in the same transaction.

    ## Differences from squawk
    squawk (2.70) exempts only the tables its compatibility rules track; queryaudit skips
    every object created earlier in the same file (no client knows it yet).
    """
    new = NewObjects(mig)
    for stmt in mig.statements:
        node = stmt.node
        if isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_TRIGGER:
            for obj in node.objects or ():
                name = last_name(obj)
                if not new.before(TRIGGER, name, stmt):
                    yield violation(stmt, f"DROP TRIGGER {name}: what it did on every write stops")


# Every change of whether triggers and rules fire (squawk 2.70 reports enabling too: ALWAYS and
# REPLICA change when they fire), and row level security switched off or forced.
TRIGGER_FIRING = {
    AlterTableType.AT_EnableTrig,
    AlterTableType.AT_EnableAlwaysTrig,
    AlterTableType.AT_EnableReplicaTrig,
    AlterTableType.AT_DisableTrig,
    AlterTableType.AT_EnableTrigAll,
    AlterTableType.AT_DisableTrigAll,
    AlterTableType.AT_EnableTrigUser,
    AlterTableType.AT_DisableTrigUser,
    AlterTableType.AT_EnableRule,
    AlterTableType.AT_EnableAlwaysRule,
    AlterTableType.AT_EnableReplicaRule,
    AlterTableType.AT_DisableRule,
}
ROW_SECURITY_OFF = {
    AlterTableType.AT_DisableRowSecurity,
    AlterTableType.AT_ForceRowSecurity,
    AlterTableType.AT_NoForceRowSecurity,
}


def _firing_words(subtype: str) -> str:
    """AT_EnableAlwaysTrig -> ENABLE ALWAYS TRIGGER, AT_DisableTrigAll -> DISABLE TRIGGER ALL."""
    words = re.findall(r"[A-Z][a-z]*", subtype.removeprefix("AT_"))
    return " ".join({"Trig": "TRIGGER"}.get(w, w.upper()) for w in words)


@rule(
    "ban-disable-trigger",
    "Triggers or rules enabled, disabled, or made ALWAYS / REPLICA",
    "medium",
    "compatibility",
    default=False,
    squawk=True,
    cases=[
        trigger("ALTER TABLE orders DISABLE TRIGGER ALL;"),
        trigger("ALTER TABLE orders ENABLE REPLICA TRIGGER audit_orders;"),
        trigger("ALTER TABLE orders DISABLE ROW LEVEL SECURITY;"),
        passes("ALTER TABLE orders ADD COLUMN note text;"),
        passes("CREATE TABLE t (id bigint);\nALTER TABLE t DISABLE TRIGGER ALL;"),
    ],
)
def ban_disable_trigger(mig, settings):
    """A change in whether a table's triggers or rules fire (opt-in).

    ## What it detects
    `ENABLE | DISABLE [ALWAYS | REPLICA] TRIGGER name | ALL | USER` and the same for `RULE`,
    plus `DISABLE` / `[NO] FORCE ROW LEVEL SECURITY`, on a table not created earlier in the
    file.

    ## Why it matters
    Until it changes back, every write skips (or newly runs) the trigger's side effects;
    `ALL` also skips the foreign-key triggers, so bad references get in; a REPLICA trigger
    stops firing for application writes.

    ## How to fix
    Disable only inside the transaction that needs it, and enable it again before commit.

    ## Example
    ```sql
    BEGIN;
    ALTER TABLE orders DISABLE TRIGGER audit_orders;
    UPDATE orders SET note = '' WHERE note IS NULL;
    ALTER TABLE orders ENABLE TRIGGER audit_orders;
    COMMIT;
    ```

    ## Thresholds
    None. Off by default, as in squawk.

    ## Known false positives
    Disable/enable pairs in one transaction.

    ## Differences from squawk
    squawk (2.70) exempts only the tables its compatibility rules track; queryaudit skips
    every object created earlier in the same file (no client knows it yet).
    """
    for stmt, node, cmd in _table_cmds(mig):
        if cmd.subtype in TRIGGER_FIRING:
            what = _firing_words(cmd.subtype.name) + (f" {cmd.name}" if cmd.name else "")
            yield violation(
                stmt,
                f"{what} on {relname(node.relation)}: which triggers or rules fire on its writes changes",
                lock="SHARE ROW EXCLUSIVE",
                table=relname(node.relation),
            )
        elif cmd.subtype in ROW_SECURITY_OFF:
            yield violation(
                stmt,
                f"row level security of {relname(node.relation)} switched off or forced: the rows clients see change",
                table=relname(node.relation),
            )


@rule(
    "ban-replica-identity",
    "ALTER TABLE ... REPLICA IDENTITY",
    "medium",
    "compatibility",
    default=False,
    squawk=True,
    cases=[
        trigger("ALTER TABLE t REPLICA IDENTITY FULL;"),
        passes("CREATE TABLE t (id bigint);\nALTER TABLE t REPLICA IDENTITY FULL;"),
    ],
)
def ban_replica_identity(mig, settings):
    """The replica identity of a table changed (opt-in).

    ## What it detects
    `ALTER TABLE ... REPLICA IDENTITY` on a table not created earlier in the file, and
    `DROP PUBLICATION` (squawk 2.70 counts it here).

    ## Why it matters
    Logical replication and change-data-capture consumers (Debezium, publications) see
    different old-row data; NOTHING makes UPDATE and DELETE fail on a published table.

    ## How to fix
    Coordinate with the consumers of the table's changes.

    ## Example
    ```sql
    ALTER TABLE t REPLICA IDENTITY USING INDEX t_pkey;
    ```

    ## Thresholds
    None. Off by default, as in squawk.

    ## Known false positives
    Tables no publication includes.

    ## Differences from squawk
    squawk (2.70) exempts only the tables its compatibility rules track; queryaudit skips
    every object created earlier in the same file (no client knows it yet).
    """
    for stmt in mig.statements:
        if isinstance(stmt.node, ast.DropStmt) and stmt.node.removeType == ObjectType.OBJECT_PUBLICATION:
            yield violation(
                stmt, "DROP PUBLICATION: its logical replication subscribers and CDC consumers stop receiving changes"
            )
    for stmt, node, cmd in _table_cmds(mig):
        if cmd.subtype == AlterTableType.AT_ReplicaIdentity:
            yield violation(
                stmt,
                f"REPLICA IDENTITY of {relname(node.relation)} changes what replication and CDC consumers receive",
                lock="ACCESS EXCLUSIVE",
                table=relname(node.relation),
            )


@rule(
    "ban-replace-view-function",
    "CREATE OR REPLACE VIEW / FUNCTION / PROCEDURE",
    "low",
    "compatibility",
    default=False,
    squawk=True,
    cases=[
        trigger("CREATE OR REPLACE VIEW v AS SELECT 1 AS id;"),
        trigger("CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;"),
        passes("CREATE VIEW v AS SELECT 1;"),
    ],
)
def ban_replace_view_function(mig, settings):
    """A view, function or procedure replaced in place (opt-in).

    ## What it detects
    `CREATE OR REPLACE VIEW | FUNCTION | PROCEDURE | AGGREGATE | TRIGGER | RULE`.

    ## Why it matters
    Every client of the view or function gets the new behaviour at commit, with no
    error to say so.

    ## How to fix
    Version it (a new name) when the behaviour changes; replace in place only for
    compatible changes.

    ## Example
    ```sql
    CREATE FUNCTION order_total_v2(order_id bigint) RETURNS numeric LANGUAGE sql AS $$ ... $$;
    ```

    ## Thresholds
    None. Off by default, as in squawk.

    ## Known false positives
    Compatible changes (bug fixes the clients want).
    """
    for stmt in mig.statements:
        node = stmt.node
        if isinstance(node, ast.ViewStmt) and node.replace:
            yield violation(stmt, f"CREATE OR REPLACE VIEW {node.view.relname}: every reader sees the new definition")
        elif isinstance(node, ast.CreateFunctionStmt) and node.replace:
            what = "PROCEDURE" if node.is_procedure else "FUNCTION"
            yield violation(
                stmt, f"CREATE OR REPLACE {what} {last_name(node.funcname)}: every caller gets the new behaviour"
            )
        elif isinstance(node, ast.DefineStmt) and node.replace and node.kind == ObjectType.OBJECT_AGGREGATE:
            yield violation(
                stmt,
                f"CREATE OR REPLACE AGGREGATE {last_name(node.defnames)}: every query using it gets the new behaviour",
            )
        elif isinstance(node, (ast.CreateTrigStmt, ast.RuleStmt)) and node.replace:
            what, name = ("TRIGGER", node.trigname) if isinstance(node, ast.CreateTrigStmt) else ("RULE", node.rulename)
            yield violation(
                stmt,
                f"CREATE OR REPLACE {what} {name}: every write to {relname(node.relation)} gets the new behaviour",
                table=relname(node.relation),
            )


@rule(
    "ban-revoke",
    "REVOKE",
    "medium",
    "compatibility",
    default=False,
    squawk=True,
    cases=[
        trigger("REVOKE SELECT ON orders FROM reporting;"),
        trigger("ALTER DEFAULT PRIVILEGES REVOKE SELECT ON TABLES FROM app;"),
        passes("GRANT SELECT ON orders TO reporting;"),
    ],
)
def ban_revoke(mig, settings):
    """Privileges revoked from roles existing clients use (opt-in).

    ## What it detects
    `REVOKE` (privileges and role membership), `ALTER DEFAULT PRIVILEGES ... REVOKE`,
    `DROP OWNED`, `DROP ROLE`, and `OWNER TO` (the old owner loses its rights), as squawk
    2.70 does.

    ## Why it matters
    Clients connected as that role get "permission denied" from the commit on.

    ## How to fix
    Check which services use the role before revoking.

    ## Example
    ```sql
    REVOKE INSERT ON orders FROM reporting;  -- reporting only reads
    ```

    ## Thresholds
    None. Off by default, as in squawk.

    ## Known false positives
    Privileges nothing uses.
    """
    for stmt in mig.statements:
        node = stmt.node
        grant = node.action if isinstance(node, ast.AlterDefaultPrivilegesStmt) else node
        if isinstance(grant, (ast.GrantStmt, ast.GrantRoleStmt)) and not grant.is_grant:
            yield violation(stmt, "REVOKE: clients using that role lose access at commit")
        elif isinstance(node, (ast.DropOwnedStmt, ast.DropRoleStmt)):
            yield violation(stmt, "the role's privileges are dropped: clients using it lose access at commit")
        elif isinstance(node, ast.AlterOwnerStmt) or (
            isinstance(node, ast.AlterTableStmt)
            and any(getattr(c, "subtype", None) == AlterTableType.AT_ChangeOwner for c in node.cmds or ())
        ):
            yield violation(stmt, "OWNER TO: the old owner loses the owner's privileges on it")
