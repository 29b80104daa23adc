"""Constraint rules: add and validate constraints without long locks."""

from __future__ import annotations

from pglast import ast
from pglast.enums import AlterTableType, ConstrType

from queryaudit.migrations import passes, rule, trigger
from queryaudit.migrations.locks import ACCESS_EXCLUSIVE, SHARE_ROW_EXCLUSIVE
from queryaudit.migrations.rules._util import (
    CreatedTables,
    alter_table_cmds,
    deparse,
    has_constraint,
    relname,
    violation,
    with_changes,
)
from queryaudit.migrations.source import END_KINDS, is_transaction
from queryaudit.sql import quote_ident


def _not_valid_sql(node: ast.AlterTableStmt, cmd: ast.AlterTableCmd) -> str:
    con = cmd.def_
    t = relname(node.relation)
    added = with_changes(node, cmds=(cmd,), missing_ok=False)
    name = con.conname or "<constraint>"
    return (
        f"{added.rstrip(';')} NOT VALID;\n"
        f"-- in a separate transaction (SHARE UPDATE EXCLUSIVE: reads and writes continue):\n"
        f"ALTER TABLE {t} VALIDATE CONSTRAINT {quote_ident(name)};"
    )


@rule(
    "constraint-missing-not-valid",
    "FOREIGN KEY / CHECK without NOT VALID, or validated in the same transaction",
    "high",
    "constraints",
    squawk=True,
    cases=[
        trigger("ALTER TABLE accounts ADD CONSTRAINT positive CHECK (balance >= 0);"),
        trigger(
            "BEGIN;\nALTER TABLE a ADD CONSTRAINT fk FOREIGN KEY (b_id) REFERENCES b (id) NOT VALID;\n"
            "ALTER TABLE a VALIDATE CONSTRAINT fk;\nCOMMIT;"
        ),
        passes(
            "ALTER TABLE accounts ADD CONSTRAINT positive CHECK (balance >= 0) NOT VALID;\n"
            "ALTER TABLE accounts VALIDATE CONSTRAINT positive;"
        ),
    ],
)
def constraint_missing_not_valid(mig, settings):
    """ADD CONSTRAINT (FOREIGN KEY or CHECK) that validates every row under a blocking lock.

    ## What it detects
    `ALTER TABLE ... ADD CONSTRAINT ... FOREIGN KEY | CHECK` without `NOT VALID` on a table
    not created in the same transaction; and `VALIDATE CONSTRAINT` in the same transaction
    as the `ADD ... NOT VALID`, which holds the ADD's lock through the validation.

    ## Why it matters
    Without NOT VALID, PostgreSQL scans the whole table to check existing rows while
    holding ACCESS EXCLUSIVE (CHECK) or SHARE ROW EXCLUSIVE on both tables (FOREIGN KEY):
    reads and/or writes stop for a full scan. Validating in the same transaction keeps
    that lock anyway.

    ## How to fix
    Add it `NOT VALID` (instant, checks new rows only), then `VALIDATE CONSTRAINT` in its
    own transaction: it takes only SHARE UPDATE EXCLUSIVE, so reads and writes continue.

    ## Example
    ```sql
    ALTER TABLE accounts ADD CONSTRAINT positive_balance CHECK (balance >= 0) NOT VALID;
    -- next transaction
    ALTER TABLE accounts VALIDATE CONSTRAINT positive_balance;
    ```

    ## Thresholds
    None.

    ## Known false positives
    Small tables.

    ## Differences from squawk
    squawk (2.70) also reports `ADD CONSTRAINT ... UNIQUE` and `... EXCLUDE` here, but
    PostgreSQL has no NOT VALID for them (`ERROR: UNIQUE constraints cannot be marked NOT
    VALID`): the advice cannot be followed. queryaudit reports UNIQUE under
    disallowed-unique-constraint (build the index concurrently, then `USING INDEX`).
    """
    created = CreatedTables(mig)
    not_valid_added: dict[tuple[str, str], object] = {}
    for stmt, node, cmd in alter_table_cmds(mig):
        table = node.relation.relname
        if cmd.subtype == AlterTableType.AT_AddConstraint and isinstance(cmd.def_, ast.Constraint):
            con = cmd.def_
            if con.contype not in (ConstrType.CONSTR_FOREIGN, ConstrType.CONSTR_CHECK):
                continue
            if con.skip_validation:
                not_valid_added[(table, con.conname)] = stmt
                continue
            if stmt.in_transaction and created.before(stmt, node.relation):
                continue
            if created.before(stmt, node.relation):
                continue
            kind = "FOREIGN KEY" if con.contype == ConstrType.CONSTR_FOREIGN else "CHECK"
            lock = SHARE_ROW_EXCLUSIVE if kind == "FOREIGN KEY" else ACCESS_EXCLUSIVE
            yield violation(
                stmt,
                f"ADD CONSTRAINT {con.conname or ''} {kind} without NOT VALID scans "
                f"{relname(node.relation)} under a {lock} lock",
                lock=lock,
                rewrite=False,
                table=relname(node.relation),
                safe_sql=_not_valid_sql(node, cmd),
            )
        elif cmd.subtype == AlterTableType.AT_ValidateConstraint:
            added = not_valid_added.get((table, cmd.name))
            if (
                added is not None
                and stmt.in_transaction
                and added.in_transaction
                and _same_transaction(mig, added, stmt)
            ):
                yield violation(
                    stmt,
                    f"VALIDATE CONSTRAINT {cmd.name} in the transaction that added it keeps "
                    "the ADD's lock through the whole validation",
                    table=relname(node.relation),
                    lock=ACCESS_EXCLUSIVE,
                    rewrite=False,
                    safe_sql=f"COMMIT;\nBEGIN;\n{stmt.text.strip()};",
                )


