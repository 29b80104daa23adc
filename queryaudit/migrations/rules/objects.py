"""Breaking changes to objects other than tables and columns (squawk 2.70's rules of the same
names): drops, renames, moves to another schema, identity and generated-column changes."""

from __future__ import annotations

from pglast import ast
from pglast.enums import AlterTableType, DropBehavior, ObjectType

from queryaudit.migrations import passes, rule, trigger
from queryaudit.migrations.locks import ACCESS_EXCLUSIVE
from queryaudit.migrations.rules._util import (
    CONSTRAINT,
    FUNCTION,
    INDEX,
    KIND,
    SCHEMA,
    TABLE,
    TYPE,
    VIEW,
    NewObjects,
    alter_table_cmds,
    last_name,
    relname,
    violation,
)

# Objects a migration commonly drops and recreates to change them (CREATE OR REPLACE cannot
# change a view's columns or a function's return type). Inside one transaction, clients see
# the replacement only at commit, as with CREATE OR REPLACE (which only the opt-in
# ban-replace-view-function reports), not a drop. Sequences are not in the list: recreating one restarts its values.
REPLACEABLE = {
    ObjectType.OBJECT_VIEW,
    ObjectType.OBJECT_MATVIEW,
    ObjectType.OBJECT_FUNCTION,
    ObjectType.OBJECT_PROCEDURE,
    ObjectType.OBJECT_ROUTINE,
    ObjectType.OBJECT_TYPE,
}
EXPAND_CONTRACT = "-- expand/contract: deploy code that no longer uses it first, then drop it in a later migration"


def _drops(mig, *types: ObjectType, replaceable: bool = False):
    """(statement, DROP node, name) for each object dropped that running clients may use: not
    created earlier in the file and, for replaceable kinds, not recreated in the same transaction."""
    new = NewObjects(mig)
    for stmt in mig.statements:
        node = stmt.node
        if not isinstance(node, ast.DropStmt) or node.removeType not in types:
            continue
        kind = KIND[node.removeType]
        for obj in node.objects or ():
            name = last_name(obj)
            if new.before(kind, name, stmt):
                continue
            if (
                replaceable
                and node.removeType in REPLACEABLE
                and node.behavior != DropBehavior.DROP_CASCADE
                and new.recreated(kind, name, stmt, mig)
            ):
                continue
            yield stmt, node, name


def _drop_violation(stmt, node, message: str, cascade_severity: str | None = None, note: str = "", **kw):
    """A DROP's finding: with CASCADE the message says what else goes, and the severity may rise."""
    cascade = node.behavior == DropBehavior.DROP_CASCADE
    tail = " CASCADE also drops everything that depends on it" if cascade else ""
    return violation(stmt, f"{message}{tail}{note}", severity=cascade_severity if cascade else None, **kw)


@rule(
    "ban-drop-view",
    "DROP VIEW / MATERIALIZED VIEW",
    "high",
    "breaking",
    squawk=True,
    cases=[
        trigger("DROP VIEW active_users;"),
        trigger("DROP MATERIALIZED VIEW IF EXISTS daily_totals;"),
        passes("BEGIN;\nDROP VIEW active_users;\nCREATE VIEW active_users AS SELECT id, email FROM users;\nCOMMIT;"),
        passes("CREATE VIEW v AS SELECT 1 AS one;\nDROP VIEW v;"),
        trigger("DROP VIEW active_users;\nCREATE VIEW active_users AS SELECT id FROM users;"),
    ],
)
def ban_drop_view(mig, settings):
    """A view dropped under running application code.

    ## What it detects
    `DROP VIEW` and `DROP MATERIALIZED VIEW` of a view not created earlier in the file.
    A view dropped and created again in the same transaction block (the usual way to
    change its columns) is a replacement, not a drop, and is not reported here.

    ## Why it matters
    Every query that reads the view fails from the moment the drop commits. The drop
    takes ACCESS EXCLUSIVE on the view, queued behind its running readers.

    ## How to fix
    Stop reading the view in the code and deploy first; drop it in a later migration. To
    change a view, drop and recreate it inside one transaction (or `CREATE OR REPLACE`
    when only columns are added at the end).

    ## Example
    ```sql
    BEGIN;
    DROP VIEW active_users;
    CREATE VIEW active_users AS SELECT id, email, created_at FROM users WHERE active;
    COMMIT;
    ```

    ## Thresholds
    None.

    ## Known false positives
    Views no deployed code reads.

    ## Differences from squawk
    squawk (2.70) reports every DROP VIEW. queryaudit skips views created earlier in the
    same file and views recreated in the same transaction block: on the real-world corpus
    (kratos, supabase auth) these are the drop-and-recreate migrations that change a
    view's definition, which clients see only as the new view at commit.
    """
    new = NewObjects(mig)
    for stmt, node, name in _drops(mig, ObjectType.OBJECT_VIEW, ObjectType.OBJECT_MATVIEW, replaceable=True):
        recreate = (
            " (recreated later, but outside a transaction: clients see no view in between)"
            if any(s.index > stmt.index for s in new.created.get((VIEW, name), ()))
            else ""
        )
        yield _drop_violation(
            stmt,
            node,
            f"DROP VIEW {name} breaks running code that reads it",
            note=recreate,
            lock=ACCESS_EXCLUSIVE,
            rewrite=False,
            table=name,
            safe_sql=EXPAND_CONTRACT,
        )


