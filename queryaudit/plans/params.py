"""Realistic values for the $n placeholders of a normalized statement.

pg_stat_statements keeps `WHERE customer_id = $1`, never the value. To EXPLAIN ANALYZE
such a statement we need one: the column each $n is compared with comes from the
statement's parse tree (pglast), aliases resolved to the catalog tables of the
snapshot, and the value from that column's pg_stats (the most common value for
equality, a histogram bound for ranges). LIMIT $n takes the statement's rows per
call. A placeholder with no column (OFFSET, a function argument) has no realistic
value: the caller falls back to the generic plan and says which one stopped it.

Pure: reads the statement text and the snapshot; the parameter types come from the
server (queryaudit.plans.explain.parameter_types) and are passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pglast import ast, visitors
from pglast.enums.parsenodes import A_Expr_Kind
from pglast.stream import RawStream

from queryaudit import names
from queryaudit.plans.plannable import Plannable
from queryaudit.snapshot import ColumnStats, Snapshot, Statement, Table
from queryaudit.sql import find_nodes, parse

# Where in the histogram a range predicate's value is drawn: `col > $1` keeps the top
# tenth of the rows, `col < $1` the bottom tenth, BETWEEN a tenth in the middle.
RANGE_POSITIONS = {"<": 0.1, "<=": 0.1, ">": 0.9, ">=": 0.9, "between-low": 0.45, "between-high": 0.55}
_ARITHMETIC = {"+", "-", "*", "/", "%", "^", "||"}  # `$1 - l_discount` compares nothing
_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}


@dataclass
class ParameterSlot:
    """What one $n is: the column it meets, how, and the value drawn for it."""

    number: int
    type: str | None = None
    table: str | None = None  # schema-qualified
    column: str | None = None
    operator: str | None = None  # =, <, >, in, any, like, between-low, between-high, set, limit, offset, coalesce
    value: str | None = None
    source: str | None = None  # most_common_vals | histogram_bounds | rows_per_call
    problem: str | None = None  # why no value, when none
    expression: str | None = None  # the expression compared, when not a bare column (SQL, for sampling)
    alias: str | None = None  # the name the column or expression uses for its table
    select_list_only: bool = False  # appears only in the top select list: its value chooses no rows


@dataclass
class Binding:
    slots: list[ParameterSlot] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return all(s.value is not None for s in self.slots)

    @property
    def values(self) -> list[str | None]:
        return [s.value for s in self.slots]

    def describe(self) -> str:
        """parameter_source for the report: where each value came from, or what stopped it."""
        if not self.slots:
            return "no parameters"
        parts = []
        for s in self.slots:
            where = f"{s.table}.{s.column}" if s.column else (s.expression or s.operator or "?")
            if s.value is not None:
                parts.append(f"${s.number} {where} from {s.source}")
            else:
                parts.append(f"${s.number} {where}: {s.problem}")
        return "; ".join(parts)

    def missing(self) -> list[ParameterSlot]:
        return [s for s in self.slots if s.value is None]


def _param_number(node) -> int | None:
    while isinstance(node, ast.TypeCast):
        node = node.arg
    return node.number if isinstance(node, ast.ParamRef) else None


def _anchor(node) -> tuple[int | None, list[int]]:
    """The placeholder a column is compared with through arithmetic, and the others.

    `l_shipdate <= $1::date - $2::interval`, `l_quantity <= $7 + $8`: the left-most
    placeholder of a sum takes the column's value, the rest are offsets (bound to a
    neutral value: 0, or one unit of an interval)."""
    if (n := _param_number(node)) is not None:
        return n, []
    if (
        isinstance(node, ast.A_Expr)
        and node.kind == A_Expr_Kind.AEXPR_OP
        and node.name
        and node.name[-1].sval in ("+", "-")
    ):
        anchor, others = _anchor(node.lexpr)
        right, more = _anchor(node.rexpr)
        if anchor is None:
            return None, []
        return anchor, others + ([right] if right is not None else []) + more
    return None, []


def _column(node) -> tuple[str | None, str] | None:
    while isinstance(node, ast.TypeCast):
        node = node.arg
    if isinstance(node, ast.ColumnRef):
        names = [f.sval for f in node.fields if isinstance(f, ast.String)]
        if names and len(names) == len(node.fields):
            return (names[-2] if len(names) > 1 else None, names[-1])
    return None


class _Finder(visitors.Visitor):
    """Collects (param number, column ref, operator) and the relations with their aliases."""

    def __init__(self):
        self.uses: list[tuple[int, tuple[str | None, str] | None, str]] = []
        # (param number, operator, expression SQL, the column references in it with their offsets)
        self.expression_uses: list[tuple[int, str, str, list[tuple[str | None, str, int]]]] = []
        self.relations: list[tuple[str | None, str, str]] = []  # schema, name, alias-or-name

    def visit_RangeVar(self, ancestors, node):
        alias = node.alias.aliasname if node.alias else node.relname
        self.relations.append((node.schemaname, node.relname, alias))

    def visit_A_Expr(self, ancestors, node):
        op = node.name[-1].sval if node.name else None
        kind = node.kind
        if kind in (A_Expr_Kind.AEXPR_IN,) and isinstance(node.rexpr, (tuple, list)):
            col = _column(node.lexpr)
            for item in node.rexpr:
                if (n := _param_number(item)) is not None:
                    self.uses.append((n, col, "in"))
                    if col is None:
                        self._expression(n, "in", node.lexpr)
        elif kind == A_Expr_Kind.AEXPR_BETWEEN and isinstance(node.rexpr, (tuple, list)) and len(node.rexpr) == 2:
            col = _column(node.lexpr)
            for item, where in zip(node.rexpr, ("between-low", "between-high"), strict=True):
                n, offsets = _anchor(item)
                if n is not None:
                    self.uses.append((n, col, where))
                self.uses.extend((m, None, "offset-term") for m in offsets)
        elif (
            kind in (A_Expr_Kind.AEXPR_OP, A_Expr_Kind.AEXPR_OP_ANY, A_Expr_Kind.AEXPR_LIKE, A_Expr_Kind.AEXPR_ILIKE)
            and op not in _ARITHMETIC
        ):
            for param_side, col_side, flip in ((node.rexpr, node.lexpr, False), (node.lexpr, node.rexpr, True)):
                n, offsets = _anchor(param_side)
                col = _column(col_side)
                if (
                    n is not None
                    and col is None
                    and not flip
                    and op in ("=", "<>", "!=")
                    and kind == A_Expr_Kind.AEXPR_OP
                ):
                    self._expression(n, "=", col_side)
                if n is None or col is None:
                    continue
                self.uses.extend((m, None, "offset-term") for m in offsets)
                if kind == A_Expr_Kind.AEXPR_OP_ANY:
                    operator = "any"
                elif kind in (A_Expr_Kind.AEXPR_LIKE, A_Expr_Kind.AEXPR_ILIKE):
                    operator = "like"
                else:
                    operator = _FLIPPED.get(op, op) if flip else op
                self.uses.append((n, col, operator))

    def _expression(self, number: int, operator: str, node) -> None:
        """`substring(c_phone FROM 1 FOR 2) IN ($5, ...)`: a value comes from evaluating
        the expression on a sampled row of its table."""

        columns = find_nodes(node, ast.ColumnRef)
        refs = [(*ref, c.location) if (ref := _column(c)) else None for c in columns]
        if (
            not refs
            or None in refs
            or find_nodes(node, ast.SubLink)
            or any(call.over for call in find_nodes(node, ast.FuncCall))
        ):
            return  # a subquery or a window: not something one row can evaluate
        try:
            text = RawStream()(node)
        except Exception:
            return
        self.expression_uses.append((number, operator, text, refs))

    def visit_CoalesceExpr(self, ancestors, node):
        """`COALESCE(c_last_name, $1)`: the placeholder stands in for the column's value
        where it is NULL, so a value of that column fits (its type, its domain)."""
        args = list(node.args or ())
        column = next((c for a in args if (c := _column(a)) is not None), None)
        if column is None:
            return
        for arg in args:
            if (n := _param_number(arg)) is not None:
                self.uses.append((n, column, "coalesce"))

    def visit_SelectStmt(self, ancestors, node):
        if (n := _param_number(node.limitCount)) is not None:
            self.uses.append((n, None, "limit"))
        if (n := _param_number(node.limitOffset)) is not None:
            self.uses.append((n, None, "offset"))

    def visit_UpdateStmt(self, ancestors, node):
        for target in node.targetList or ():
            if isinstance(target, ast.ResTarget) and (n := _param_number(target.val)) is not None:
                self.uses.append(
                    (
                        n,
                        (node.relation.alias.aliasname if node.relation.alias else node.relation.relname, target.name),
                        "set",
                    )
                )


class _Resolver:
    """Qualifier or bare column name -> (schema-qualified table, column): queryaudit.names
    resolves the statement (aliases, CTEs, subqueries, views, search_path, quoted names)."""

    def __init__(
        self,
        relations: list[tuple[str | None, str, str]],
        tables: list[Table],
        query: str | None = None,
        search_path: tuple[str, ...] = names.DEFAULT_SEARCH_PATH,
    ):
        catalog = names.catalog_of(tables, search_path)
        self.resolution = catalog.resolve(query) if query is not None else None
        self.catalog = catalog
        self.aliases: dict[str, str | None] = dict(self.resolution.aliases) if self.resolution else {}
        for schema, name, alias in relations:  # no text: the relations alone, one flat scope
            relation = catalog.find(schema, name)
            if relation and alias not in self.aliases:
                self.aliases[alias] = relation.qualified_name

    def resolve_at(self, ref: tuple[str | None, str, int]) -> tuple[str, str] | None:
        """A reference by its place in the text first: `ca_zip` may mean a base column in one
        scope and a subquery's output in another (`SELECT substr(ca_zip, 1, 5) ca_zip ...`)."""
        found = self.resolution.column_at(ref[2]) if self.resolution is not None else None
        return found or self.resolve(ref[:2])

    def resolve(self, ref: tuple[str | None, str]) -> tuple[str, str] | None:
        qualifier, column = ref
        if self.resolution is not None and (found := self.resolution.written(qualifier, column)):
            return found
        if not qualifier:
            return None
        # A name not written as such (UPDATE t SET col = $1 reads as t.col): the alias's table.
        table = self.aliases.get(qualifier)
        relation = self.catalog.table(table) if table else None
        return (table, column) if relation and column in relation.columns else None