def _same_transaction(mig, first, second) -> bool:
    return not any(is_transaction(s.node, *END_KINDS) for s in mig.statements[first.index + 1 : second.index])


@rule(
    "adding-foreign-key-constraint",
    "FOREIGN KEY added without NOT VALID",
    "high",
    "constraints",
    squawk=True,
    cases=[
        trigger('ALTER TABLE email ADD CONSTRAINT fk_user FOREIGN KEY (user_id) REFERENCES "user" (id);'),
        trigger('ALTER TABLE email ADD COLUMN user_id bigint REFERENCES "user" (id);'),
        passes('ALTER TABLE email ADD CONSTRAINT fk_user FOREIGN KEY (user_id) REFERENCES "user" (id) NOT VALID;'),
        trigger(
            "CREATE TABLE email_copy AS SELECT * FROM email;\n"
            'ALTER TABLE email_copy ADD CONSTRAINT fk_user FOREIGN KEY (user_id) REFERENCES "user" (id);'
        ),
        trigger(
            "CREATE TABLE email_copy (id bigint, user_id bigint);\nINSERT INTO email_copy SELECT id, "
            'user_id FROM email;\nALTER TABLE email_copy ADD FOREIGN KEY (user_id) REFERENCES "user" (id);'
        ),
        passes(
            "CREATE TABLE email_copy (id bigint, user_id bigint);\n"
            'ALTER TABLE email_copy ADD FOREIGN KEY (user_id) REFERENCES "user" (id);'
        ),
        passes(
            'CREATE TABLE u AS SELECT * FROM "user";\nCREATE TABLE e AS SELECT * FROM email;\n'
            "ALTER TABLE e ADD FOREIGN KEY (user_id) REFERENCES u (id);"
        ),
    ],
)
def adding_foreign_key_constraint(mig, settings):
    """A FOREIGN KEY added to an existing table without NOT VALID (table or column constraint).

    ## What it detects
    `ADD CONSTRAINT ... FOREIGN KEY` without `NOT VALID`, and `ADD COLUMN ... REFERENCES`,
    on a table not created in the same migration; and on a table created earlier in the
    migration but already filled (`CREATE TABLE ... AS`, or `INSERT ... SELECT` into it)
    when the referenced table is not new.

    ## Why it matters
    The new key is checked against every row while SHARE ROW EXCLUSIVE is held on both the
    table and the referenced table: writes to both stop for a full scan. A table created in
    the same migration blocks nobody, but once CREATE TABLE AS or INSERT ... SELECT has put
    rows in it, the scan still takes time, and the lock on the referenced table (which the
    application writes to) is held for all of it.

    ## How to fix
    Add the key `NOT VALID`, then `VALIDATE CONSTRAINT` in a later transaction; for a new
    column, add the column first, then the constraint the same way.

    ## Example
    ```sql
    ALTER TABLE email ADD COLUMN user_id bigint;
    ALTER TABLE email ADD CONSTRAINT fk_user FOREIGN KEY (user_id) REFERENCES "user" (id) NOT VALID;
    ALTER TABLE email VALIDATE CONSTRAINT fk_user;
    ```

    ## Thresholds
    None.

    ## Known false positives
    Overlaps constraint-missing-not-valid for table constraints (squawk keeps both rules).
    squawk (2.70) exempts every table created in the file, filled or not; queryaudit
    reports the filled ones, whose scan is real.

    ## Differences from squawk
    squawk (2.70) exempts a table created earlier in the file only when the file runs in a
    transaction; queryaudit exempts it either way: nobody else uses a table that did not
    exist before this migration, so its lock blocks no one.
    A table created and then filled in the file (CREATE TABLE AS, INSERT ... SELECT) is
    reported all the same when the referenced table already exists; squawk misses it.
    """
    created = CreatedTables(mig)
    for stmt, node, cmd in alter_table_cmds(mig):
        t = relname(node.relation)
        fk = _foreign_key_of(cmd)
        if fk is None:
            continue
        if created.before(stmt, node.relation):
            # New, so nobody waits on it; but if rows were put in it, the validating scan
            # holds SHARE ROW EXCLUSIVE on the referenced table, which others do use.
            filler = created.filled_before(stmt, node.relation)
            if filler is None or created.before(stmt, fk.pktable):
                continue
            ref = relname(fk.pktable)
            yield violation(
                stmt,
                f"FOREIGN KEY on {t}, filled at line {filler.line}, scans every row of it while "
                f"holding SHARE ROW EXCLUSIVE on {ref}, which already exists: writes to {ref} "
                "wait for the scan",
                lock=SHARE_ROW_EXCLUSIVE,
                rewrite=False,
                table=ref,
                safe_sql=_not_valid_sql(node, cmd) if cmd.subtype == AlterTableType.AT_AddConstraint else None,
            )
            continue
        if cmd.subtype == AlterTableType.AT_AddConstraint:
            yield violation(
                stmt,
                f"FOREIGN KEY on {t} without NOT VALID blocks writes to both tables while every row is checked",
                lock=SHARE_ROW_EXCLUSIVE,
                rewrite=False,
                table=t,
                safe_sql=_not_valid_sql(node, cmd),
            )
        else:
            col = quote_ident(cmd.def_.colname)
            yield violation(
                stmt,
                f"ADD COLUMN {cmd.def_.colname} REFERENCES validates the key with SHARE ROW EXCLUSIVE on both tables",
                lock=SHARE_ROW_EXCLUSIVE,
                rewrite=False,
                table=t,
                safe_sql=f"ALTER TABLE {t} ADD COLUMN {col} {deparse(cmd.def_.typeName)};\n"
                f"ALTER TABLE {t} ADD CONSTRAINT {t.split('.')[-1]}_{cmd.def_.colname}_fkey "
                f"FOREIGN KEY ({col}) REFERENCES {relname(fk.pktable)} NOT VALID;\n"
                f"ALTER TABLE {t} VALIDATE CONSTRAINT {t.split('.')[-1]}_{cmd.def_.colname}_fkey;",
            )


