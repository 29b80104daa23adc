"""Hygiene rules (squawk's): identifiers, schemas, re-runnable statements, duplicate columns."""

from __future__ import annotations

from pglast import ast
from pglast.enums import AlterTableType, ObjectType, OnCommitAction
from pglast.parser import scan

from queryaudit.migrations import passes, rule, trigger
from queryaudit.migrations.rules._util import deparse, loc, names, violation
from queryaudit.migrations.rules.index import is_concurrent
from queryaudit.sql import quote_ident

NOT_RERUNNABLE = "not re-runnable: use IF [NOT] EXISTS so a retry after a partial failure works"
# RENAME of these with IF EXISTS is skipped when the old name is already gone.
RELATION_KINDS = (
    ObjectType.OBJECT_TABLE,
    ObjectType.OBJECT_INDEX,
    ObjectType.OBJECT_VIEW,
    ObjectType.OBJECT_MATVIEW,
    ObjectType.OBJECT_SEQUENCE,
    ObjectType.OBJECT_FOREIGN_TABLE,
)
NAMEDATALEN = 64  # identifiers longer than NAMEDATALEN - 1 bytes are truncated by PostgreSQL


def _statement_at(mig, offset: int):
    current = mig.statements[0] if mig.statements else None
    for stmt in mig.statements:
        if stmt.start <= offset:
            current = stmt
    return current


@rule(
    "identifier-too-long",
    "Identifier longer than 63 bytes",
    "medium",
    "hygiene",
    squawk=True,
    cases=[trigger("CREATE TABLE " + "t" * 64 + " (id bigint);"), passes("CREATE TABLE " + "t" * 63 + " (id bigint);")],
)
def identifier_too_long(mig, settings):
    """An identifier longer than 63 bytes, which PostgreSQL silently truncates.

    ## What it detects
    Any identifier (quoted or not) longer than 63 bytes in UTF-8.

    ## Why it matters
    PostgreSQL truncates it to 63 bytes with only a NOTICE: two long names can collide, and
    the name the code uses is not the name in the catalog.

    ## How to fix
    Use a name of at most 63 bytes.

    ## Example
    ```sql
    CREATE INDEX orders_customer_created_idx ON orders (customer_id, created_at);
    ```

    ## Thresholds
    63 bytes (NAMEDATALEN - 1).

    ## Known false positives
    None known.
    """
    try:
        tokens = scan(mig.text)
    except Exception:
        return
    for tok in tokens:
        if tok.name != "IDENT":
            continue
        raw = mig.text[tok.start : tok.end + 1]
        value = raw[1:-1].replace('""', '"') if raw.startswith('"') else raw.lower()
        if len(value.encode("utf-8")) > NAMEDATALEN - 1:
            stmt = _statement_at(mig, tok.start)
            if stmt is not None:
                v = violation(stmt, f"identifier is {len(value.encode())} bytes: PostgreSQL truncates it to 63")
                v.offset = tok.start
                yield v


def _unqualified(rv) -> bool:
    return rv is not None and not rv.schemaname and rv.relpersistence != "t"