@rule(
    "ban-drop-function",
    "DROP FUNCTION / PROCEDURE",
    "high",
    "breaking",
    squawk=True,
    cases=[
        trigger("DROP FUNCTION add_one(integer);"),
        trigger("DROP PROCEDURE IF EXISTS archive();"),
        passes("BEGIN;\nDROP FUNCTION f();\nCREATE FUNCTION f() RETURNS bigint LANGUAGE sql AS 'SELECT 1';\nCOMMIT;"),
        passes("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';\nDROP FUNCTION f();"),
    ],
)
def ban_drop_function(mig, settings):
    """A function or procedure dropped under running application code.

    ## What it detects
    `DROP FUNCTION`, `DROP PROCEDURE`, `DROP ROUTINE` and `DROP AGGREGATE` of one not
    created earlier in the file, unless it is created again in the same transaction block.

    ## Why it matters
    Calls from the application, from triggers, defaults and views fail; with CASCADE the
    triggers, defaults and views that use it are dropped too.

    ## How to fix
    Remove the callers first and drop it in a later migration; to change a return type,
    drop and recreate it in one transaction.

    ## Example
    ```sql
    BEGIN;
    DROP FUNCTION user_count();
    CREATE FUNCTION user_count() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM users';
    COMMIT;
    ```

    ## Thresholds
    None.

    ## Known false positives
    Functions nothing calls.

    ## Differences from squawk
    squawk (2.70) reports every drop; queryaudit skips functions created earlier in the
    file or recreated in the same transaction (a replacement, see ban-replace-view-function).
    """
    for stmt, node, name in _drops(
        mig,
        ObjectType.OBJECT_FUNCTION,
        ObjectType.OBJECT_PROCEDURE,
        ObjectType.OBJECT_ROUTINE,
        ObjectType.OBJECT_AGGREGATE,
        replaceable=True,
    ):
        yield _drop_violation(
            stmt,
            node,
            f"DROP FUNCTION {name} breaks the code, triggers and defaults that call it",
            safe_sql=EXPAND_CONTRACT,
        )


