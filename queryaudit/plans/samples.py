"""Values that exist together: the placeholders of one table filled from one real row.

Values drawn column by column from pg_stats make pairs no row has (`city = 'city59' AND
zip = 'z905'`: 0 rows), and hide what matters: correlated columns, where the planner
multiplies selectivities and misestimates every real pair. So the equality, IN and LIKE
placeholders of each table, and those compared with an expression of its columns
(`substring(c_phone FROM 1 FOR 2) IN (...)`), take their values from rows sampled
from that table (TABLESAMPLE SYSTEM, a few rows, read-only, under a timeout). Ranges
keep the histogram (queryaudit.plans.params), where a single row would make an empty window.

Pure: builds the sampling statement and applies its rows; queryaudit.plans.stage runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pglast import ast
from pglast.enums.primnodes import BoolExprType
from pglast.parser import scan
from pglast.stream import RawStream

from queryaudit.plans.params import Binding, ParameterSlot
from queryaudit.snapshot import Snapshot
from queryaudit.sql import find_nodes, parse, quote_ident

SAMPLED_OPERATORS = {"=", "<>", "!=", "in", "like", "set"}
ROWS_WANTED = 2000  # rows the page sample aims at: enough for several distinct samples
SAMPLES = 3  # distinct rows per statement, when the budget allows one EXPLAIN ANALYZE each


@dataclass
class RowSample:
    """One table's sampling statement and the slots each of its outputs feeds."""

    table: str  # schema-qualified, as the snapshot names it
    alias: str | None
    outputs: list[str] = field(default_factory=list)  # SQL expressions, in select order
    slots: list[list[ParameterSlot]] = field(default_factory=list)

    def limit(self) -> int:
        return max(SAMPLES, *(len(s) + SAMPLES - 1 for s in self.slots))

    def sql(self, snapshot: Snapshot, exact: bool = False) -> str:
        """SELECT the outputs as text from a page sample of the table (`exact`: no
        sample, for small tables where a page sample may come back empty)."""
        table = snapshot.table(self.table)
        schema, name = (table.schema, table.name) if table else self.table.split(".", 1)
        source = f"{quote_ident(schema)}.{quote_ident(name)}"
        if self.alias:
            source += f" AS {quote_ident(self.alias)}"
        reltuples = table.reltuples if table else 0
        if not exact and reltuples > ROWS_WANTED:
            percent = max(0.01, min(100.0, 100.0 * ROWS_WANTED / reltuples))
            source += f" TABLESAMPLE SYSTEM ({percent:.4g})"
        outputs = ", ".join(f"({o})::text" for o in self.outputs)
        not_null = " AND ".join(f"({o}) IS NOT NULL" for o in self.outputs)
        return f"SELECT {outputs} FROM {source} WHERE {not_null} LIMIT {self.limit()}"


def _inline(expression: str, binding: Binding) -> str | None:
    """The expression with its own placeholders replaced by the values already bound."""
    values = {s.number: s for s in binding.slots}
    out, last = [], 0
    for tok in scan(expression):
        if tok.name != "PARAM":
            continue
        slot = values.get(int(expression[tok.start + 1 : tok.end + 1]))
        if slot is None or slot.value is None:
            return None
        literal = "'" + slot.value.replace("'", "''") + "'" + (f"::{slot.type}" if slot.type else "")
        out += [expression[last : tok.start], literal]
        last = tok.end + 1
    return "".join(out) + expression[last:]


def sample_requests(binding: Binding) -> list[RowSample]:
    """One request per table whose placeholders a sampled row can fill."""
    requests: list[RowSample] = []
    for slot in binding.slots:
        if slot.table is None or slot.operator not in SAMPLED_OPERATORS or slot.select_list_only:
            continue  # a select-list-only value chooses no rows: no row need carry it
        if slot.column is not None:
            output, alias = quote_ident(slot.column), None
        elif slot.expression is not None:
            output, alias = _inline(slot.expression, binding), slot.alias
            if output is None:
                continue
        else:
            continue
        # Bare columns read under any name of the table; an expression needs its own alias.
        request = next(
            (r for r in requests if r.table == slot.table and (alias is None or r.alias in (None, alias))), None
        )
        if request is None:
            request = RowSample(slot.table, alias)
            requests.append(request)
        request.alias = request.alias or alias
        if output in request.outputs:
            request.slots[request.outputs.index(output)].append(slot)
        else:
            request.outputs.append(output)
            request.slots.append([slot])
    return requests