@rule(
    "require-table-schema",
    "Table named without its schema",
    "low",
    "hygiene",
    squawk=True,
    default=False,
    cases=[trigger("CREATE TABLE my_table (id int);"), passes("CREATE TABLE public.my_table (id int);")],
)
def require_table_schema(mig, settings):
    """A table named without its schema (opt-in).

    ## What it detects
    CREATE TABLE, CREATE TABLE AS, ALTER TABLE (RENAME included) and DROP TABLE of a
    non-temporary table without a schema.

    ## Why it matters
    The table lands in (or is looked up in) whatever schema `search_path` names first,
    which differs between environments and roles.

    ## How to fix
    Qualify the name.

    ## Example
    ```sql
    CREATE TABLE public.my_table (id bigint);
    ```

    ## Thresholds
    None. Off by default: select it with `--rule require-table-schema`.

    ## Known false positives
    Projects that rely on search_path on purpose.
    """
    for stmt in mig.statements:
        node = stmt.node
        rvs = []
        if isinstance(node, (ast.CreateStmt, ast.AlterTableStmt)):
            if not isinstance(node, ast.AlterTableStmt) or node.objtype == ObjectType.OBJECT_TABLE:
                rvs = [node.relation]
        elif isinstance(node, ast.CreateTableAsStmt) and node.into is not None:
            rvs = [node.into.rel]
        elif isinstance(node, ast.RenameStmt) and (
            ObjectType.OBJECT_TABLE in (node.renameType, node.relationType)
            or node.renameType == ObjectType.OBJECT_TABCONSTRAINT
        ):
            rvs = [node.relation]  # ALTER TABLE ... RENAME [COLUMN | CONSTRAINT] names the table too
        elif isinstance(node, ast.AlterObjectSchemaStmt) and node.objectType == ObjectType.OBJECT_TABLE:
            rvs = [node.relation]
        elif isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_TABLE:
            if any(len(obj) == 1 for obj in node.objects or ()):
                yield violation(stmt, "table named without its schema: search_path decides which one")
            continue
        if any(_unqualified(rv) for rv in rvs):
            yield violation(stmt, "table named without its schema: search_path decides which one")


