"""Column rules: adding, constraining and retyping columns of tables that hold data."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from pglast import ast
from pglast.enums import AlterTableType, ConstrType, NullTestType

from queryaudit.migrations import passes, rule, trigger
from queryaudit.migrations.locks import ACCESS_EXCLUSIVE
from queryaudit.migrations.rules._util import (
    CreatedTables,
    alter_table_cmds,
    base_type,
    deparse,
    has_constraint,
    loc,
    names,
    relname,
    typmods,
    violation,
)
from queryaudit.sql import quote_ident

# PostgreSQL 11 made ADD COLUMN with a constant DEFAULT a catalog-only change. squawk
# (whose rule we follow) still flags 11 itself, so the fast path is assumed from 12.
FAST_DEFAULT_VERSION = (12, 0)
# PostgreSQL 12: SET NOT NULL skips its full-table scan when a valid CHECK (col IS NOT NULL) proves it.
NOT_NULL_FROM_CHECK_VERSION = (12, 0)
SERIAL_TYPES = {"serial", "serial2", "serial4", "serial8", "smallserial", "bigserial"}


@lru_cache(maxsize=1)
def non_volatile_functions() -> dict[str, tuple[int, int]]:
    """pg_catalog functions that are IMMUTABLE or STABLE, with their argument counts (data/)."""
    text = resources.files("queryaudit.migrations").joinpath("data/non_volatile_functions.txt").read_text()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, lo, hi = line.split()
            out[name] = (int(lo), int(hi))
    return out


def is_volatile(expr) -> bool:
    """Could this DEFAULT expression give each row a different value? Unknown means yes."""
    if expr is None or isinstance(expr, (ast.A_Const, ast.SQLValueFunction)):
        return False
    if isinstance(expr, ast.TypeCast):
        return is_volatile(expr.arg)
    if isinstance(expr, ast.A_ArrayExpr):
        return any(is_volatile(e) for e in expr.elements or ())
    if isinstance(expr, ast.A_Expr):
        return is_volatile(expr.lexpr) or is_volatile(expr.rexpr)
    if isinstance(expr, ast.BoolExpr):
        return any(is_volatile(a) for a in expr.args or ())
    if isinstance(expr, ast.FuncCall):
        parts = [n.lower() for n in names(expr.funcname)]
        if len(parts) > 1 and parts[0] != "pg_catalog":
            return True
        arity = non_volatile_functions().get(parts[-1])
        nargs = len(expr.args or ())
        if arity is None or not arity[0] <= nargs <= arity[1]:
            return True
        return any(is_volatile(a) for a in expr.args or ())
    return True


def _not_null_after_backfill(table: str, col, settings) -> str:
    """The column's NOT NULL, kept by the safe rewrite: once the rows are filled, a CHECK added
    NOT VALID and validated (reads and writes continue), then SET NOT NULL, which from PostgreSQL 12
    trusts the valid CHECK instead of scanning under ACCESS EXCLUSIVE."""
    if not any(isinstance(c, ast.Constraint) and c.contype == ConstrType.CONSTR_NOTNULL for c in col.constraints or ()):
        return ""
    check = quote_ident(f"{col.colname}_not_null")
    name = quote_ident(col.colname)
    steps = (
        f"\nALTER TABLE {table} ADD CONSTRAINT {check} CHECK ({name} IS NOT NULL) NOT VALID;\n"
        f"ALTER TABLE {table} VALIDATE CONSTRAINT {check};\n"
    )
    if settings.pg_version >= NOT_NULL_FROM_CHECK_VERSION:
        return (
            steps + f"ALTER TABLE {table} ALTER COLUMN {name} SET NOT NULL;\n"
            f"ALTER TABLE {table} DROP CONSTRAINT {check};"
        )
    return steps + (
        f"-- PostgreSQL {settings.pg_version[0]}: SET NOT NULL would scan {table} under ACCESS "
        "EXCLUSIVE; the validated CHECK keeps NULLs out meanwhile"
    )


@rule(
    "adding-field-with-default",
    "ADD COLUMN that rewrites the table (volatile default, stored generated, serial, identity)",
    "high",
    "columns",
    squawk=True,
    cases=[
        trigger("ALTER TABLE orders ADD COLUMN token uuid DEFAULT gen_random_uuid();"),
        trigger("ALTER TABLE orders ADD COLUMN n integer DEFAULT 10;", pg_version="10"),
        trigger(
            'ALTER TABLE "identities" ADD COLUMN "state" VARCHAR(255) NOT NULL DEFAULT \'active\';', pg_version="10"
        ),
        trigger("ALTER TABLE orders ADD COLUMN seq bigserial;"),
        trigger("ALTER TABLE orders ADD COLUMN total numeric GENERATED ALWAYS AS (qty * price) STORED;"),
        passes("ALTER TABLE orders ADD COLUMN n integer DEFAULT 10;"),
        passes("ALTER TABLE orders ADD COLUMN created timestamptz DEFAULT now();"),
        passes("CREATE TABLE t (id int);\nALTER TABLE t ADD COLUMN token uuid DEFAULT gen_random_uuid();"),
    ],
)
def adding_field_with_default(mig, settings):
    """ADD COLUMN whose value must be written into every existing row.

    ## What it detects
    `ALTER TABLE ... ADD COLUMN` on an existing table with a volatile DEFAULT (a function
    that is not IMMUTABLE/STABLE, e.g. `gen_random_uuid()`, `clock_timestamp()`, or any
    function it does not know), a `GENERATED ... STORED` column, a `serial` type or an
    identity column; on PostgreSQL 11 and older, any non-NULL DEFAULT.

    ## Why it matters
    PostgreSQL must compute a value per row, so it rewrites the whole table and its
    indexes under an ACCESS EXCLUSIVE lock: no reads or writes for the duration, and twice
    the table's disk space meanwhile. A constant or stable default (`now()`, `'x'`,
    `10`) is stored once in the catalog since PostgreSQL 11: instant.

    ## How to fix
    Add the column without the default (or as a plain nullable column), set the default
    for new rows, and backfill existing rows in batches. A NOT NULL column gets its
    constraint back afterwards: a CHECK (col IS NOT NULL) added NOT VALID and validated,
    then (PostgreSQL 12+) SET NOT NULL, which trusts the valid CHECK instead of scanning. For a generated column, add a
    plain column and maintain it with a trigger, or compute it in a view.

    ## Example
    ```sql
    ALTER TABLE orders ADD COLUMN token uuid;
    ALTER TABLE orders ALTER COLUMN token SET DEFAULT gen_random_uuid();
    -- backfill in batches:
    UPDATE orders SET token = gen_random_uuid() WHERE id BETWEEN 1 AND 10000 AND token IS NULL;
    ```

    ## Thresholds
    Volatility comes from PostgreSQL's own catalog (pg_proc.provolatile, bundled list);
    an unknown function is assumed volatile. Tables created earlier in the migration are exempt.

    ## Known false positives
    User-defined IMMUTABLE functions (the list only knows pg_catalog). squawk's semantics
    flag PostgreSQL 11 itself, which already had fast defaults.

    ## Differences from squawk
    squawk (2.70) exempts a table created earlier in the file only when the file runs in a
    transaction; queryaudit exempts it either way: nobody else uses a table that did not
    exist before this migration, so its lock blocks no one.
    squawk does not report `ADD COLUMN ... serial`/`bigserial`; queryaudit does: the
    sequence default is volatile, so every row is filled and the table rewritten.
    """
    created = CreatedTables(mig)
    for stmt, node, cmd in alter_table_cmds(mig):
        if cmd.subtype != AlterTableType.AT_AddColumn or created.before(stmt, node.relation):
            continue
        col = cmd.def_
        table = relname(node.relation)
        name = quote_ident(col.colname)
        for c in col.constraints or ():
            if not isinstance(c, ast.Constraint):
                continue
            if c.contype == ConstrType.CONSTR_DEFAULT:
                expr = c.raw_expr
                constant_null = isinstance(expr, ast.A_Const) and expr.isnull
                if is_volatile(expr) or (settings.pg_version < FAST_DEFAULT_VERSION and not constant_null):
                    why = (
                        f"with a volatile default ({deparse(expr)})"
                        if is_volatile(expr)
                        else f"with a default ({deparse(expr)}) on PostgreSQL {settings.pg_version[0]}"
                    )
                    yield violation(
                        stmt,
                        f"ADD COLUMN {col.colname} {why} rewrites {table} under an ACCESS EXCLUSIVE lock",
                        expr,
                        lock=ACCESS_EXCLUSIVE,
                        rewrite=True,
                        table=table,
                        safe_sql=f"ALTER TABLE {table} ADD COLUMN {name} {deparse(col.typeName)};\n"
                        f"ALTER TABLE {table} ALTER COLUMN {name} SET DEFAULT {deparse(expr)};\n"
                        f"-- backfill the existing rows (in batches of a key range on a big "
                        f"table):\nUPDATE {table} SET {name} = {deparse(expr)} WHERE {name} "
                        f"IS NULL;" + _not_null_after_backfill(table, col, settings),
                    )
            elif c.contype in (ConstrType.CONSTR_GENERATED, ConstrType.CONSTR_IDENTITY):
                kind = "a stored generated column" if c.contype == ConstrType.CONSTR_GENERATED else "an identity column"
                yield violation(
                    stmt,
                    f"ADD COLUMN {col.colname} as {kind} rewrites {table} under an ACCESS EXCLUSIVE lock",
                    c,
                    lock=ACCESS_EXCLUSIVE,
                    rewrite=True,
                    table=table,
                    safe_sql=f"ALTER TABLE {table} ADD COLUMN {name} {deparse(col.typeName)};\n"
                    "-- fill it with a trigger and a batched backfill",
                )
        if base_type(col.typeName) in SERIAL_TYPES:
            yield violation(
                stmt,
                f"ADD COLUMN {col.colname} {base_type(col.typeName)} fills every existing row "
                f"from a sequence: {table} is rewritten under an ACCESS EXCLUSIVE lock",
                col,
                lock=ACCESS_EXCLUSIVE,
                rewrite=True,
                table=table,
                safe_sql=f"ALTER TABLE {table} ADD COLUMN {name} bigint;\n"
                f"CREATE SEQUENCE {table.split('.')[-1]}_{col.colname}_seq "
                f"OWNED BY {table}.{name};\n"
                "-- SET DEFAULT nextval(...), then backfill in batches",
            )


@rule(
    "adding-required-field",
    "ADD COLUMN NOT NULL without a DEFAULT",
    "high",
    "columns",
    squawk=True,
    cases=[
        trigger('ALTER TABLE "recipe" ADD COLUMN "public" boolean NOT NULL;'),
        passes('ALTER TABLE "recipe" ADD COLUMN "public" boolean NOT NULL DEFAULT true;'),
        passes("CREATE TABLE recipe (id bigint);\nALTER TABLE recipe ADD COLUMN public boolean NOT NULL;"),
    ],
)
def adding_required_field(mig, settings):
    """ADD COLUMN ... NOT NULL without a DEFAULT on an existing table.

    ## What it detects
    A new NOT NULL column with neither a DEFAULT nor a generated value, on a table not
    created earlier in the migration.

    ## Why it matters
    Existing rows would hold NULL, so PostgreSQL rejects the statement on any table with
    rows ("column contains null values"): the deployment fails. Old application code that
    inserts without the column also starts failing.

    ## How to fix
    Add the column with a constant DEFAULT (instant since PostgreSQL 11), or add it
    nullable, backfill, then make it NOT NULL through a validated CHECK constraint.

    ## Example
    ```sql
    ALTER TABLE recipe ADD COLUMN public boolean NOT NULL DEFAULT false;
    ```

    ## Thresholds
    None.

    ## Known false positives
    Tables that are empty in every environment.

    ## Differences from squawk
    squawk (2.70) exempts a table created earlier in the file only when the file runs in a
    transaction; queryaudit exempts it either way: nobody else uses a table that did not
    exist before this migration, so its lock blocks no one.
    """
    created = CreatedTables(mig)
    for stmt, node, cmd in alter_table_cmds(mig):
        if cmd.subtype != AlterTableType.AT_AddColumn or created.before(stmt, node.relation):
            continue
        col = cmd.def_
        if not (col.is_not_null or has_constraint(col, ConstrType.CONSTR_NOTNULL, ConstrType.CONSTR_PRIMARY)):
            continue
        if has_constraint(col, ConstrType.CONSTR_DEFAULT, ConstrType.CONSTR_GENERATED, ConstrType.CONSTR_IDENTITY):
            continue
        if base_type(col.typeName) in SERIAL_TYPES:
            continue
        table = relname(node.relation)
        yield violation(
            stmt,
            f"ADD COLUMN {col.colname} NOT NULL without a DEFAULT fails on a table with rows",
            col,
            lock=ACCESS_EXCLUSIVE,
            rewrite=False,
            table=table,
            safe_sql=f"ALTER TABLE {table} ADD COLUMN {quote_ident(col.colname)} "
            f"{deparse(col.typeName)} NOT NULL DEFAULT <constant>;",
        )


def _not_null_check_column(constraint: ast.Constraint) -> str | None:
    expr = constraint.raw_expr
    if (
        constraint.contype == ConstrType.CONSTR_CHECK
        and isinstance(expr, ast.NullTest)
        and expr.nulltesttype == NullTestType.IS_NOT_NULL
        and isinstance(expr.arg, ast.ColumnRef)
    ):
        fields = names(expr.arg.fields)
        return fields[-1] if fields else None
    return None


@rule(
    "adding-not-nullable-field",
    "SET NOT NULL without a validated CHECK constraint",
    "high",
    "columns",
    squawk=True,
    cases=[
        trigger("ALTER TABLE foo ALTER COLUMN bar SET NOT NULL;"),
        trigger(
            "ALTER TABLE foo ADD CONSTRAINT c CHECK (bar IS NOT NULL) NOT VALID;\n"
            "ALTER TABLE foo VALIDATE CONSTRAINT c;\nALTER TABLE foo ALTER COLUMN bar SET NOT NULL;",
            pg_version="11",
        ),
        passes(
            "ALTER TABLE foo ADD CONSTRAINT c CHECK (bar IS NOT NULL) NOT VALID;\n"
            "ALTER TABLE foo VALIDATE CONSTRAINT c;\nALTER TABLE foo ALTER COLUMN bar SET NOT NULL;"
        ),
    ],
)
def adding_not_nullable_field(mig, settings):
    """ALTER COLUMN ... SET NOT NULL that scans the table under an ACCESS EXCLUSIVE lock.

    ## What it detects
    `ALTER TABLE ... ALTER COLUMN ... SET NOT NULL` on an existing table, unless (PostgreSQL
    12+) a CHECK (col IS NOT NULL) constraint was validated first.

    ## Why it matters
    SET NOT NULL scans every row to prove there is no NULL while holding ACCESS EXCLUSIVE:
    no reads or writes for the length of a full table scan. The table is not rewritten.
    Since PostgreSQL 12 the scan is skipped when a valid CHECK constraint proves it.

    ## How to fix
    Add `CHECK (col IS NOT NULL) NOT VALID` (instant), `VALIDATE CONSTRAINT` it (SHARE
    UPDATE EXCLUSIVE: reads and writes continue), then SET NOT NULL (instant) and drop the
    CHECK. Before PostgreSQL 12 there is no lock-free way; keep the CHECK constraint instead.

    ## Example
    ```sql
    ALTER TABLE foo ADD CONSTRAINT foo_bar_not_null CHECK (bar IS NOT NULL) NOT VALID;
    ALTER TABLE foo VALIDATE CONSTRAINT foo_bar_not_null;
    ALTER TABLE foo ALTER COLUMN bar SET NOT NULL;
    ALTER TABLE foo DROP CONSTRAINT foo_bar_not_null;
    ```

    ## Thresholds
    None. A VALIDATE CONSTRAINT of a constraint the migration did not add is assumed to be
    such a CHECK (like squawk).

    ## Known false positives
    Small tables; a CHECK constraint validated in an earlier migration.
    """
    created = CreatedTables(mig)
    checks: dict[tuple[str, str], str | None] = {}  # (table, constraint) -> column
    validated: dict[str, set[str | None]] = {}
    for stmt, node, cmd in alter_table_cmds(mig):
        table = node.relation.relname
        if cmd.subtype == AlterTableType.AT_AddConstraint and isinstance(cmd.def_, ast.Constraint):
            column = _not_null_check_column(cmd.def_)
            if column and cmd.def_.conname:
                checks[(table, cmd.def_.conname)] = column
            if column and not cmd.def_.skip_validation:
                validated.setdefault(table, set()).add(column)
        elif cmd.subtype == AlterTableType.AT_ValidateConstraint:
            # unknown constraint (added by an earlier migration): assumed to cover any column
            validated.setdefault(table, set()).add(
                checks.get((table, cmd.name), None) if (table, cmd.name) in checks else None
            )
        elif cmd.subtype == AlterTableType.AT_SetNotNull:
            if created.before(stmt, node.relation):
                continue
            proven = validated.get(table, set())
            if settings.pg_version >= NOT_NULL_FROM_CHECK_VERSION and (cmd.name in proven or None in proven):
                continue
            t, c = relname(node.relation), quote_ident(cmd.name)
            safe = (
                f"ALTER TABLE {t} ADD CONSTRAINT {table}_{cmd.name}_not_null CHECK ({c} IS NOT NULL) NOT VALID;\n"
                f"ALTER TABLE {t} VALIDATE CONSTRAINT {table}_{cmd.name}_not_null;\n"
            )
            safe += (
                f"ALTER TABLE {t} ALTER COLUMN {c} SET NOT NULL;\n"
                f"ALTER TABLE {t} DROP CONSTRAINT {table}_{cmd.name}_not_null;"
                if settings.pg_version >= NOT_NULL_FROM_CHECK_VERSION
                else "-- PostgreSQL < 12 cannot use the CHECK for SET NOT NULL: keep the CHECK instead"
            )
            yield violation(
                stmt,
                f"SET NOT NULL on {t}.{cmd.name} scans the whole table under an ACCESS EXCLUSIVE lock",
                lock=ACCESS_EXCLUSIVE,
                rewrite=False,
                table=t,
                safe_sql=safe,
            )


# ALTER COLUMN TYPE changes that PostgreSQL performs without rewriting the table
# (binary-coercible casts and typmod relaxations: ATColumnChangeRequiresRewrite).
BINARY_COERCIBLE = {
    ("varchar", "text"),
    ("text", "varchar"),
    ("bpchar", "text"),
    ("cidr", "inet"),
    ("xml", "text"),
    ("varbit", "bit"),
}
TYPMOD_GROWTH = {"varchar", "numeric", "varbit", "timestamp", "timestamptz", "time", "timetz", "interval"}


def type_change_rewrites(old: ast.TypeName | None, new: ast.TypeName) -> bool | None:
    """True: the table is rewritten; False: catalog-only; None: the old type is unknown."""
    if old is None:
        return None
    a, b = base_type(old), base_type(new)
    if old.arrayBounds or new.arrayBounds:
        return not (a == b and typmods(old) == typmods(new))
    if a == b:
        ma, mb = typmods(old), typmods(new)
        if not mb or ma == mb:
            return False
        if a in TYPMOD_GROWTH and ma and len(ma) == len(mb):
            if a == "numeric":  # precision may grow, scale must stay
                return not (mb[0] >= ma[0] and (ma[1:] == mb[1:]))
            return not all(y >= x for x, y in zip(ma, mb, strict=True))
        return True
    if (a, b) in BINARY_COERCIBLE:
        return bool(typmods(new)) and b != "text"  # text -> varchar(n) must check every value
    return True


def _using_is_plain_cast(cmd: ast.AlterTableCmd) -> bool:
    expr = cmd.def_.raw_default
    while isinstance(expr, ast.TypeCast):
        expr = expr.arg
    return expr is None or (isinstance(expr, ast.ColumnRef) and names(expr.fields)[-1:] == [cmd.name])


@rule(
    "changing-column-type",
    "ALTER COLUMN TYPE",
    "high",
    "columns",
    squawk=True,
    cases=[
        trigger("ALTER TABLE t ALTER COLUMN id TYPE bigint;"),
        trigger("CREATE TABLE t (id int);\nALTER TABLE t ALTER COLUMN id TYPE bigint;"),
        passes("ALTER TABLE t ALTER COLUMN id SET DEFAULT 0;"),
    ],
)
def changing_column_type(mig, settings):
    """ALTER COLUMN ... TYPE: an ACCESS EXCLUSIVE lock, and a full rewrite unless the change is binary-coercible.

    ## What it detects
    Every `ALTER TABLE ... ALTER COLUMN ... TYPE`. When the old type is known (the column
    was defined earlier in the migration, or measured on the scratch database with
    `--dsn`), it says whether the table is rewritten: `int -> bigint` is; `varchar(10) ->
    varchar(20)`, `varchar -> text` and `numeric(10,2) -> numeric(12,2)` are not.

    ## Why it matters
    A rewrite copies the table and rebuilds every index under ACCESS EXCLUSIVE: no reads
    or writes for minutes to hours on a big table. Even a catalog-only change takes ACCESS
    EXCLUSIVE briefly and may rebuild indexes on the column. Clients that cached the type
    can break.

    ## How to fix
    For a rewrite: add a new column of the new type, backfill in batches, keep both in
    sync with a trigger, then swap names in one short transaction. For a catalog-only
    change: run it with a short `lock_timeout` and retry.

    ## Example
    ```sql
    ALTER TABLE orders ADD COLUMN id_new bigint;
    -- trigger copying id -> id_new, backfill in batches, then:
    BEGIN;
    ALTER TABLE orders RENAME COLUMN id TO id_old;
    ALTER TABLE orders RENAME COLUMN id_new TO id;
    COMMIT;
    ```

    ## Thresholds
    Severity high when the table is (or may be) rewritten, low when catalog-only.

    ## Known false positives
    `timestamp -> timestamptz` is catalog-only on PostgreSQL 12+ when the session
    TimeZone is UTC; it is reported as a rewrite.
    """
    columns: dict[tuple[str, str], ast.TypeName] = {}
    for stmt in mig.statements:
        node = stmt.node
        if isinstance(node, ast.CreateStmt):
            for elt in node.tableElts or ():
                if isinstance(elt, ast.ColumnDef):
                    columns[(node.relation.relname, elt.colname)] = elt.typeName
            continue
        if not isinstance(node, ast.AlterTableStmt):
            continue
        for cmd in node.cmds or ():
            if not isinstance(cmd, ast.AlterTableCmd):
                continue
            key = (node.relation.relname, cmd.name)
            if cmd.subtype == AlterTableType.AT_AddColumn and isinstance(cmd.def_, ast.ColumnDef):
                columns[(node.relation.relname, cmd.def_.colname)] = cmd.def_.typeName
            elif cmd.subtype == AlterTableType.AT_AlterColumnType:
                new = cmd.def_.typeName
                rewrites = type_change_rewrites(columns.get(key), new)
                if rewrites is False and not _using_is_plain_cast(cmd):
                    rewrites = True
                t = relname(node.relation)
                what = {
                    True: f"rewrites {t} and its indexes",
                    False: "is catalog-only (binary-coercible), no rewrite",
                    None: f"rewrites {t} unless the change is binary-coercible",
                }[rewrites]
                yield violation(
                    stmt,
                    f"ALTER COLUMN {cmd.name} TYPE {deparse(new)} {what}; ACCESS EXCLUSIVE lock",
                    cmd.def_ if loc(cmd.def_) is not None else None,
                    lock=ACCESS_EXCLUSIVE,
                    rewrite=rewrites,
                    table=t,
                    severity="low" if rewrites is False else None,
                    safe_sql=None
                    if rewrites is False
                    else f"ALTER TABLE {t} ADD COLUMN {quote_ident(cmd.name + '_new')} {deparse(new)};\n"
                    "-- sync with a trigger, backfill in batches, then swap the names in one short "
                    "transaction",
                )
                columns[key] = new