def find_slots(query: str, tables: list[Table], nparams: int) -> list[ParameterSlot]:
    """Each $1..$nparams with the column it is compared with (no values yet)."""
    slots = [ParameterSlot(number=i) for i in range(1, nparams + 1)]
    stmts = parse(query)
    if not stmts:
        for s in slots:
            s.problem = "the statement text does not parse"
        return slots
    finder = _Finder()
    for stmt in stmts:
        finder(stmt.stmt)
    resolver = _Resolver(finder.relations, tables, query)
    for number, ref, operator in finder.uses:
        if not 1 <= number <= nparams:
            continue
        slot = slots[number - 1]
        if slot.operator is not None and slot.column is not None:
            continue  # the first comparison with a column wins
        slot.operator = operator
        if ref is not None:
            resolved = resolver.resolve(ref)
            if resolved:
                slot.table, slot.column = resolved
                slot.alias = ref[0]  # the name the statement gives the table (a join sample selects through it)
            else:
                slot.problem = f"column {'.'.join(p for p in ref if p)} not found in the catalog"
    for number in _select_list_only(stmts):
        if 1 <= number <= nparams:
            slots[number - 1].select_list_only = True
    for number, operator, text, refs in finder.expression_uses:
        slot = slots[number - 1] if 1 <= number <= nparams else None
        if slot is None or slot.column is not None:
            continue
        owners = {found[0] if (found := resolver.resolve_at(ref)) else None for ref in refs}
        qualifiers = {q for q, _, _ in refs if q}
        if len(owners) == 1 and None not in owners and len(qualifiers) <= 1:
            slot.table, slot.expression, slot.operator, slot.problem = owners.pop(), text, operator, None
            slot.alias = qualifiers.pop() if qualifiers else None
    for s in slots:
        if s.operator is None and s.problem is None:
            s.problem = "not compared with a column"
    return slots