@rule(
    "prefer-robust-stmts",
    "Statement that cannot be re-run after a partial failure",
    "low",
    "hygiene",
    squawk=True,
    cases=[
        trigger("SELECT 1;\nALTER TABLE t ADD COLUMN c text;"),
        trigger("DROP INDEX CONCURRENTLY i;"),
        passes("ALTER TABLE t ADD COLUMN c text;", assume_in_transaction=True),
        passes("SELECT 1;\nALTER TABLE t ADD COLUMN IF NOT EXISTS c text;"),
        trigger('ALTER TABLE "identities" RENAME COLUMN "traits_schema_id" TO "schema_id";'),
        passes("ALTER TABLE IF EXISTS old_sessions RENAME TO sessions;"),
        trigger('CREATE INDEX CONCURRENTLY "users_email_idx" ON "users" ("email");', assume_in_transaction=True),
        passes(
            'CREATE INDEX CONCURRENTLY IF NOT EXISTS "users_email_idx" ON "users" ("email");',
            assume_in_transaction=True,
        ),
        trigger('ALTER TABLE "flows" ALTER COLUMN "expires_at" TYPE timestamp USING to_timestamp("expires_at");'),
        passes('ALTER TABLE "flows" ALTER COLUMN "state" TYPE VARCHAR(36);'),
        passes(
            'ALTER TABLE "sessions" DROP CONSTRAINT IF EXISTS "sessions_identity_fk";\n'
            'ALTER TABLE "sessions" ADD CONSTRAINT "sessions_identity_fk" FOREIGN KEY ("identity_id") '
            'REFERENCES "identities" ("id") ON DELETE CASCADE;'
        ),
    ],
)
def prefer_robust_stmts(mig, settings):
    """A statement outside a transaction that fails when the migration is re-run.

    ## What it detects
    Outside a transaction (no BEGIN, no `--assume-in-transaction`): CREATE TABLE / INDEX
    without IF NOT EXISTS, DROP ... / DROP COLUMN / DROP CONSTRAINT without IF EXISTS, ADD
    COLUMN without IF NOT EXISTS, ADD CONSTRAINT not preceded by a DROP CONSTRAINT of the
    same name, SET NOT NULL, ENABLE/DISABLE ROW LEVEL SECURITY, a RENAME (the old name is
    gone on the re-run; `ALTER TABLE IF EXISTS old RENAME TO new` is fine), and `ALTER
    COLUMN ... TYPE ... USING` (the USING expression is applied again to converted data).

    A file that is a lone named `CREATE INDEX CONCURRENTLY` without IF NOT EXISTS is
    reported even under `--assume-in-transaction`: CONCURRENTLY cannot run in a
    transaction, so the runner runs it outside one, and a failed build leaves an INVALID
    index of that name on which the re-run fails.

    ## Why it matters
    Non-transactional migrations (needed for CONCURRENTLY) can fail halfway; a re-run then
    stops at the first statement that already happened.

    ## How to fix
    Use IF [NOT] EXISTS forms, and drop-if-exists before adding a constraint.

    ## Example
    ```sql
    CREATE INDEX CONCURRENTLY IF NOT EXISTS t_c_idx ON t (c);
    ```

    ## Thresholds
    None. On by default, as in squawk 2.70 (low severity: it does not fail the default
    `--fail-on high` gate).

    ## Known false positives
    Statements that are idempotent by nature of the data. Files a migration tool wraps in
    a transaction: say so with `--assume-in-transaction` and they are not reported.

    ## Differences from squawk
    squawk (2.70) reports every statement of a multi-statement file run outside a
    transaction ("missing transaction"), whatever the statement. queryaudit reports only
    the statements that fail when run a second time. Real-world disagreement (read by
    hand): kratos `20250505150900000000_code_address_type.autocommit` runs two `ALTER
    COLUMN ... TYPE VARCHAR(36)` without a transaction; squawk reports both. Running
    either again succeeds (the column already has that type), so a retry after a partial
    failure works: queryaudit is right to stay quiet.
    """
    dropped: set[tuple[str, str]] = set()
    lone_concurrent = len(mig.statements) == 1 and is_concurrent(mig.statements[0].node)
    for stmt in mig.statements:
        if stmt.in_transaction and not lone_concurrent:
            continue
        node, bad, message = stmt.node, False, NOT_RERUNNABLE
        if isinstance(node, ast.AlterTableStmt):
            table = node.relation.relname
            for cmd in node.cmds or ():
                st = cmd.subtype
                if st in (AlterTableType.AT_AddColumn, AlterTableType.AT_DropColumn, AlterTableType.AT_DropConstraint):
                    if st == AlterTableType.AT_DropConstraint:
                        # With or without IF EXISTS: an ADD of that name after it can run again
                        # (the DROP itself is reported when it lacks IF EXISTS).
                        dropped.add((table, cmd.name))
                    bad = bad or not cmd.missing_ok
                elif st == AlterTableType.AT_AlterColumnType and cmd.def_.raw_default is not None:
                    bad, message = (
                        True,
                        (
                            f"not re-runnable: USING {deparse(cmd.def_.raw_default)} is applied again "
                            "to the converted column on a retry; run it in a transaction"
                        ),
                    )
                elif st == AlterTableType.AT_AddConstraint:
                    name = getattr(cmd.def_, "conname", None)
                    if (table, name) in dropped:
                        dropped.discard((table, name))
                    else:
                        bad = True
                elif st in (
                    AlterTableType.AT_SetNotNull,
                    AlterTableType.AT_EnableRowSecurity,
                    AlterTableType.AT_DisableRowSecurity,
                ):
                    bad = True
        elif isinstance(node, ast.IndexStmt):
            bad = bool(node.idxname) and not node.if_not_exists
            if bad and node.concurrent:
                message = (
                    f"not re-runnable: a failed CREATE INDEX CONCURRENTLY leaves an INVALID index "
                    f"{node.idxname} and the retry fails on it: use IF NOT EXISTS (after DROP INDEX "
                    f"CONCURRENTLY IF EXISTS {quote_ident(node.idxname)} when the build failed)"
                )
        elif isinstance(node, ast.RenameStmt):
            # Renaming the relation itself with IF EXISTS is skipped on a retry; a column,
            # constraint or any other object's old name is simply gone.
            bad = not (node.missing_ok and node.renameType in RELATION_KINDS)
            message = "not re-runnable: after a RENAME the old name is gone and a retry fails"
        elif isinstance(node, ast.AlterEnumStmt) and node.oldVal:
            bad, message = True, "not re-runnable: after RENAME VALUE the old value is gone and a retry fails"
        elif isinstance(node, ast.CreateStmt):
            temp_dropped = node.relation.relpersistence == "t" and node.oncommit == OnCommitAction.ONCOMMIT_DROP
            bad = not node.if_not_exists and not temp_dropped
        elif isinstance(node, ast.DropStmt):
            bad = not node.missing_ok
        if bad:
            yield violation(stmt, message)


