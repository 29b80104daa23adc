"""SQL helpers on pglast (the PostgreSQL parser): parse, fingerprint, tables, statement kind.

Every function here tolerates text that does not parse (pg_stat_statements truncates
long texts at track_activity_query_size): it returns an empty answer, never raises.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Protocol

import pglast
from pglast import ast, keywords, visitors


@lru_cache(maxsize=4096)
def parse(query: str) -> tuple | None:
    """The parsed statements, or None when the text is not valid SQL."""
    try:
        return tuple(pglast.parse_sql(query))
    except Exception:  # pglast raises ParseError, and others on odd input
        return None


# Keywords that cannot stand as a bare column or table name. Unreserved keywords can.
_KEYWORDS_NEEDING_QUOTES = frozenset(
    keywords.RESERVED_KEYWORDS | keywords.TYPE_FUNC_NAME_KEYWORDS | keywords.COL_NAME_KEYWORDS
)
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


class Relation(Protocol):
    """What resolve_tables needs of a catalog table (snapshot.Table has it): this module
    depends on pglast alone, never on the snapshot model."""

    schema: str
    name: str


_TABLES_BY_NAME: list = [None, {}]  # (identity of the last tables list, its index by name)


def resolve_tables(query: str, tables: list[Relation], search_path: tuple[str, ...] = ("public",)) -> list[str]:
    """Schema-qualified names of the catalog tables a statement reads or writes."""
    # Checks call this once per statement with the same catalog: index it once, not per call.
    identity = (id(tables), len(tables), id(tables[0]) if tables else 0, id(tables[-1]) if tables else 0)
    if _TABLES_BY_NAME[0] != identity:
        by_name: dict[str, list[Relation]] = {}
        for t in tables:
            by_name.setdefault(t.name, []).append(t)
        _TABLES_BY_NAME[:] = [identity, by_name]
    by_name = _TABLES_BY_NAME[1]
    result = []
    for schema, name in referenced_relations(query):
        candidates = by_name.get(name, [])
        if schema:
            match = next((t for t in candidates if t.schema == schema), None)
        else:
            match = next((t for s in search_path for t in candidates if t.schema == s), None)
            match = match or (candidates[0] if len(candidates) == 1 else None)
        if match and f"{match.schema}.{match.name}" not in result:
            result.append(f"{match.schema}.{match.name}")
    return result


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


_TOP_STATEMENT = re.compile(r'\{"version":\d+,"stmts":\[\{"stmt":\{"(\w+)"')
_WITH_WORD = re.compile(r"\bwith\b", re.I)
_FOR_OR_INTO_WORD = re.compile(r"\b(?:for|into)\b", re.I)


@lru_cache(maxsize=16384)
def statement_kind(query: str) -> str:
    """'read' when the statement cannot write (SELECT, VALUES, TABLE, WITH without
    data-modifying CTEs, no FOR UPDATE/SELECT INTO), 'dml' for INSERT/UPDATE/DELETE/MERGE,
    'other' for utility statements, 'invalid' when it does not parse (e.g. truncated).
    Cached by text (several stages ask for every statement); the tree walks run only when
    the text holds the keyword they look for (WITH; FOR or INTO). Without them, the parser's
    JSON output names the statement's type: no Python tree is built (10,000 statements)."""
    with_word, for_or_into = _WITH_WORD.search(query) is not None, _FOR_OR_INTO_WORD.search(query) is not None
    if not (with_word or for_or_into):
        try:
            tree = pglast.parser.parse_sql_json(query)
        except Exception:  # does not parse
            return "invalid"
        top = _TOP_STATEMENT.match(tree)
        if top is None:
            return "invalid"  # nothing but comments or semicolons
        if len(pglast.parser.split(query)) != 1:
            return "other"
        kind = top.group(1)
        if kind == "SelectStmt":
            return "read"
        return "dml" if kind in ("InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt") else "other"
    stmts = parse(query)
    if not stmts:
        return "invalid"
    if len(stmts) != 1:
        return "other"
    stmt = stmts[0].stmt
    if isinstance(stmt, ast.SelectStmt):
        writes = (with_word and _has_modifying_cte(stmt)) or (for_or_into and _locks_rows(stmt))
        return "dml" if writes else "read"
    if isinstance(stmt, (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt)) or type(stmt).__name__ == "MergeStmt":
        return "dml"
    return "other"