@dataclass
class JoinSample(RowSample):
    """Placeholders on several joined tables: rows sampled from the statement's own join
    (its FROM list and the column = column conditions of its WHERE), so the values meet
    across the join (a city and a status some order of a customer of that city has)."""

    from_sql: str = ""
    join_sql: list[str] = field(default_factory=list)

    def sql(self, snapshot: Snapshot, exact: bool = False) -> str:
        outputs = ", ".join(f"({o})::text" for o in self.outputs)
        where = " AND ".join([*self.join_sql, *(f"({o}) IS NOT NULL" for o in self.outputs)])
        return f"SELECT {outputs} FROM {self.from_sql} WHERE {where} LIMIT {self.limit()}"


def _conjuncts(node) -> list:

    if isinstance(node, ast.BoolExpr) and node.boolop == BoolExprType.AND_EXPR:
        return [c for arg in node.args for c in _conjuncts(arg)]
    return [node] if node is not None else []


def join_request(query: str, binding: Binding) -> JoinSample | None:
    """One sample over the join when the sampled placeholders span several tables of a
    plain join (no subquery or function in FROM, no placeholder in its ON conditions)."""

    slots = [
        s
        for s in binding.slots
        if s.table and s.operator in SAMPLED_OPERATORS and (s.column or s.expression) and not s.select_list_only
    ]
    if len({s.table for s in slots}) < 2:
        return None
    stmts = parse(query)
    select = stmts[0].stmt if stmts and len(stmts) == 1 else None
    if not isinstance(select, ast.SelectStmt) or not select.fromClause or select.op != 0:
        return None
    items = list(select.fromClause)
    if find_nodes(tuple(items), (ast.RangeSubselect, ast.RangeFunction, ast.ParamRef, ast.SubLink)):
        return None
    try:
        from_sql = ", ".join(RawStream()(item) for item in items)
        joins = [
            RawStream()(c)
            for c in _conjuncts(select.whereClause)
            if isinstance(c, ast.A_Expr)
            and c.name
            and c.name[-1].sval == "="
            and isinstance(c.lexpr, ast.ColumnRef)
            and isinstance(c.rexpr, ast.ColumnRef)
        ]
    except Exception:  # a node RawStream cannot print: per-table samples instead
        return None
    request = JoinSample(table="(join)", alias=None, from_sql=from_sql, join_sql=joins)
    for slot in slots:
        if slot.column is not None:
            output = f"{quote_ident(slot.alias)}.{quote_ident(slot.column)}" if slot.alias else quote_ident(slot.column)
        else:
            output = _inline(slot.expression, binding)
            if output is None:
                continue
        if output in request.outputs:
            request.slots[request.outputs.index(output)].append(slot)
        else:
            request.outputs.append(output)
            request.slots.append([slot])
    return request


def apply_rows(request: RowSample, rows: list[tuple], pick: int = 0) -> bool:
    """Fill the slots from row `pick` (IN lists: that row and the next ones); False when
    there is no such row."""
    if pick >= len(rows):
        return False
    for index, slots in enumerate(request.slots):
        distinct = list(dict.fromkeys(row[index] for row in rows[pick:] + rows[:pick]))
        for rank, slot in enumerate(slots):
            slot.value = distinct[rank % len(distinct)]
            if isinstance(request, JoinSample):
                slot.source = f"a sampled row of the join ({len(request.outputs)} values that meet across it)"
            elif len(request.outputs) == 1:
                slot.source = "a sampled row"
            else:
                slot.source = f"a sampled row ({len(request.outputs)} values from the same row of {request.table})"
            slot.problem = None
    return True