def _foreign_key_of(cmd: ast.AlterTableCmd) -> ast.Constraint | None:
    """The validated FOREIGN KEY an ALTER TABLE command adds (table constraint or ADD COLUMN ... REFERENCES)."""
    if (
        cmd.subtype == AlterTableType.AT_AddConstraint
        and isinstance(cmd.def_, ast.Constraint)
        and cmd.def_.contype == ConstrType.CONSTR_FOREIGN
        and not cmd.def_.skip_validation
    ):
        return cmd.def_
    if cmd.subtype == AlterTableType.AT_AddColumn and isinstance(cmd.def_, ast.ColumnDef):
        return has_constraint(cmd.def_, ConstrType.CONSTR_FOREIGN)
    return None


def _unique_index_sql(t: str, cols: list[str], name: str, kind: str) -> str:
    idx = f"{name}_idx"
    return (
        f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {idx} ON {t} ({', '.join(cols)});\n"
        f"ALTER TABLE {t} ADD CONSTRAINT {name} {kind} USING INDEX {idx};"
    )


def _index_backed_constraints(mig, contype: ConstrType, kind: str):
    """ADD UNIQUE / PRIMARY KEY (table or column constraint) without USING INDEX, on an
    existing table: the index is built under ACCESS EXCLUSIVE."""
    created = CreatedTables(mig)
    for stmt, node, cmd in alter_table_cmds(mig):
        if created.before(stmt, node.relation):
            continue
        t = relname(node.relation)
        short = t.split(".")[-1]
        if (
            cmd.subtype == AlterTableType.AT_AddConstraint
            and isinstance(cmd.def_, ast.Constraint)
            and cmd.def_.contype == contype
            and not cmd.def_.indexname
        ):
            cols = [k.sval for k in cmd.def_.keys or ()]
            default = f"{short}_pkey" if contype == ConstrType.CONSTR_PRIMARY else f"{short}_{'_'.join(cols)}_key"
            yield violation(
                stmt,
                f"ADD {kind} on {t} builds the index under an ACCESS EXCLUSIVE lock",
                lock=ACCESS_EXCLUSIVE,
                rewrite=False,
                table=t,
                safe_sql=_unique_index_sql(t, cols, cmd.def_.conname or default, kind),
            )
        elif cmd.subtype == AlterTableType.AT_AddColumn and has_constraint(cmd.def_, contype):
            col = cmd.def_.colname
            fills = contype == ConstrType.CONSTR_PRIMARY
            yield violation(
                stmt,
                f"ADD COLUMN {col} {kind} {'fills and ' if fills else ''}indexes every row under "
                "an ACCESS EXCLUSIVE lock",
                lock=ACCESS_EXCLUSIVE,
                rewrite=fills or False,
                table=t,
                safe_sql=f"ALTER TABLE {t} ADD COLUMN {quote_ident(col)} {deparse(cmd.def_.typeName)};\n"
                + _unique_index_sql(t, [quote_ident(col)], f"{short}_{col}_key", kind),
            )