@rule(
    "ban-drop-type",
    "DROP TYPE",
    "medium",
    "breaking",
    squawk=True,
    cases=[
        trigger("DROP TYPE mood;"),
        trigger("DROP TYPE IF EXISTS mood CASCADE;"),
        passes("CREATE TYPE mood AS ENUM ('sad', 'ok');\nDROP TYPE mood;"),
    ],
)
def ban_drop_type(mig, settings):
    """A type dropped under running application code.

    ## What it detects
    `DROP TYPE` of a type not created earlier in the file (or recreated, without CASCADE,
    in the same transaction block); also `DROP OPERATOR`, `DROP CAST` and `DROP OPERATOR
    CLASS | FAMILY`, which squawk 2.70 counts here.

    ## Why it matters
    Code that casts to the type or calls functions taking it fails. Without CASCADE the
    drop fails while a column uses the type; with CASCADE those columns are dropped, and
    their data with them (severity high).

    ## How to fix
    Move the columns to another type first (expand/contract), then drop the type in a
    later migration, without CASCADE.

    ## Example
    ```sql
    DROP TYPE IF EXISTS mood;  -- after no column or function uses it
    ```

    ## Thresholds
    High with CASCADE, medium without.

    ## Known false positives
    Types nothing uses.

    ## Differences from squawk
    squawk (2.70) reports every drop; queryaudit skips types created earlier in the file.
    """
    for stmt, node, name in _drops(
        mig,
        ObjectType.OBJECT_TYPE,
        ObjectType.OBJECT_OPERATOR,
        ObjectType.OBJECT_CAST,
        ObjectType.OBJECT_OPCLASS,
        ObjectType.OBJECT_OPFAMILY,
        replaceable=True,
    ):
        what = (
            node.removeType.name.removeprefix("OBJECT_")
            .replace("OPCLASS", "OPERATOR CLASS")
            .replace("OPFAMILY", "OPERATOR FAMILY")
        )
        yield _drop_violation(stmt, node, f"DROP {what} {name or ''} breaks code that uses it", cascade_severity="high")


@rule(
    "ban-drop-domain",
    "DROP DOMAIN",
    "medium",
    "breaking",
    squawk=True,
    cases=[trigger("DROP DOMAIN positive_int;"), passes("CREATE DOMAIN d AS int;\nDROP DOMAIN d;")],
)
def ban_drop_domain(mig, settings):
    """A domain dropped under running application code.

    ## What it detects
    `DROP DOMAIN` of a domain not created earlier in the file.

    ## Why it matters
    Casts to the domain fail; with CASCADE every column of the domain is dropped with its
    data (severity high).

    ## How to fix
    Change the columns to the base type first, then drop the domain without CASCADE.

    ## Example
    ```sql
    ALTER TABLE t ALTER COLUMN qty TYPE integer;  -- binary-coercible from the domain
    DROP DOMAIN positive_int;
    ```

    ## Thresholds
    High with CASCADE, medium without.

    ## Known false positives
    Domains nothing uses.

    ## Differences from squawk
    squawk (2.70) reports every drop; queryaudit skips domains created earlier in the file.
    """
    for stmt, node, name in _drops(mig, ObjectType.OBJECT_DOMAIN):
        yield _drop_violation(stmt, node, f"DROP DOMAIN {name} breaks code that casts to it", cascade_severity="high")


@rule(
    "ban-drop-schema",
    "DROP SCHEMA",
    "high",
    "breaking",
    squawk=True,
    cases=[
        trigger("DROP SCHEMA reporting;"),
        trigger("DROP SCHEMA IF EXISTS reporting CASCADE;"),
        passes("CREATE SCHEMA scratch;\nDROP SCHEMA scratch;"),
    ],
)
def ban_drop_schema(mig, settings):
    """A schema dropped under running application code.

    ## What it detects
    `DROP SCHEMA` of a schema not created earlier in the file.

    ## Why it matters
    With CASCADE, every table, view, function and type in it is dropped with its data
    (critical); without, the drop fails unless the schema is empty, and code that names
    it (or has it in search_path) breaks.

    ## How to fix
    Move or drop its objects deliberately, one migration at a time; never CASCADE.

    ## Example
    ```sql
    DROP SCHEMA IF EXISTS reporting;  -- empty, unused
    ```

    ## Thresholds
    Critical with CASCADE, high without.

    ## Known false positives
    Empty schemas nobody uses.

    ## Differences from squawk
    squawk (2.70) reports every drop; queryaudit skips schemas created earlier in the file.
    """
    for stmt, node, name in _drops(mig, ObjectType.OBJECT_SCHEMA):
        yield _drop_violation(
            stmt,
            node,
            f"DROP SCHEMA {name} breaks code that uses its objects",
            cascade_severity="critical",
        )


