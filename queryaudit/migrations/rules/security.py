"""Security and access rules (squawk 2.70's opt-in ones): policies, row level security, role,
database, server, function, view and extension options. All opt-in, as in squawk. Policies
and row level security on a table created earlier in the file change nobody's access yet."""

from __future__ import annotations

from pglast import ast
from pglast.enums import AlterTableType, ObjectType

from queryaudit.migrations import passes, rule, trigger
from queryaudit.migrations.rules._util import POLICY, TABLE, NewObjects, alter_table_cmds, relname, violation


def _policy_statements(mig, kind):
    new = NewObjects(mig)
    for stmt in mig.statements:
        node = stmt.node
        if isinstance(node, kind) and not new.before(TABLE, node.table.relname, stmt):
            yield stmt, node


@rule(
    "ban-create-policy",
    "CREATE POLICY on an existing table",
    "medium",
    "security",
    default=False,
    squawk=True,
    cases=[
        trigger("CREATE POLICY own_rows ON orders USING (user_id = current_user_id());"),
        passes("DROP POLICY p ON t;"),
        passes("CREATE TABLE t (id bigint);\nCREATE POLICY p ON t USING (true);"),
    ],
)
def ban_create_policy(mig, settings):
    """A row level security policy created on a table clients use (opt-in).

    ## What it detects
    `CREATE POLICY` on a table not created earlier in the file.

    ## Why it matters
    With row level security on, a new permissive policy lets roles see or write rows they
    could not before; a restrictive one hides rows from them.

    ## How to fix
    Review the policy's roles and expressions against every client role.

    ## Example
    ```sql
    CREATE POLICY own_rows ON orders FOR SELECT TO app USING (user_id = current_setting('app.user_id')::bigint);
    ```

    ## Thresholds
    None. Off by default, as in squawk.

    ## Known false positives
    Tables without row level security enabled.

    ## Differences from squawk
    squawk (2.70) reports policies on tables created in the same file too.
    """
    for stmt, node in _policy_statements(mig, ast.CreatePolicyStmt):
        yield violation(
            stmt,
            f"CREATE POLICY {node.policy_name} on {relname(node.table)} changes which rows roles can see or write",
            table=relname(node.table),
        )


@rule(
    "ban-alter-policy-roles",
    "ALTER POLICY ... TO roles",
    "medium",
    "security",
    default=False,
    squawk=True,
    cases=[trigger("ALTER POLICY p ON t TO admin;"), passes("ALTER POLICY p ON t USING (true);")],
)
def ban_alter_policy_roles(mig, settings):
    """The roles a policy applies to changed (opt-in).

    ## What it detects
    `ALTER POLICY ... TO role, ...`.

    ## Why it matters
    Roles gain or lose the rows the policy governs.

    ## How to fix
    Check every client role against the new list.

    ## Example
    ```sql
    ALTER POLICY own_rows ON orders TO app, app_readonly;
    ```

    ## Thresholds
    None. Off by default, as in squawk.

    ## Known false positives
    Tables without row level security enabled.
    """
    for stmt, node in _policy_statements(mig, ast.AlterPolicyStmt):
        if node.roles:
            yield violation(stmt, f"policy {node.policy_name} now applies to other roles", table=relname(node.table))


@rule(
    "ban-alter-policy-condition",
    "ALTER POLICY ... USING / WITH CHECK",
    "medium",
    "security",
    default=False,
    squawk=True,
    cases=[trigger("ALTER POLICY p ON t USING (true) WITH CHECK (false);"), passes("ALTER POLICY p ON t TO admin;")],
)
def ban_alter_policy_condition(mig, settings):
    """A policy's condition changed (opt-in).

    ## What it detects
    `ALTER POLICY ... USING (...)` or `WITH CHECK (...)`, one finding for each.

    ## Why it matters
    The rows roles can read (USING) or write (WITH CHECK) change at commit.

    ## How to fix
    Review the new expression against every client role.

    ## Example
    ```sql
    ALTER POLICY own_rows ON orders USING (user_id = current_setting('app.user_id')::bigint);
    ```

    ## Thresholds
    None. Off by default, as in squawk.

    ## Known false positives
    Tables without row level security enabled.
    """
    for stmt, node in _policy_statements(mig, ast.AlterPolicyStmt):
        for part, expr in (("USING", node.qual), ("WITH CHECK", node.with_check)):
            if expr is not None:
                yield violation(stmt, f"policy {node.policy_name}: new {part} condition", table=relname(node.table))


