"""SQL helpers on pglast (the PostgreSQL parser): parse, fingerprint, tables, statement kind.

Every function here tolerates text that does not parse (pg_stat_statements truncates
long texts at track_activity_query_size): it returns an empty answer, never raises.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING

import pglast
from pglast import ast, keywords, visitors

if TYPE_CHECKING:  # annotations only: review-migration imports this module and needs no snapshot model
    from queryaudit.snapshot import Table


@lru_cache(maxsize=4096)
def parse(query: str) -> tuple | None:
    """The parsed statements, or None when the text is not valid SQL."""
    try:
        return tuple(pglast.parse_sql(query))
    except Exception:  # pglast raises ParseError, and others on odd input
        return None


# Keywords that cannot stand as a bare column or table name. Unreserved keywords can.
_KEYWORDS_NEEDING_QUOTES = frozenset(
    keywords.RESERVED_KEYWORDS | keywords.TYPE_FUNC_NAME_KEYWORDS | keywords.COL_NAME_KEYWORDS)
_BARE_IDENT = re.compile(r"[a-z_][a-z0-9_$]*")


def quote_ident(name: str) -> str:
    """`name` as PostgreSQL's quote_ident() writes it: bare when it is a lower-case
    identifier and no keyword that needs quoting, else double-quoted (mixed case,
    spaces, reserved words such as "order" and "user")."""
    if _BARE_IDENT.fullmatch(name) and name not in _KEYWORDS_NEEDING_QUOTES:
        return name
    return '"' + name.replace('"', '""') + '"'


def quote_qualified(schema: str | None, name: str) -> str:
    """schema.name, each part quoted as needed; the schema is left out when None."""
    return f"{quote_ident(schema)}.{quote_ident(name)}" if schema else quote_ident(name)


def quote_table(qualified: str) -> str:
    """A snapshot's "schema.name" (Table.qualified_name, Index.table) quoted for SQL. The
    schema is what precedes the first dot: schema names with dots are not supported."""
    schema, dot, name = qualified.partition(".")
    return quote_qualified(schema, name) if dot else quote_ident(qualified)


def fingerprint(query: str) -> str | None:
    try:
        return pglast.fingerprint(query)
    except Exception:
        return None


def prettify(query: str) -> str:
    try:
        return pglast.prettify(query)
    except Exception:
        return query


class _RangeVars(visitors.Visitor):
    def __init__(self):
        self.found: list[tuple[str | None, str]] = []
        self.ctes: set[str] = set()

    def visit_CommonTableExpr(self, ancestors, node):
        self.ctes.add(node.ctename)

    def visit_RangeVar(self, ancestors, node):
        self.found.append((node.schemaname, node.relname))


def referenced_relations(query: str) -> list[tuple[str | None, str]]:
    """(schema or None, name) of every relation the statement names, CTE names excluded."""
    stmts = parse(query)
    if not stmts:
        return []
    v = _RangeVars()
    for stmt in stmts:
        v(stmt)
    seen, out = set(), []
    for schema, name in v.found:
        if schema is None and name in v.ctes:
            continue
        if (schema, name) not in seen:
            seen.add((schema, name))
            out.append((schema, name))
    return out


def resolve_tables(query: str, tables: list[Table], search_path: tuple[str, ...] = ("public",)) -> list[str]:
    """Schema-qualified names of the catalog tables a statement reads or writes (queryaudit.names
    resolves them: search_path, CTE names, quoted names)."""
    from queryaudit import names  # names reads pglast through this module

    return list(names.catalog_of(tables, search_path).resolve(query).base_tables)


READ_ONLY_STATEMENTS = (ast.SelectStmt,)


def find_nodes(node, types, stop_at=()) -> list:
    """Every node of `types` in the tree under `node` (itself included), parents first;
    the walk does not go below a node of `stop_at` (e.g. ast.SubLink: a subquery's own scope)."""

    class Collector(visitors.Visitor):
        def visit(self, ancestors, item):
            if isinstance(item, types):
                found.append(item)
            if stop_at and isinstance(item, stop_at):
                return visitors.Skip

    found: list = []
    Collector()(node)
    return found


def _has_modifying_cte(stmt) -> bool:
    return any(not isinstance(cte.ctequery, ast.SelectStmt) for cte in find_nodes(stmt, ast.CommonTableExpr))


def _locks_rows(stmt) -> bool:
    # SELECT ... FOR UPDATE locks rows; SELECT ... INTO creates a table.
    return bool(find_nodes(stmt, (ast.LockingClause, ast.IntoClause)))


def statement_kind(query: str) -> str:
    """'read' when the statement cannot write (SELECT, VALUES, TABLE, WITH without
    data-modifying CTEs, no FOR UPDATE/SELECT INTO), 'dml' for INSERT/UPDATE/DELETE/MERGE,
    'other' for utility statements, 'invalid' when it does not parse (e.g. truncated)."""
    stmts = parse(query)
    if not stmts:
        return "invalid"
    if len(stmts) != 1:
        return "other"
    stmt = stmts[0].stmt
    if isinstance(stmt, ast.SelectStmt):
        return "dml" if _has_modifying_cte(stmt) or _locks_rows(stmt) else "read"
    if isinstance(stmt, (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt)) or type(stmt).__name__ == "MergeStmt":
        return "dml"
    return "other"