@rule(
    "disallowed-unique-constraint",
    "UNIQUE constraint without USING INDEX",
    "high",
    "constraints",
    squawk=True,
    cases=[
        trigger("ALTER TABLE t ADD CONSTRAINT t_code_key UNIQUE (code);"),
        trigger("ALTER TABLE foo ADD COLUMN bar text UNIQUE;"),
        passes("ALTER TABLE t ADD CONSTRAINT t_code_key UNIQUE USING INDEX t_code_idx;"),
    ],
)
def disallowed_unique_constraint(mig, settings):
    """ADD UNIQUE constraint that builds its index under an ACCESS EXCLUSIVE lock.

    ## What it detects
    `ADD CONSTRAINT ... UNIQUE (cols)` and `ADD COLUMN ... UNIQUE` on a table not created
    in the same transaction.

    ## Why it matters
    The unique index is built while ACCESS EXCLUSIVE is held: no reads or writes for the
    whole index build.

    ## How to fix
    Build the unique index with `CREATE UNIQUE INDEX CONCURRENTLY`, then attach it with
    `ADD CONSTRAINT ... UNIQUE USING INDEX` (instant).

    ## Example
    ```sql
    CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t_code_idx ON t (code);
    ALTER TABLE t ADD CONSTRAINT t_code_key UNIQUE USING INDEX t_code_idx;
    ```

    ## Thresholds
    None.

    ## Known false positives
    Small tables.
    """
    yield from _index_backed_constraints(mig, ConstrType.CONSTR_UNIQUE, "UNIQUE")