@rule(
    "ban-drop-sequence",
    "DROP SEQUENCE",
    "medium",
    "breaking",
    squawk=True,
    cases=[trigger("DROP SEQUENCE invoice_numbers;"), passes("CREATE SEQUENCE s;\nDROP SEQUENCE s;")],
)
def ban_drop_sequence(mig, settings):
    """A sequence dropped under running application code.

    ## What it detects
    `DROP SEQUENCE` of a sequence not created earlier in the file.

    ## Why it matters
    Code that calls nextval() on it fails; with CASCADE the column defaults using it are
    dropped, so inserts that relied on them fail or write NULL.

    ## How to fix
    Remove the callers and defaults first; drop it in a later migration.

    ## Example
    ```sql
    ALTER TABLE invoices ALTER COLUMN number DROP DEFAULT;  -- release N
    DROP SEQUENCE invoice_numbers;                          -- release N+1
    ```

    ## Thresholds
    High with CASCADE, medium without.

    ## Known false positives
    Sequences nothing uses.

    ## Differences from squawk
    squawk (2.70) reports every drop; queryaudit skips sequences created earlier in the file.
    """
    for stmt, node, name in _drops(mig, ObjectType.OBJECT_SEQUENCE):
        yield _drop_violation(
            stmt,
            node,
            f"DROP SEQUENCE {name} breaks code and defaults that call nextval() on it",
            cascade_severity="high",
        )


@rule(
    "ban-drop-extension",
    "DROP EXTENSION",
    "high",
    "breaking",
    squawk=True,
    cases=[trigger("DROP EXTENSION pg_trgm;"), passes("CREATE EXTENSION hstore;\nDROP EXTENSION hstore;")],
)
def ban_drop_extension(mig, settings):
    """An extension dropped under running application code.

    ## What it detects
    `DROP EXTENSION` of an extension not created earlier in the file.

    ## Why it matters
    Its functions, operators, types and index access methods go with it: queries and
    indexes that use them (trigram indexes, uuid functions) break; with CASCADE the
    indexes and columns that depend on it are dropped.

    ## How to fix
    Remove every use first; drop it in a later migration, without CASCADE.

    ## Example
    ```sql
    DROP EXTENSION IF EXISTS pg_trgm;  -- after its indexes and calls are gone
    ```

    ## Thresholds
    None.

    ## Known false positives
    Extensions nothing uses.

    ## Differences from squawk
    squawk (2.70) reports every drop; queryaudit skips extensions created earlier in the file.
    """
    for stmt, node, name in _drops(mig, ObjectType.OBJECT_EXTENSION):
        yield _drop_violation(
            stmt,
            node,
            f"DROP EXTENSION {name} removes the functions, types and operators code and indexes use",
        )


@rule(
    "ban-drop-constraint",
    "DROP CONSTRAINT",
    "medium",
    "breaking",
    squawk=True,
    cases=[
        trigger("ALTER TABLE orders DROP CONSTRAINT orders_total_check;"),
        passes(
            "ALTER TABLE orders ADD CONSTRAINT c CHECK (total >= 0) NOT VALID;\nALTER TABLE orders DROP CONSTRAINT c;"
        ),
        passes("CREATE TABLE t (id bigint);\nALTER TABLE t DROP CONSTRAINT IF EXISTS t_pkey;"),
    ],
)
def ban_drop_constraint(mig, settings):
    """A constraint dropped: a guarantee the application relies on is gone.

    ## What it detects
    `ALTER TABLE ... DROP CONSTRAINT` of a constraint not added earlier in the file, on a
    table not created earlier in the file; and `ALTER CONSTRAINT ... NOT ENFORCED`
    (PostgreSQL 18), which keeps the constraint but stops checking it.

    ## Why it matters
    Code that relies on the constraint (ON CONFLICT on a unique key, cascading deletes,
    errors it expects) behaves differently, and bad data can get in from then on. The drop
    takes ACCESS EXCLUSIVE on the table (briefly; a foreign key also locks the other table).

    ## How to fix
    Make sure no code depends on it; to replace a constraint, add the new one (NOT VALID,
    then VALIDATE) before dropping the old one.

    ## Example
    ```sql
    ALTER TABLE orders ADD CONSTRAINT orders_total_nonneg CHECK (total >= 0) NOT VALID;
    ALTER TABLE orders VALIDATE CONSTRAINT orders_total_nonneg;
    ALTER TABLE orders DROP CONSTRAINT orders_total_check;
    ```

    ## Thresholds
    None.

    ## Known false positives
    Constraints replaced by an equivalent one in an earlier migration.

    ## Differences from squawk
    squawk (2.70) reports every DROP CONSTRAINT; queryaudit skips constraints added and
    tables created earlier in the same file (the temporary CHECK of the safe SET NOT NULL
    recipe is dropped that way).
    """
    new = NewObjects(mig)
    for stmt, node, cmd in alter_table_cmds(mig):
        if (
            cmd.subtype == AlterTableType.AT_AlterConstraint
            and isinstance(cmd.def_, ast.ATAlterConstraint)
            and cmd.def_.alterEnforceability
            and not cmd.def_.is_enforced
        ):
            if not new.before(TABLE, node.relation.relname, stmt):
                yield violation(
                    stmt,
                    f"constraint {cmd.def_.conname} made NOT ENFORCED: its guarantee is gone for new writes",
                    table=relname(node.relation),
                )
            continue
        if cmd.subtype != AlterTableType.AT_DropConstraint:
            continue
        if new.before(TABLE, node.relation.relname, stmt) or new.before(CONSTRAINT, cmd.name, stmt):
            continue
        yield violation(
            stmt,
            f"DROP CONSTRAINT {cmd.name} removes a guarantee code on {relname(node.relation)} may rely on",
            lock=ACCESS_EXCLUSIVE,
            rewrite=False,
            table=relname(node.relation),
        )


