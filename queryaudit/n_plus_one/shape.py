"""The child of an N+1: is a statement a single-table lookup by equality, and its batched
form (`= ANY($1)`) and join with the parent, built on pglast's syntax tree."""

from __future__ import annotations

from dataclasses import dataclass

import pglast
from pglast import ast, enums

from queryaudit.sql import parse, quote_ident, quote_table

# -- the child: a single-table lookup by equality -------------------------------------------


@dataclass
class Lookup:
    schema: str | None
    table: str
    alias: str | None
    columns: list[str]  # the columns compared by equality (the key looked up)
    parameterised: list[str]  # those compared to a parameter or a constant that varies
    targets: list[str] | None  # selected column names; None for * or expressions
    has_limit: bool = False


def _column_name(node) -> str | None:
    if isinstance(node, ast.ColumnRef) and node.fields and isinstance(node.fields[-1], ast.String):
        return node.fields[-1].sval
    return None


def _equalities(node) -> list[ast.A_Expr] | None:
    """The equalities of a WHERE made only of `col = value` joined by AND, else None."""
    if isinstance(node, ast.BoolExpr) and node.boolop == enums.BoolExprType.AND_EXPR:
        out = []
        for arg in node.args:
            sub = _equalities(arg)
            if sub is None:
                return None
            out.extend(sub)
        return out
    if (
        isinstance(node, ast.A_Expr)
        and node.kind == enums.A_Expr_Kind.AEXPR_OP
        and len(node.name) == 1
        and node.name[0].sval == "="
    ):
        if _column_name(node.lexpr) and _is_value(node.rexpr):
            return [node]
        if _column_name(node.rexpr) and _is_value(node.lexpr):
            return [node]
    return None


def _is_value(node) -> bool:
    """A parameter, a constant, or a qualified PL/pgSQL variable (`r.id` in a FOR loop, which
    pg_stat_statements shows as written); the caller checks the qualifier is no table."""
    if isinstance(node, (ast.ParamRef, ast.A_Const)):
        return True
    if isinstance(node, ast.TypeCast):
        return _is_value(node.arg)
    return isinstance(node, ast.ColumnRef) and len(node.fields) == 2


def _single_select(query: str):
    stmts = parse(query)
    if not stmts or len(stmts) != 1:
        return None
    stmt = stmts[0].stmt
    if not isinstance(stmt, ast.SelectStmt) or stmt.op != enums.SetOperation.SETOP_NONE:
        return None
    return stmt


def lookup_shape(query: str) -> Lookup | None:
    """A SELECT from one table whose WHERE is only equalities `col = $n`: what an ORM's
    lazy load, or a per-row lookup in a loop, sends. None for anything else."""
    stmt = _single_select(query)
    if stmt is None or stmt.withClause or stmt.groupClause or stmt.havingClause or not stmt.fromClause:
        return None
    if len(stmt.fromClause) != 1 or not isinstance(stmt.fromClause[0], ast.RangeVar) or stmt.whereClause is None:
        return None
    equalities = _equalities(stmt.whereClause)
    if not equalities:
        return None
    rv = stmt.fromClause[0]
    own = {rv.relname, rv.alias.aliasname if rv.alias else rv.relname}
    columns, parameterised = [], []
    for eq in equalities:
        sides = [eq.lexpr, eq.rexpr]
        # `col = value`: the column is the side that belongs to the table (unqualified or ours).
        col_side = next(
            (x for x in sides if isinstance(x, ast.ColumnRef) and (len(x.fields) == 1 or x.fields[0].sval in own)), None
        )
        value_side = next((x for x in sides if x is not col_side), None)
        if col_side is None or isinstance(value_side, ast.ColumnRef) and value_side.fields[0].sval in own:
            return None  # a comparison of two columns of the table: not a lookup
        col = _column_name(col_side)
        columns.append(col)
        if (
            isinstance(eq.rexpr, ast.ParamRef)
            or isinstance(eq.lexpr, ast.ParamRef)
            or isinstance(eq.rexpr, ast.TypeCast)
            and isinstance(eq.rexpr.arg, ast.ParamRef)
        ):
            parameterised.append(col)
    targets: list[str] | None = []
    for t in stmt.targetList or ():
        name = _column_name(t.val) if isinstance(t, ast.ResTarget) else None
        if name is None or (isinstance(t.val, ast.ColumnRef) and isinstance(t.val.fields[-1], ast.A_Star)):
            targets = None
            break
        targets.append(t.name or name)
    return Lookup(
        rv.schemaname,
        rv.relname,
        rv.alias.aliasname if rv.alias else None,
        columns,
        parameterised or columns,
        targets,
        has_limit=stmt.limitCount is not None,
    )