@rule(
    "ban-drop-policy",
    "DROP POLICY",
    "medium",
    "security",
    default=False,
    squawk=True,
    cases=[
        trigger("DROP POLICY own_rows ON orders;"),
        passes("CREATE POLICY p ON t USING (true);\nDROP POLICY p ON t;"),
    ],
)
def ban_drop_policy(mig, settings):
    """A row level security policy dropped (opt-in).

    ## What it detects
    `DROP POLICY` of a policy not created earlier in the file, and `DROP RULE` (squawk
    2.70 counts rewrite rules here).

    ## Why it matters
    A dropped permissive policy hides rows from the roles it granted; a dropped
    restrictive one exposes rows.

    ## How to fix
    Replace it in the same transaction when its condition changes.

    ## Example
    ```sql
    BEGIN;
    DROP POLICY own_rows ON orders;
    CREATE POLICY own_rows ON orders USING (tenant_id = current_setting('app.tenant')::bigint);
    COMMIT;
    ```

    ## Thresholds
    None. Off by default, as in squawk.

    ## Known false positives
    Policies replaced in the same transaction.

    ## Differences from squawk
    squawk (2.70) exempts only the tables its compatibility rules track; queryaudit skips
    every object created earlier in the same file (no client knows it yet).
    """
    new = NewObjects(mig)
    for stmt in mig.statements:
        node = stmt.node
        if isinstance(node, ast.DropStmt) and node.removeType in (ObjectType.OBJECT_POLICY, ObjectType.OBJECT_RULE):
            for obj in node.objects or ():
                name = obj[-1].sval if isinstance(obj, tuple) and obj else None
                kind = POLICY if node.removeType == ObjectType.OBJECT_POLICY else "rule"
                if not new.before(kind, name, stmt):
                    yield violation(stmt, f"DROP POLICY {name}: the rows it governed are hidden or exposed")


ROW_SECURITY = {
    AlterTableType.AT_EnableRowSecurity: "ENABLE",
    AlterTableType.AT_DisableRowSecurity: "DISABLE",
    AlterTableType.AT_ForceRowSecurity: "FORCE",
    AlterTableType.AT_NoForceRowSecurity: "NO FORCE",
}


@rule(
    "ban-alter-row-level-security",
    "ENABLE / DISABLE / FORCE ROW LEVEL SECURITY",
    "medium",
    "security",
    default=False,
    squawk=True,
    cases=[
        trigger("ALTER TABLE t ENABLE ROW LEVEL SECURITY;"),
        passes("ALTER TABLE t ADD COLUMN c int;"),
        passes("CREATE TABLE t (id bigint);\nALTER TABLE t ENABLE ROW LEVEL SECURITY;"),
    ],
)
def ban_alter_row_level_security(mig, settings):
    """Row level security switched on or off for a table clients use (opt-in).

    ## What it detects
    `ENABLE`, `DISABLE`, `FORCE` and `NO FORCE ROW LEVEL SECURITY` on a table not created
    earlier in the file.

    ## Why it matters
    Enabling it with no policy hides every row from non-owner roles; disabling it exposes
    every row.

    ## How to fix
    Create the policies first, in the same transaction.

    ## Example
    ```sql
    BEGIN;
    CREATE POLICY own_rows ON orders USING (user_id = current_setting('app.user_id')::bigint);
    ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
    COMMIT;
    ```

    ## Thresholds
    None. Off by default, as in squawk.

    ## Known false positives
    Tables only their owner reads.

    ## Differences from squawk
    squawk (2.70) also reports tables created in the same file (supabase's migrations
    create a table and enable row level security on it in one file: no client saw it).
    """
    new = NewObjects(mig)
    for stmt, node, cmd in alter_table_cmds(mig):
        if cmd.subtype in ROW_SECURITY and not new.before(TABLE, node.relation.relname, stmt):
            yield violation(
                stmt,
                f"{ROW_SECURITY[cmd.subtype]} ROW LEVEL SECURITY on {relname(node.relation)} "
                "changes which rows roles see",
                table=relname(node.relation),
            )