@rule(
    "ban-drop-default",
    "DROP DEFAULT",
    "medium",
    "breaking",
    squawk=True,
    cases=[
        trigger("ALTER TABLE orders ALTER COLUMN status DROP DEFAULT;"),
        trigger("ALTER DOMAIN status DROP DEFAULT;"),
        passes("CREATE TABLE t (c int DEFAULT 0);\nALTER TABLE t ALTER COLUMN c DROP DEFAULT;"),
        passes("ALTER TABLE orders ALTER COLUMN status SET DEFAULT 'new';"),
    ],
)
def ban_drop_default(mig, settings):
    """A column (or domain) default dropped under code that omits the column on insert.

    ## What it detects
    `ALTER TABLE | FOREIGN TABLE | VIEW ... ALTER COLUMN ... DROP DEFAULT` and `ALTER
    DOMAIN ... DROP DEFAULT`, on objects not created earlier in the file.

    ## Why it matters
    Inserts that leave the column out now write NULL, or fail on a NOT NULL column.

    ## How to fix
    Ship code that always sets the column first; then drop the default.

    ## Example
    ```sql
    -- release N: every INSERT sets status
    ALTER TABLE orders ALTER COLUMN status DROP DEFAULT;  -- release N+1
    ```

    ## Thresholds
    None.

    ## Known false positives
    Columns every insert sets.

    ## Differences from squawk
    squawk (2.70) reports every DROP DEFAULT; queryaudit skips tables and domains created
    earlier in the file.
    """
    new = NewObjects(mig)
    for stmt in mig.statements:
        node = stmt.node
        if isinstance(node, ast.AlterDomainStmt) and node.subtype == "T" and node.def_ is None:
            if not new.before(TYPE, last_name(node.typeName), stmt):
                yield violation(
                    stmt, f"DROP DEFAULT on domain {last_name(node.typeName)}: inserts that omit its columns write NULL"
                )
        elif isinstance(node, ast.AlterTableStmt) and node.objtype in (
            ObjectType.OBJECT_TABLE,
            ObjectType.OBJECT_FOREIGN_TABLE,
            ObjectType.OBJECT_VIEW,
        ):
            kind = VIEW if node.objtype == ObjectType.OBJECT_VIEW else TABLE
            if new.before(kind, node.relation.relname, stmt):
                continue
            for cmd in node.cmds or ():
                if getattr(cmd, "subtype", None) == AlterTableType.AT_ColumnDefault and cmd.def_ is None:
                    yield violation(
                        stmt,
                        f"DROP DEFAULT on {relname(node.relation)}.{cmd.name}: inserts that omit "
                        "the column write NULL (or fail if it is NOT NULL)",
                        lock=ACCESS_EXCLUSIVE,
                        rewrite=False,
                        table=relname(node.relation),
                    )


