"""Which conditions of a misestimated scan can be estimated and counted alone (pure).

EXPLAIN prints a scan's conditions with the values bound (`Filter: ((city = 'paris'::text)
AND (zip = '75001'::text))`). Each top-level conjunct that reads only this table and
holds no placeholder or subplan result can run on its own: `SELECT count(*) FROM table
WHERE <conjunct>`. Join keys of a parameterized scan (`id = o.customer_id`) and
subplan results (`$0`) cannot: they are listed as untested.
"""

from __future__ import annotations

from pglast import ast, parse_sql
from pglast.enums.primnodes import BoolExprType
from pglast.stream import RawStream

from queryaudit.estimates.model import PredicateCount
from queryaudit.plans.model import PlanNode
from queryaudit.snapshot import Table
from queryaudit.sql import find_nodes, quote_ident

# Bitmap Heap Scan: its Recheck Cond repeats the index condition; both count once.
CONDITION_FIELDS = ("Index Cond", "Recheck Cond", "Filter")


def _conjuncts(node) -> list:
    if isinstance(node, ast.BoolExpr) and node.boolop == BoolExprType.AND_EXPR:
        return [c for arg in node.args for c in _conjuncts(arg)]
    return [node] if node is not None else []


def _strip(node):
    while isinstance(node, ast.TypeCast):
        node = node.arg
    return node


def _constant(node) -> bool:
    node = _strip(node)
    if isinstance(node, ast.A_Const):
        return True
    if isinstance(node, ast.A_ArrayExpr):
        return all(_constant(e) for e in node.elements or ())
    return isinstance(node, (tuple, list)) and all(_constant(e) for e in node)


def _plain(conjunct) -> bool:
    """A bare column compared with constants (`kind = 'new'`, `a = ANY ('{1,2}')`, `b IS NULL`)."""
    if isinstance(conjunct, ast.NullTest):
        return isinstance(_strip(conjunct.arg), ast.ColumnRef)
    if isinstance(conjunct, ast.A_Expr):
        sides = (conjunct.lexpr, conjunct.rexpr)
        return any(isinstance(_strip(s), ast.ColumnRef) for s in sides) and any(
            s is not None and _constant(s) for s in sides
        )
    return False


def testable(node: PlanNode, table: Table) -> tuple[list[PredicateCount], list[str]]:
    """The node's conditions that can run alone on `table`, and the others (as printed)."""
    names = {c.name for c in table.columns}
    qualifiers = {node.alias, node.raw.get("Relation Name"), table.name}
    tested: list[PredicateCount] = []
    untested: list[str] = []
    seen: set[str] = set()
    for name in CONDITION_FIELDS:
        text = node.raw.get(name)
        if not text:
            continue
        try:
            where = parse_sql(f"SELECT 1 WHERE {text}")[0].stmt.whereClause
        except Exception:  # `(hashed SubPlan 1)` and the like are not SQL
            untested.append(text)
            continue
        for conjunct in _conjuncts(where):
            try:
                sql = RawStream()(conjunct)
            except Exception:
                untested.append(text)
                continue
            if sql in seen:
                continue
            seen.add(sql)
            columns: list[str] = []
            ours = True
            for ref in find_nodes(conjunct, ast.ColumnRef):
                parts = [f.sval for f in ref.fields if isinstance(f, ast.String)]
                if (
                    len(parts) != len(ref.fields)
                    or parts[-1] not in names
                    or (len(parts) > 1 and parts[-2] not in qualifiers)
                ):
                    ours = False
                elif parts[-1] not in columns:
                    columns.append(parts[-1])
            if not ours or not columns or find_nodes(conjunct, (ast.ParamRef, ast.SubLink)):
                untested.append(sql)
                continue
            tested.append(PredicateCount(sql=sql, columns=columns, plain_column=_plain(conjunct) and len(columns) == 1))
    return tested, untested


def source(node: PlanNode, table: Table) -> str:
    """FROM for the experiment: the table under the name the plan's conditions use."""
    alias = node.alias or table.name
    return f"{quote_ident(table.schema)}.{quote_ident(table.name)} AS {quote_ident(alias)}"


def conjunction(predicates: list[PredicateCount]) -> str:
    return " AND ".join(f"({p.sql})" for p in predicates)