UNKNOWN = object()  # a `*`: the names come from the catalog, which a static review does not have


def _figure_colname(node) -> tuple[object, int]:
    """PostgreSQL's FigureColnameInternal (parse_target.c): the output name of an unaliased
    expression and how strongly it was inferred (2 from a name, 1 from a type, 0 "?column?")."""
    if isinstance(node, ast.ColumnRef):
        last = (node.fields or ())[-1:] if node.fields else ()
        if last and isinstance(last[0], ast.A_Star):
            return UNKNOWN, 2
        fields = names(node.fields)
        return (fields[-1], 2) if fields else ("?column?", 0)
    if isinstance(node, ast.A_Indirection):
        for ind in reversed(node.indirection or ()):
            if isinstance(ind, ast.A_Star):
                return UNKNOWN, 2
            if isinstance(ind, ast.String):
                return ind.sval, 2
        return _figure_colname(node.arg)
    if isinstance(node, ast.FuncCall):
        return names(node.funcname)[-1], 2
    if isinstance(node, ast.A_Expr) and node.kind.name == "AEXPR_NULLIF":
        return "nullif", 2
    if isinstance(node, ast.TypeCast):
        name, strength = _figure_colname(node.arg)
        if strength <= 1 and node.typeName is not None:
            return names(node.typeName.names)[-1], 1
        return name, strength
    if isinstance(node, ast.CollateClause):
        return _figure_colname(node.arg)
    if isinstance(node, ast.SubLink):
        kind = node.subLinkType.name
        if kind == "EXISTS_SUBLINK":
            return "exists", 2
        if kind == "ARRAY_SUBLINK":
            return "array", 2
        if kind in ("EXPR_SUBLINK", "MULTIEXPR_SUBLINK"):
            sub = node.subselect
            targets = [t for t in getattr(sub, "targetList", None) or () if isinstance(t, ast.ResTarget)]
            if targets:
                return (targets[0].name, 2) if targets[0].name else _figure_colname(targets[0].val)
            return UNKNOWN, 2  # a set operation: the first branch names it
        return "?column?", 0
    if isinstance(node, ast.CaseExpr):
        return ("case", 1) if node.defresult is None else _strongest(_figure_colname(node.defresult), ("case", 1))
    if isinstance(node, ast.A_ArrayExpr):
        return "array", 2
    if isinstance(node, ast.RowExpr):
        return "row", 2
    if isinstance(node, ast.CoalesceExpr):
        return "coalesce", 2
    if isinstance(node, ast.MinMaxExpr):
        return ("greatest" if node.op.name == "IS_GREATEST" else "least"), 2
    if isinstance(node, ast.SQLValueFunction):
        return node.op.name.removeprefix("SVFOP_").lower(), 2
    if isinstance(node, ast.GroupingFunc):
        return "grouping", 2
    if isinstance(node, (ast.XmlExpr, ast.XmlSerialize)):
        return UNKNOWN, 2  # xmlelement, xmlforest ...: not worth modelling
    return "?column?", 0


def _strongest(a, b):
    return a if a[1] > b[1] else b


def _inferred_name(target: ast.ResTarget):
    """The output column name, or UNKNOWN (a `*`, whose columns only the catalog knows)."""
    if target.name:
        return target.name
    return _figure_colname(target.val)[0]


def _output_names(targets):
    """(name, (), target) per output column; names hidden behind a `*` are left out, since
    only the catalog knows them (a `*` next to `(SELECT avatar ...)` is not a duplicate)."""
    out = []
    for t in targets or ():
        if isinstance(t, ast.ResTarget):
            name = _inferred_name(t)
            if name is not UNKNOWN:
                out.append((name, (), t))
    return out