@rule(
    "ban-drop-generated-expression",
    "DROP EXPRESSION of a generated column",
    "medium",
    "breaking",
    squawk=True,
    cases=[
        trigger("ALTER TABLE orders ALTER COLUMN total DROP EXPRESSION;"),
        passes(
            "CREATE TABLE t (a int, b int GENERATED ALWAYS AS (a * 2) STORED);\n"
            "ALTER TABLE t ALTER COLUMN b DROP EXPRESSION;"
        ),
    ],
)
def ban_drop_generated_expression(mig, settings):
    """A generated column turned into a plain column.

    ## What it detects
    `ALTER TABLE ... ALTER COLUMN ... DROP EXPRESSION` on a table not created earlier in
    the file.

    ## Why it matters
    The column stops following its inputs: code that reads it gets stale values for
    every row written afterwards, and writes that set it are now accepted.

    ## How to fix
    Make sure every writer computes the value (or a trigger does) before dropping the
    expression.

    ## Example
    ```sql
    -- a trigger now maintains total; then:
    ALTER TABLE orders ALTER COLUMN total DROP EXPRESSION;
    ```

    ## Thresholds
    None.

    ## Known false positives
    Columns nobody reads.

    ## Differences from squawk
    squawk (2.70) reports it on any table; queryaudit skips tables created earlier in the file.
    """
    new = NewObjects(mig)
    for stmt, node, cmd in alter_table_cmds(mig):
        if cmd.subtype == AlterTableType.AT_DropExpression and not new.before(TABLE, node.relation.relname, stmt):
            yield violation(
                stmt,
                f"DROP EXPRESSION on {relname(node.relation)}.{cmd.name}: the column stops being computed",
                lock=ACCESS_EXCLUSIVE,
                rewrite=False,
                table=relname(node.relation),
            )


def _generated_always(cmd) -> bool:
    return any(
        isinstance(d, ast.DefElem) and d.defname == "generated" and getattr(d.arg, "ival", None) == ord("a")
        for d in cmd.def_ or ()
    )


@rule(
    "ban-alter-identity",
    "Identity added, dropped or made ALWAYS",
    "medium",
    "breaking",
    squawk=True,
    cases=[
        trigger("ALTER TABLE t ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY;"),
        trigger("ALTER TABLE t ALTER COLUMN id DROP IDENTITY;"),
        trigger("ALTER TABLE t ALTER COLUMN id SET GENERATED ALWAYS;"),
        passes("ALTER TABLE t ALTER COLUMN id SET GENERATED BY DEFAULT;"),
        passes("CREATE TABLE t (id bigint NOT NULL);\nALTER TABLE t ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY;"),
    ],
)
def ban_alter_identity(mig, settings):
    """A column's identity changed under code that inserts into it.

    ## What it detects
    `ALTER COLUMN ... ADD GENERATED ... AS IDENTITY`, `DROP IDENTITY` and `SET GENERATED
    ALWAYS` (also within `SET` option lists) on a table not created earlier in the file.

    ## Why it matters
    With GENERATED ALWAYS, inserts that supply the column fail ("cannot insert a non-DEFAULT
    value into column"); after DROP IDENTITY, inserts that leave it out write NULL or fail.

    ## How to fix
    Use `GENERATED BY DEFAULT` while old code still writes ids; ship code that stops
    writing (or starts writing) the column before the change.

    ## Example
    ```sql
    ALTER TABLE t ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY;
    ```

    ## Thresholds
    None.

    ## Known false positives
    Tables only the migration writes to.

    ## Differences from squawk
    squawk (2.70) reports it on any table; queryaudit skips tables created earlier in the file.
    """
    new = NewObjects(mig)
    for stmt, node, cmd in alter_table_cmds(mig):
        if new.before(TABLE, node.relation.relname, stmt):
            continue
        what = {
            AlterTableType.AT_AddIdentity: "ADD GENERATED AS IDENTITY",
            AlterTableType.AT_DropIdentity: "DROP IDENTITY",
        }.get(cmd.subtype)
        if what is None and cmd.subtype == AlterTableType.AT_SetIdentity and _generated_always(cmd):
            what = "SET GENERATED ALWAYS"
        if what:
            yield violation(
                stmt,
                f"{what} on {relname(node.relation)}.{cmd.name} changes which inserts succeed",
                lock=ACCESS_EXCLUSIVE,
                rewrite=False,
                table=relname(node.relation),
            )