def _select_list_only(stmts) -> set[int]:
    """Placeholders that appear only as outputs of a select list, of the statement or of
    any subquery, CTE or UNION branch in it (outside a subquery of that list):
    `sum(CASE WHEN nation = $1 THEN volume ELSE 0 END)`, `SELECT $13 AS channel ... UNION
    ALL ...` compute an output, they choose no rows, so any value gives the same plan."""

    listed: set[int] = set()  # id() of each ParamRef that sits in a select list
    compared: set[int] = set()  # ... of a subquery whose output a condition compares (`x IN (SELECT $1 ...)`)
    for raw in stmts:
        for select in find_nodes(raw.stmt, ast.SelectStmt):
            for target in select.targetList or ():
                listed |= {id(p) for p in find_nodes(target, ast.ParamRef, stop_at=ast.SubLink)}
            for clause in (select.whereClause, select.havingClause):
                for link in find_nodes(clause, ast.SubLink) if clause is not None else ():
                    compared |= {id(p) for p in find_nodes(link, ast.ParamRef)}
    listed -= compared
    shown, elsewhere = set(), set()
    for raw in stmts:
        for param in find_nodes(raw.stmt, ast.ParamRef):
            (shown if id(param) in listed else elsewhere).add(param.number)
    return shown - elsewhere