@rule(
    "ban-alter-function-options",
    "ALTER FUNCTION / PROCEDURE / ROUTINE options",
    "medium",
    "security",
    default=False,
    squawk=True,
    cases=[
        trigger("ALTER FUNCTION f() SECURITY DEFINER;"),
        trigger("ALTER ROUTINE f() SET search_path TO private;"),
        passes("ALTER FUNCTION f() RENAME TO g;"),
    ],
)
def ban_alter_function_options(mig, settings):
    """A function's options changed (opt-in).

    ## What it detects
    `ALTER FUNCTION | PROCEDURE | ROUTINE` with options (SECURITY DEFINER/INVOKER,
    volatility, SET/RESET of settings, COST, ROWS, PARALLEL, LEAKPROOF, STRICT).

    ## Why it matters
    SECURITY DEFINER runs it with its owner's rights; SET search_path or volatility
    changes what it does and how the planner uses it.

    ## How to fix
    Review the change against every caller; pin search_path on SECURITY DEFINER functions.

    ## Example
    ```sql
    ALTER FUNCTION f() SET search_path = pg_catalog, public;
    ```

    ## Thresholds
    None. Off by default, as in squawk.

    ## Known false positives
    COST and ROWS tuning.
    """
    for stmt in mig.statements:
        node = stmt.node
        if isinstance(node, ast.AlterFunctionStmt) and node.actions:
            options = ", ".join(d.defname for d in node.actions if isinstance(d, ast.DefElem))
            yield violation(stmt, f"function options changed ({options}): callers get other behaviour or rights")


@rule(
    "ban-alter-view-options",
    "ALTER VIEW ... SET / RESET (options)",
    "medium",
    "security",
    default=False,
    squawk=True,
    cases=[trigger("ALTER VIEW v SET (security_barrier = true);"), passes("ALTER VIEW v RENAME TO w;")],
)
def ban_alter_view_options(mig, settings):
    """A view's options changed (opt-in).

    ## What it detects
    `ALTER VIEW ... SET (...)` and `RESET (...)` (security_barrier, security_invoker,
    check_option).

    ## Why it matters
    security_invoker changes whose privileges and policies apply to readers; check_option
    changes which writes through the view succeed.

    ## How to fix
    Review every client role that reads or writes through the view.

    ## Example
    ```sql
    ALTER VIEW member_list SET (security_invoker = true);
    ```

    ## Thresholds
    None. Off by default, as in squawk.

    ## Known false positives
    Views only their owner reads.
    """
    for stmt in mig.statements:
        node = stmt.node
        if isinstance(node, ast.AlterTableStmt) and node.objtype == ObjectType.OBJECT_VIEW:
            for cmd in node.cmds or ():
                if getattr(cmd, "subtype", None) in (
                    AlterTableType.AT_SetRelOptions,
                    AlterTableType.AT_ResetRelOptions,
                ):
                    yield violation(
                        stmt,
                        f"options of view {node.relation.relname} changed: readers' rights or writes through it change",
                    )


@rule(
    "ban-alter-role-options",
    "ALTER ROLE / USER options or settings",
    "medium",
    "security",
    default=False,
    squawk=True,
    cases=[
        trigger("ALTER ROLE app NOLOGIN;"),
        trigger("ALTER USER app SET search_path TO private;"),
        passes("ALTER ROLE r RENAME TO s;"),
    ],
)
def ban_alter_role_options(mig, settings):
    """A role's options or settings changed (opt-in).

    ## What it detects
    `ALTER ROLE | USER` with options (LOGIN, SUPERUSER, CONNECTION LIMIT, PASSWORD, ...)
    and `ALTER ROLE | USER ... SET / RESET`.

    ## Why it matters
    Clients connecting as the role may be refused, gain rights, or run with other settings.

    ## How to fix
    Manage roles outside schema migrations, or review each client using the role.

    ## Example
    ```sql
    ALTER ROLE app SET statement_timeout = '30s';
    ```

    ## Thresholds
    None. Off by default, as in squawk.

    ## Known false positives
    Roles no client uses.
    """
    for stmt in mig.statements:
        node = stmt.node
        if isinstance(node, (ast.AlterRoleStmt, ast.AlterRoleSetStmt)):
            yield violation(stmt, "role options or settings changed: clients using the role connect or run differently")