def output_columns(query: str) -> list[str]:
    """Names of the plain columns a SELECT returns (aliases win); [] when unknown."""
    stmt = _single_select(query)
    out = []
    for t in (stmt.targetList or ()) if stmt is not None else ():
        name = t.name or _column_name(t.val) if isinstance(t, ast.ResTarget) else None
        if name:
            out.append(name)
    return out


# -- the fix: the batched form ----------------------------------------------------------------


def batched_rewrite(query: str, column: str) -> str | None:
    """`... WHERE col = $1` -> `... WHERE col = ANY($1)`, with col added to the select list so
    the rows can be matched back to their keys; None when the shape does not allow it."""
    if _single_select(query) is None:
        return None
    stmt = pglast.parse_sql(query)[0].stmt  # a fresh tree: the cached one (sql.parse) must not change
    if stmt.whereClause is None:
        return None
    equalities = _equalities(stmt.whereClause)
    if not equalities:
        return None
    target = next((e for e in equalities if (_column_name(e.lexpr) or _column_name(e.rexpr)) == column), None)
    if target is None:
        return None
    col_node, value = (target.lexpr, target.rexpr) if _column_name(target.lexpr) else (target.rexpr, target.lexpr)
    if isinstance(value, ast.ColumnRef):  # a PL/pgSQL loop variable: the fix is a join, not a list
        return None
    if isinstance(value, ast.TypeCast) and value.typeName is not None and not value.typeName.arrayBounds:
        # $1::integer compares one value; the batch is an array of them.
        value.typeName.arrayBounds = (ast.Integer(ival=-1),)
    replacement = ast.A_Expr(
        kind=enums.A_Expr_Kind.AEXPR_OP_ANY, name=(ast.String(sval="="),), lexpr=col_node, rexpr=value
    )
    if stmt.whereClause is target:
        stmt.whereClause = replacement
    else:
        stmt.whereClause.args = tuple(replacement if a is target else a for a in stmt.whereClause.args)
    # A LIMIT 1 per key cannot survive batching (it would limit the whole batch).
    stmt.limitCount = None
    names = [(_column_name(t.val) if isinstance(t, ast.ResTarget) else None) for t in stmt.targetList or ()]
    star = any(
        isinstance(t.val, ast.ColumnRef) and isinstance(t.val.fields[-1], ast.A_Star) for t in stmt.targetList or ()
    )
    if column not in names and not star:
        stmt.targetList = tuple(stmt.targetList or ()) + (ast.ResTarget(val=col_node),)
    try:
        from pglast.stream import RawStream  # deferred: pglast's printers cost start-up in every captured app

        return RawStream()(stmt)
    except Exception:
        return None


def join_rewrite(
    parent_query: str, parent_column: str, child: Lookup, child_table: str, child_column: str
) -> str | None:
    """The parent and its children in one statement: the parent as a subquery, LEFT JOIN
    the child table on the looked-up key. Validated by parsing it back."""
    parent = parent_query.strip().rstrip(";")
    if _single_select(parent) is None:
        return None
    cols = ", ".join(f"c.{quote_ident(c)}" for c in child.targets) if child.targets else "c.*"
    text = (
        f"SELECT p.*, {cols} FROM ({parent}) AS p "
        f"LEFT JOIN {quote_table(child_table)} AS c "
        f"ON c.{quote_ident(child_column)} = p.{quote_ident(parent_column)}"
    )
    try:
        pglast.parse_sql(text)
        return pglast.prettify(text)
    except Exception:
        return None