RENAMED = {
    ObjectType.OBJECT_VIEW: (VIEW, "view"),
    ObjectType.OBJECT_MATVIEW: (VIEW, "materialized view"),
    ObjectType.OBJECT_FUNCTION: (FUNCTION, "function"),
    ObjectType.OBJECT_PROCEDURE: (FUNCTION, "procedure"),
    ObjectType.OBJECT_ROUTINE: (FUNCTION, "routine"),
    ObjectType.OBJECT_TYPE: (TYPE, "type"),
    ObjectType.OBJECT_DOMAIN: (TYPE, "domain"),
    ObjectType.OBJECT_SEQUENCE: ("sequence", "sequence"),
    ObjectType.OBJECT_SCHEMA: (SCHEMA, "schema"),
    ObjectType.OBJECT_INDEX: (INDEX, "index"),
    ObjectType.OBJECT_TABCONSTRAINT: (CONSTRAINT, "constraint"),
    ObjectType.OBJECT_AGGREGATE: (FUNCTION, "aggregate"),
    ObjectType.OBJECT_TRIGGER: ("trigger", "trigger"),
    ObjectType.OBJECT_POLICY: ("policy", "policy"),
    ObjectType.OBJECT_ROLE: ("role", "role"),
    ObjectType.OBJECT_FOREIGN_TABLE: (TABLE, "foreign table"),
}
# Queries never name an index or a constraint: renaming one breaks only hints, ON CONFLICT ON
# CONSTRAINT and code matching error messages.
LOW_IMPACT = {
    ObjectType.OBJECT_INDEX,
    ObjectType.OBJECT_TABCONSTRAINT,
    ObjectType.OBJECT_TRIGGER,
    ObjectType.OBJECT_POLICY,
}


@rule(
    "renaming-object",
    "RENAME of a view, function, type, sequence, schema, domain, index or constraint",
    "high",
    "breaking",
    squawk=True,
    cases=[
        trigger("ALTER VIEW active_users RENAME TO current_users;"),
        trigger("ALTER FUNCTION f() RENAME TO g;"),
        trigger("ALTER TYPE mood RENAME VALUE 'ok' TO 'fine';"),
        trigger("ALTER INDEX orders_idx RENAME TO orders_customer_idx;"),
        passes("ALTER TABLE t RENAME TO u;"),
        passes("CREATE VIEW v AS SELECT 1 AS one;\nALTER VIEW v RENAME TO w;"),
    ],
)
def renaming_object(mig, settings):
    """An object other than a table or column renamed under running application code.

    ## What it detects
    `RENAME TO` of a view, materialized view, foreign table, function, procedure,
    aggregate, type, domain, sequence, schema, index, table constraint, trigger, policy or
    role, and `ALTER TYPE ... RENAME VALUE`, when
    the object was not created earlier in the file. Tables and columns have their own
    rules (renaming-table, renaming-column).

    ## Why it matters
    Code that names the old object fails from the moment the rename commits. Index and
    constraint names are rarely in queries (severity low for those): hints, `ON CONFLICT
    ON CONSTRAINT` and error handling that matches the name break; triggers and policies
    are low too. A renamed role breaks every client that logs in with the old name.

    ## How to fix
    Expand/contract: create the new name alongside (a view over the old one, a wrapper
    function), move the code, then drop the old name later.

    ## Example
    ```sql
    CREATE VIEW current_users AS SELECT * FROM active_users;  -- release N
    -- release N+1, once no code reads active_users: swap them
    ```

    ## Thresholds
    High; low for indexes, constraints, triggers and policies.

    ## Known false positives
    Objects no deployed code names.

    ## Differences from squawk
    squawk (2.70) reports every rename, at one severity; queryaudit skips objects created
    earlier in the file and reports index and constraint renames as low.
    """
    new = NewObjects(mig)
    for stmt in mig.statements:
        node = stmt.node
        if isinstance(node, ast.AlterEnumStmt) and node.oldVal:
            if not new.before(TYPE, last_name(node.typeName), stmt):
                yield violation(
                    stmt, f"RENAME VALUE {node.oldVal!r} -> {node.newVal!r} breaks code and data that use the old value"
                )
            continue
        if not isinstance(node, ast.RenameStmt) or node.renameType not in RENAMED:
            continue
        kind, word = RENAMED[node.renameType]
        if node.renameType in (
            ObjectType.OBJECT_SCHEMA,
            ObjectType.OBJECT_ROLE,
            ObjectType.OBJECT_TRIGGER,
            ObjectType.OBJECT_POLICY,
        ):
            old = node.subname
        elif node.renameType == ObjectType.OBJECT_TABCONSTRAINT:
            old = node.subname
            if new.before(TABLE, node.relation.relname, stmt):
                continue
        else:
            old = last_name(node.relation) if node.relation is not None else last_name(node.object)
        if new.before(kind, old, stmt):
            continue
        yield violation(
            stmt,
            f"RENAME {word} {old} -> {node.newname} breaks code that uses the old name",
            severity="low" if node.renameType in LOW_IMPACT else None,
        )