@rule(
    "ban-alter-database-options",
    "ALTER DATABASE options or settings",
    "medium",
    "security",
    default=False,
    squawk=True,
    cases=[trigger("ALTER DATABASE shop SET search_path TO public;"), passes("ALTER DATABASE d RENAME TO e;")],
)
def ban_alter_database_options(mig, settings):
    """A database's options or settings changed (opt-in).

    ## What it detects
    `ALTER DATABASE ... WITH options` and `ALTER DATABASE ... SET / RESET`.

    ## Why it matters
    Every new session of every client picks up the change (search_path, timeouts,
    connection limit).

    ## How to fix
    Change database settings deliberately, outside schema migrations.

    ## Example
    ```sql
    ALTER DATABASE shop SET lock_timeout = '5s';
    ```

    ## Thresholds
    None. Off by default, as in squawk.

    ## Known false positives
    Settings the clients set themselves.
    """
    for stmt in mig.statements:
        node = stmt.node
        if isinstance(node, (ast.AlterDatabaseStmt, ast.AlterDatabaseSetStmt)):
            yield violation(stmt, f"database {node.dbname} options or settings changed for every new session")


@rule(
    "ban-alter-system-options",
    "ALTER SYSTEM",
    "medium",
    "security",
    default=False,
    squawk=True,
    cases=[trigger("ALTER SYSTEM SET timezone = 'UTC';"), passes("ALTER DATABASE d SET timezone = 'UTC';")],
)
def ban_alter_system_options(mig, settings):
    """Server configuration changed from a migration (opt-in).

    ## What it detects
    `ALTER SYSTEM SET | RESET`.

    ## Why it matters
    It writes postgresql.auto.conf for the whole server: every database and client after
    the next reload.

    ## How to fix
    Manage server configuration outside migrations.

    ## Example
    ```sql
    -- postgresql.conf / your configuration management, not a migration
    ```

    ## Thresholds
    None. Off by default, as in squawk.

    ## Known false positives
    None known.
    """
    for stmt in mig.statements:
        if isinstance(stmt.node, ast.AlterSystemStmt):
            yield violation(stmt, "ALTER SYSTEM changes the configuration of the whole server")


@rule(
    "ban-alter-extension",
    "ALTER EXTENSION ... UPDATE / DROP object",
    "medium",
    "security",
    default=False,
    squawk=True,
    cases=[
        trigger("ALTER EXTENSION postgis UPDATE TO '3.4.0';"),
        trigger("ALTER EXTENSION postgis DROP FUNCTION f();"),
        passes("ALTER EXTENSION postgis ADD FUNCTION f();"),
    ],
)
def ban_alter_extension(mig, settings):
    """An extension updated, or an object taken out of it (opt-in).

    ## What it detects
    `ALTER EXTENSION ... UPDATE` and `ALTER EXTENSION ... DROP object`.

    ## Why it matters
    An update can change or remove functions and types clients use; dropping an object
    from the extension changes who manages it (a later DROP EXTENSION leaves it behind).

    ## How to fix
    Read the extension's upgrade notes; test the clients against the new version.

    ## Example
    ```sql
    ALTER EXTENSION postgis UPDATE TO '3.4.0';  -- after testing against 3.4
    ```

    ## Thresholds
    None. Off by default, as in squawk.

    ## Known false positives
    Patch releases.
    """
    for stmt in mig.statements:
        node = stmt.node
        if isinstance(node, ast.AlterExtensionStmt):
            yield violation(stmt, f"ALTER EXTENSION {node.extname} UPDATE can change what clients use")
        elif isinstance(node, ast.AlterExtensionContentsStmt) and node.action == -1:
            yield violation(stmt, f"an object leaves extension {node.extname}")