def _duplicates(entries):
    """entries: (name, path, node); a name set whole and again (whole or in part) conflicts,
    as does the same part twice. Returns the conflicting entries."""
    out = []
    for i, (name, path, node) in enumerate(entries):
        for j, (name2, path2, _) in enumerate(entries):
            if i != j and name == name2 and (not path or not path2 or path == path2):
                out.append((name, node))
                break
    return out


def _assignment_entries(targets):
    entries = []
    for t in targets or ():
        if isinstance(t, ast.ResTarget) and t.name:
            path = tuple(getattr(i, "sval", "[]") for i in t.indirection or ())
            if any(isinstance(i, ast.A_Indices) for i in t.indirection or ()):
                path = path + (id(t),)  # subscripts never conflict with each other
            entries.append((t.name, path, t))
    return entries


@rule(
    "ban-duplicate-column-assignments",
    "The same column assigned or declared twice",
    "high",
    "hygiene",
    squawk=True,
    cases=[
        trigger("UPDATE k SET a = 1, a = 2;"),
        passes("UPDATE k SET a = 1, b = 2;"),
        trigger("CREATE VIEW v AS SELECT id, (SELECT id FROM u) FROM t;"),
        passes("CREATE VIEW v AS SELECT *, (SELECT avatar FROM u WHERE u.id = t.uid) FROM t;"),
    ],
)
def ban_duplicate_column_assignments(mig, settings):
    """The same column assigned, inserted or declared twice in one statement.

    ## What it detects
    Duplicate columns in UPDATE SET (also ON CONFLICT DO UPDATE and MERGE), INSERT column
    lists, CREATE [FOREIGN] TABLE, CREATE VIEW column lists or inferred output names, and
    SELECT INTO. Output names are inferred the way PostgreSQL does (FigureColname: a
    column's or function's name, a subquery's own output name, a cast's type, `case`,
    `?column?`); a `*` is left out, since only the catalog knows its columns.

    ## Why it matters
    PostgreSQL rejects these statements ("column specified more than once"): the migration
    fails in production, usually after earlier statements ran.

    ## How to fix
    Remove or rename the duplicate.

    ## Example
    ```sql
    UPDATE k SET a = 1, b = 2;
    ```

    ## Thresholds
    None.

    ## Known false positives
    None known. A `*` next to a column of the same name (`SELECT *, (SELECT avatar ...)`
    over a table that has an avatar column) is a duplicate PostgreSQL rejects, which this
    rule cannot see without the catalog.
    """
    for stmt in mig.statements:
        node = stmt.node
        groups = []
        if isinstance(node, ast.UpdateStmt):
            groups.append(_assignment_entries(node.targetList))
        elif isinstance(node, ast.InsertStmt):
            groups.append(_assignment_entries(node.cols))
            if node.onConflictClause is not None:
                groups.append(_assignment_entries(node.onConflictClause.targetList))
        elif isinstance(node, ast.MergeStmt):
            for clause in node.mergeWhenClauses or ():
                groups.append(_assignment_entries(clause.targetList))
        elif isinstance(node, (ast.CreateStmt, ast.CreateForeignTableStmt)):
            base = node.base if isinstance(node, ast.CreateForeignTableStmt) else node
            groups.append([(c.colname, (), c) for c in base.tableElts or () if isinstance(c, ast.ColumnDef)])
        elif isinstance(node, ast.ViewStmt):
            if node.aliases:
                groups.append([(n, (), None) for n in names(node.aliases)])
            elif isinstance(node.query, ast.SelectStmt):
                groups.append(_output_names(node.query.targetList))
        elif isinstance(node, ast.SelectStmt) and node.intoClause is not None:
            groups.append(_output_names(node.targetList))
        for entries in groups:
            for name, target in _duplicates(entries):
                yield violation(
                    stmt,
                    f"column {name} appears more than once: PostgreSQL rejects the statement",
                    target if target is not None and loc(target) is not None else None,
                )