MOVED = {
    ObjectType.OBJECT_TABLE: TABLE,
    ObjectType.OBJECT_VIEW: VIEW,
    ObjectType.OBJECT_MATVIEW: VIEW,
    ObjectType.OBJECT_FUNCTION: FUNCTION,
    ObjectType.OBJECT_PROCEDURE: FUNCTION,
    ObjectType.OBJECT_TYPE: TYPE,
    ObjectType.OBJECT_SEQUENCE: "sequence",
    ObjectType.OBJECT_DOMAIN: TYPE,
    ObjectType.OBJECT_FOREIGN_TABLE: TABLE,
    ObjectType.OBJECT_AGGREGATE: FUNCTION,
    ObjectType.OBJECT_EXTENSION: "extension",
}


@rule(
    "ban-set-schema",
    "SET SCHEMA (moving an object to another schema)",
    "high",
    "breaking",
    squawk=True,
    cases=[
        trigger("ALTER TABLE events SET SCHEMA archive;"),
        trigger("ALTER FUNCTION f() SET SCHEMA util;"),
        passes("ALTER TABLE events OWNER TO app;"),
        passes("CREATE TABLE staging (id bigint);\nALTER TABLE staging SET SCHEMA archive;"),
    ],
)
def ban_set_schema(mig, settings):
    """An object moved to another schema under running application code.

    ## What it detects
    `ALTER TABLE | FOREIGN TABLE | VIEW | MATERIALIZED VIEW | FUNCTION | AGGREGATE | TYPE |
    SEQUENCE | DOMAIN | EXTENSION ... SET SCHEMA` of an object not created earlier in the file.

    ## Why it matters
    Code that qualifies the old schema, or finds the object through search_path, no
    longer finds it: like a rename. A table move takes ACCESS EXCLUSIVE.

    ## How to fix
    Expand/contract: move it and leave a view (or wrapper function) under the old name
    until the code is updated.

    ## Example
    ```sql
    BEGIN;
    ALTER TABLE events SET SCHEMA archive;
    CREATE VIEW public.events AS SELECT * FROM archive.events;
    COMMIT;
    ```

    ## Thresholds
    None.

    ## Known false positives
    Objects no deployed code names.

    ## Differences from squawk
    squawk (2.70) reports every move; queryaudit skips objects created earlier in the file.
    """
    new = NewObjects(mig)
    for stmt in mig.statements:
        node = stmt.node
        if not isinstance(node, ast.AlterObjectSchemaStmt) or node.objectType not in MOVED:
            continue
        name = last_name(node.relation) if node.relation is not None else last_name(node.object)
        if new.before(MOVED[node.objectType], name, stmt):
            continue
        table = node.objectType == ObjectType.OBJECT_TABLE
        yield violation(
            stmt,
            f"SET SCHEMA {node.newschema} moves {name} away from code that names it",
            lock=ACCESS_EXCLUSIVE if table else None,
            rewrite=False if table else None,
            table=relname(node.relation) if table else None,
        )