def _sort_key(value: str):
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def _histogram_value(stats: ColumnStats, position: float) -> str | None:
    """The value at `position` (0..1) of the column's distribution: from the histogram,
    else from the most common values in value order (a column whose every value is
    common has no histogram)."""
    bounds = [b for b in (stats.histogram_bounds or []) if b is not None]
    if not bounds:
        bounds = sorted((v for v in (stats.most_common_vals or []) if v is not None), key=_sort_key)
    if not bounds:
        return None
    return bounds[min(len(bounds) - 1, max(0, round(position * (len(bounds) - 1))))]


def _common_value(stats: ColumnStats, rank: int = 0) -> tuple[str, str] | None:
    values = [v for v in (stats.most_common_vals or []) if v is not None]
    if values:
        return values[rank % len(values)], "most_common_vals"
    middle = _histogram_value(stats, 0.5)
    return (middle, "histogram_bounds") if middle is not None else None


def _array_literal(values: list[str]) -> str:
    quoted = ['"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values]
    return "{" + ",".join(quoted) + "}"


_NUMERIC_TYPES = {"smallint", "integer", "bigint", "numeric", "real", "double precision"}
_LOWER = {">", ">="}
_UPPER = {"<", "<="}


def _no_column_value(slot: ParameterSlot, default: str | None, unit: str | None) -> tuple[str, str] | None:
    """A value for a placeholder no column stands behind, when one is harmless to the plan."""
    typ = (slot.type or "").lower()
    if default is not None:
        return default, "the function's usual field (pg_stat_statements keeps none)"
    if slot.operator == "offset":
        return "0", "OFFSET 0, the first page"
    if typ == "interval":
        return ("1" if unit else "1 day"), "one unit of the interval (pg_stat_statements keeps no value)"
    if slot.operator == "offset-term" and typ in _NUMERIC_TYPES:
        return "0", "a neutral offset (the column's value is drawn for the other term)"
    if typ in _NUMERIC_TYPES:
        return "1", "1, a neutral factor or argument (no column to draw from)"
    return _select_list_value(slot)


_ANY_VALUE = "any value: only in the select list, it chooses no rows"


def _select_list_value(slot: ParameterSlot) -> tuple[str, str] | None:
    if slot.select_list_only and (
        (slot.type or "").lower() in ("text", "bpchar", "character", "character varying", "boolean")
    ):
        return ("true" if slot.type.lower() == "boolean" else ""), _ANY_VALUE
    return None


def draw_values(
    slots: list[ParameterSlot],
    snapshot: Snapshot,
    statement: Statement | None = None,
    plannable: Plannable | None = None,
) -> Binding:
    """Fill each slot's value from pg_stats (or the statement's rows per call for LIMIT)."""
    ranks: dict[tuple[str | None, str | None], int] = {}
    # `col >= $1 AND col < $2`: a window in the middle of the distribution, as BETWEEN,
    # rather than two bounds that exclude each other.
    bounded = {
        (s.table, s.column, "low" if s.operator in _LOWER else "high")
        for s in slots
        if s.column and s.operator in _LOWER | _UPPER
    }
    for slot in slots:
        extra = plannable.slot(slot.number) if plannable else None
        if slot.operator == "limit":
            if statement is not None and statement.calls:
                slot.value, slot.source = str(max(1, round(statement.rows / statement.calls))), "rows_per_call"
            else:
                slot.problem = "LIMIT with no rows per call to go by"
            continue
        if slot.column is None:
            drawn = _no_column_value(slot, extra.default if extra else None, extra.unit if extra else None)
            if drawn is not None:
                slot.value, slot.source = drawn
                slot.problem = None
            elif slot.operator == "offset":
                slot.problem = "OFFSET: no column to draw a value from"
            elif slot.expression:
                slot.problem = f"compared with {slot.expression}: needs a sampled row of {slot.table}"
            continue
        stats = snapshot.stats_for(slot.table, slot.column)
        if slot.select_list_only:
            # `CASE WHEN nation = $1` where names resolves nation to a column: the value
            # chooses no rows, so it must not take the column's first common value (nor a
            # sampled row) from the placeholders that filter on that column.
            drawn = _select_list_value(slot) or (_common_value(stats) if stats else None)
            if drawn is not None:
                slot.value, slot.source = drawn[0], _ANY_VALUE
                slot.problem = None
                continue
        if stats is None:
            slot.problem = "no pg_stats for the column (never analyzed?)"
            continue
        key = (slot.table, slot.column)
        if slot.operator in RANGE_POSITIONS:
            position = RANGE_POSITIONS[slot.operator]
            if {(slot.table, slot.column, "low"), (slot.table, slot.column, "high")} <= bounded:
                position = RANGE_POSITIONS["between-low" if slot.operator in _LOWER else "between-high"]
            value = _histogram_value(stats, position)
            drawn = (value, "histogram_bounds") if value is not None else _common_value(stats)
        elif slot.operator == "any":
            values = [v for v in (stats.most_common_vals or []) if v is not None][:3]
            drawn = (_array_literal(values), "most_common_vals") if values else None
        else:
            # Equality, IN lists, LIKE, SET: the most common values, a different one for
            # each placeholder on the same column (IN ($1, $2) should not repeat itself).
            drawn = _common_value(stats, ranks.get(key, 0))
            ranks[key] = ranks.get(key, 0) + 1
        if drawn is None:
            slot.problem = "pg_stats has no common values or histogram for the column"
        else:
            slot.value, slot.source = drawn
    if plannable is not None:
        for slot in slots:
            if slot.value is not None:
                slot.value = plannable.bind(slot.number, slot.value)
    return Binding(slots)


def infer_parameters(
    query: str,
    snapshot: Snapshot,
    types: list[str],
    statement: Statement | None = None,
    plannable: Plannable | None = None,
) -> Binding:
    """The binding for a statement: types from the server, columns from the parse tree,
    values from pg_stats. `Binding.complete` says whether EXPLAIN ANALYZE can use it.
    `query` is the plannable text (queryaudit.plans.plannable) when `plannable` is given."""
    slots = find_slots(query, snapshot.tables, len(types))
    for slot, typ in zip(slots, types, strict=True):
        slot.type = typ
    return draw_values(slots, snapshot, statement, plannable)