@rule(
    "adding-serial-primary-key-field",
    "PRIMARY KEY without USING INDEX",
    "high",
    "constraints",
    squawk=True,
    cases=[
        trigger("ALTER TABLE items ADD PRIMARY KEY (id);"),
        trigger("ALTER TABLE a ADD COLUMN b SERIAL PRIMARY KEY;"),
        passes("ALTER TABLE items ADD CONSTRAINT items_pk PRIMARY KEY USING INDEX items_pk;"),
    ],
)
def adding_serial_primary_key_field(mig, settings):
    """ADD PRIMARY KEY that builds its index (and maybe fills a serial) under an ACCESS EXCLUSIVE lock.

    ## What it detects
    `ADD PRIMARY KEY (cols)` / `ADD CONSTRAINT ... PRIMARY KEY (cols)` without `USING
    INDEX`, and `ADD COLUMN ... PRIMARY KEY`, on a table not created in the same transaction.

    ## Why it matters
    The primary key's unique index is built under ACCESS EXCLUSIVE (no reads or writes),
    and the key columns are made NOT NULL with a full scan; a new serial column also
    rewrites the table.

    ## How to fix
    Make the columns NOT NULL safely (see adding-not-nullable-field), build the unique
    index concurrently, then `ADD CONSTRAINT ... PRIMARY KEY USING INDEX`.

    ## Example
    ```sql
    CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS items_pk_idx ON items (id);
    ALTER TABLE items ADD CONSTRAINT items_pk PRIMARY KEY USING INDEX items_pk_idx;
    ```

    ## Thresholds
    None.

    ## Known false positives
    Small tables.
    """
    yield from _index_backed_constraints(mig, ConstrType.CONSTR_PRIMARY, "PRIMARY KEY")


@rule(
    "ban-create-domain-with-constraint",
    "CREATE DOMAIN with a constraint",
    "medium",
    "constraints",
    squawk=True,
    cases=[trigger("CREATE DOMAIN positive AS int CHECK (value > 0);"), passes("CREATE DOMAIN name_text AS text;")],
)
def ban_create_domain_with_constraint(mig, settings):
    """A domain created with a CHECK or NOT NULL constraint.

    ## What it detects
    `CREATE DOMAIN ... CHECK (...)` or `... NOT NULL`.

    ## Why it matters
    Changing a domain's constraints later (`ALTER DOMAIN ... ADD CONSTRAINT`) checks every
    column of every table using the domain under locks, with no NOT VALID escape for
    columns that are added later; table CHECK constraints are easier to evolve safely.

    ## How to fix
    Create the domain without constraints and put CHECK constraints on the tables.

    ## Example
    ```sql
    CREATE DOMAIN positive_int AS int;
    ALTER TABLE t ADD CONSTRAINT qty_positive CHECK (qty > 0) NOT VALID;
    ```

    ## Thresholds
    None.

    ## Known false positives
    Domains that will never change.
    """
    for stmt in mig.statements:
        if isinstance(stmt.node, ast.CreateDomainStmt) and stmt.node.constraints:
            yield violation(stmt, "CREATE DOMAIN with a constraint: later changes lock every table using it")


@rule(
    "ban-alter-domain-with-add-constraint",
    "ALTER DOMAIN ... ADD CONSTRAINT",
    "high",
    "constraints",
    squawk=True,
    cases=[
        trigger("ALTER DOMAIN positive ADD CONSTRAINT c CHECK (value > 0);"),
        passes("ALTER DOMAIN positive DROP CONSTRAINT c;"),
    ],
)
def ban_alter_domain_with_add_constraint(mig, settings):
    """ALTER DOMAIN ... ADD CONSTRAINT, which checks every column using the domain.

    ## What it detects
    `ALTER DOMAIN ... ADD CONSTRAINT`.

    ## Why it matters
    PostgreSQL validates the new constraint against every column of every table that uses
    the domain, holding a SHARE lock on each of those tables (writes blocked) meanwhile.

    ## How to fix
    Use table CHECK constraints added NOT VALID and validated separately, or add the domain
    constraint `NOT VALID` and `ALTER DOMAIN ... VALIDATE CONSTRAINT` later.

    ## Example
    ```sql
    ALTER DOMAIN positive ADD CONSTRAINT c CHECK (value > 0) NOT VALID;
    ALTER DOMAIN positive VALIDATE CONSTRAINT c;
    ```

    ## Thresholds
    None.

    ## Known false positives
    Domains used by no table, or only by small tables.
    """
    for stmt in mig.statements:
        node = stmt.node
        if isinstance(node, ast.AlterDomainStmt) and node.subtype == "C":
            yield violation(
                stmt, "ALTER DOMAIN ADD CONSTRAINT checks every column using the domain", lock="SHARE", rewrite=False
            )
