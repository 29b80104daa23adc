"""Index candidates from the SQL (pglast) and from captured plans: pure, no database.

A statement is reduced to what an index can serve, per table: equality-like predicates
(=, IN, = ANY, IS NULL, join keys), range predicates (<, >, BETWEEN), ORDER BY and GROUP
BY columns, the columns it reads, and constant predicates (partial-index material).
Candidates follow the B-tree rule: equality columns first (any order serves the
statement; the most selective first lets others share the index), then either one
range column or the sort columns, never both, since a range column before a sort
column breaks the order. Every candidate is verified later (HypoPG or for real); this
module only proposes. Which table and column a name means is queryaudit.names' answer;
a statement whose names do not all resolve is reported with the reason (StatementUses).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import pglast
from pglast import ast, enums
from pglast.stream import RawStream

from queryaudit import names
from queryaudit.snapshot import Index, Snapshot, Table
from queryaudit.sql import find_nodes, parse, quote_ident, quote_qualified

MAX_EQUALITY_COLUMNS = 4
MAX_KEY_COLUMNS = 5
MAX_INCLUDE_COLUMNS = 3
# A constant predicate keeping at most this fraction of the rows makes a partial index.
PARTIAL_MAX_FRACTION = 0.2
# Plan-derived: a scan that throws away at least this fraction of what it reads.
PLAN_FILTER_MIN_REMOVED = 0.9
MIN_TABLE_ROWS = 1000  # below this a sequential scan is as cheap as any index

_RANGE_OPS = {"<", ">", "<=", ">="}


def _column_refs(node) -> list:
    """Column references of an expression, not descending into subqueries (own scope)."""
    return find_nodes(node, ast.ColumnRef, stop_at=ast.SubLink)


@dataclass
class Predicate:
    column: str  # a column name, or an expression's text for expression indexes
    kind: str  # eq | in | null | join | range
    expression: bool = False
    constant: str | None = None  # the predicate's text when it compares with a literal


@dataclass
class TableUse:
    """What one statement asks of one table."""

    table: str
    predicates: list[Predicate] = field(default_factory=list)
    sort: list[str] = field(default_factory=list)
    descending: set[str] = field(default_factory=set)  # sort columns an index must store DESC (mixed directions)
    group: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)  # constant predicates: IS NULL, bare booleans, col = 'x'
    referenced: set[str] | None = field(default_factory=set)  # None: every column (SELECT *)
    sources: set[str] = field(default_factory=set)


@dataclass
class StatementUses:
    """What one statement asks of each table it reads."""

    tables: list[TableUse]
    unresolved: str | None = None  # why some names were not resolved: candidates may be missing


@dataclass
class Candidate:
    table: str
    columns: tuple[str, ...]
    include: tuple[str, ...] = ()
    predicate: str | None = None
    equality_prefix: int = 0  # the first n columns are equality columns: their order is free
    reasons: set[str] = field(default_factory=set)
    queryids: set[str] = field(default_factory=set)
    descending: tuple[str, ...] = ()  # key columns stored DESC
    expressions: tuple[str, ...] = ()  # the entries of `columns` that are expressions, not column names

    @property
    def key(self) -> tuple:
        return (self.table, self.columns, self.include, self.predicate, self.descending)

    def key_sql(self, column: str) -> str:
        return key_sql(column, column in self.expressions)


def key_sql(column: str, expression: bool = False) -> str:
    """A key for CREATE INDEX: a column name quoted as PostgreSQL's quote_ident() would
    ("authorId", "order"), an expression in parentheses."""
    return f"({column})" if expression else quote_ident(column)


_PREDICATE = re.compile(r'^(NOT )?("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)( IS (NOT )?NULL| = (.+))?$', re.S)


def _predicate_parts(predicate: str):
    """(match, column name) of a constant predicate written by this module, or (None, None)."""
    m = _PREDICATE.match(predicate)
    if not m:
        return None, None
    column = m.group(2)
    return m, (column[1:-1].replace('""', '"') if column.startswith('"') else column)


# -- SQL ------------------------------------------------------------------------------


class _Extractor:
    """Walks pglast's tree for what an index can serve; which table and column each name
    means is queryaudit.names' answer for the node's location, one Resolution per text. A
    location with no answer there (sqlglot read the text differently, or not at all) is
    kept in `missed`: the statement is reported unresolved, not quietly given less."""

    def __init__(self, snapshot: Snapshot, source: str, query: str):
        self.source = source
        self.query = query
        self.uses: dict[str, TableUse] = {}
        self.resolution = names.catalog_for(snapshot).resolve(query)
        self.missed: list[int] = []

    def unresolved(self) -> str | None:
        """Why not every name of the statement is known; None when every one is."""
        if self.resolution.unresolved or not self.missed:
            return self.resolution.unresolved
        at = self.missed[0]
        first = self.query[at:].split()[0]
        return f"no resolution for {len(self.missed)} name(s) pglast reads, first {first!r} at character {at}"

    def use(self, table: str) -> TableUse:
        if table not in self.uses:
            self.uses[table] = TableUse(table)
        self.uses[table].sources.add(self.source)
        return self.uses[table]

    def column(self, ref: ast.ColumnRef) -> tuple[str, str] | None:
        """(table, column) of a column reference, None for anything else (a CTE's computed
        column, an ambiguous name) and where names has no answer (kept in `missed`)."""
        if any(isinstance(f, ast.A_Star) for f in ref.fields):
            return None
        found = self.resolution.reference_at(ref.location)
        if found is None:
            self.missed.append(ref.location)
            return None
        return (found.table, found.column) if found.table and found.column else None

    def star(self, ref: ast.ColumnRef) -> None:
        """`*` or `t.*`: every column of the tables it covers is read."""
        tables = self.resolution.stars.get(ref.location)
        if tables is None:
            self.missed.append(ref.location)
        for t in tables or ():
            self.use(t).referenced = None

    def columns_in(self, node) -> list[tuple[str, str]]:
        return [self.column(r) or ("?", "?") for r in _column_refs(node)]

    # statements
    def statement(self, node) -> None:
        if isinstance(node, ast.SelectStmt):
            self.select(node)
        elif isinstance(node, (ast.UpdateStmt, ast.DeleteStmt)):
            self.add_range(node.relation)
            for item in getattr(node, "fromClause", None) or getattr(node, "usingClause", None) or ():
                self.from_item(item)
            if node.whereClause is not None:
                self.where(node.whereClause)
            if getattr(node, "withClause", None):
                for cte in node.withClause.ctes:
                    self.statement(cte.ctequery)

    def select(self, node: ast.SelectStmt) -> None:
        if node.withClause:
            for cte in node.withClause.ctes:
                self.statement(cte.ctequery)
        if node.larg is not None or node.rarg is not None:
            for arm in (node.larg, node.rarg):
                if arm is not None:
                    self.select(arm)
            return
        for item in node.fromClause or ():
            self.from_item(item)
        for target in node.targetList or ():
            self.reference(target)
        if node.whereClause is not None:
            self.where(node.whereClause)
        if node.havingClause is not None:
            self.sublinks(node.havingClause)
        if node.sortClause:
            self.order(node.sortClause, "sort", node.targetList)
        if node.groupClause:
            self.order(node.groupClause, "group", node.targetList)

    def add_range(self, rv: ast.RangeVar) -> None:
        if rv.location not in self.resolution.relations:
            self.missed.append(rv.location)
        elif table := self.resolution.relations[rv.location]:  # None for a CTE name
            self.use(table)

    def from_item(self, item) -> None:
        if isinstance(item, ast.RangeVar):
            self.add_range(item)
        elif isinstance(item, ast.JoinExpr):
            self.from_item(item.larg)
            self.from_item(item.rarg)
            if item.quals is not None:
                self.where(item.quals)
            if item.usingClause and isinstance(item.rarg, ast.RangeVar):
                self.join_using(item.rarg.location)
        elif isinstance(item, ast.RangeSubselect) and item.subquery is not None:
            self.statement(item.subquery)

    def join_using(self, at: int) -> None:
        """JOIN ... USING (x): a join key on both sides, as ON a.x = b.x."""
        if at not in self.resolution.using:
            self.missed.append(at)
        for pair in self.resolution.using.get(at, ()):
            for table, column in pair if pair[0] and pair[1] and pair[0][0] != pair[1][0] else ():
                use = self.use(table)
                use.predicates.append(Predicate(column, "join"))
                if use.referenced is not None:
                    use.referenced.add(column)

    def reference(self, node) -> None:
        for r in _column_refs(node):
            if any(isinstance(f, ast.A_Star) for f in r.fields):
                self.star(r)
            elif resolved := self.column(r):
                use = self.use(resolved[0])
                if use.referenced is not None:
                    use.referenced.add(resolved[1])
        self.sublinks(node)

    def sublinks(self, node) -> None:
        for sub in find_nodes(node, ast.SubLink, stop_at=ast.SubLink):
            if sub.subselect is not None:
                self.statement(sub.subselect)

    def order(self, items, kind: str, targets=None) -> None:
        columns: list[tuple[str, str]] = []
        desc: list[bool] = []
        for item in items:
            expr = _output_column(item.node if isinstance(item, ast.SortBy) else item, targets, self.resolution, kind)
            if isinstance(expr, ast.ColumnRef):
                resolved = self.column(expr)
                if not resolved:
                    return
                columns.append(resolved)
            else:
                return  # ordering by an expression: leave it
            if isinstance(item, ast.SortBy) and item.sortby_nulls != enums.SortByNulls.SORTBY_NULLS_DEFAULT:
                return  # explicit NULLS FIRST/LAST: not modelled
            desc.append(isinstance(item, ast.SortBy) and item.sortby_dir == enums.SortByDir.SORTBY_DESC)
        tables = {t for t, _ in columns}
        if len(tables) != 1:
            return
        use = self.use(tables.pop())
        target = use.sort if kind == "sort" else use.group
        if not target:
            target.extend(c for _, c in columns)
            if kind == "sort" and len(set(desc)) > 1:
                # Mixed directions: a B-tree scanned forwards or backwards gives one of two
                # orders, so the index stores the columns that differ from the first one DESC.
                use.descending = {c for (_, c), d in zip(columns, desc, strict=True) if d != desc[0]}
        for _, c in columns:
            if use.referenced is not None:
                use.referenced.add(c)

    def where(self, node) -> None:
        for conjunct in _conjuncts(node):
            for factor in _or_factors(conjunct):
                self.conjunct(factor)
            self.conjunct(conjunct)
            self.reference(conjunct)

    def _side(self, node) -> tuple[str, str, bool] | None:
        """(table, column or expression, is_expression) when node reads one table's columns."""
        while isinstance(node, ast.TypeCast):  # col::type compares like col for our purpose
            node = node.arg
        if isinstance(node, ast.ColumnRef):
            resolved = self.column(node)
            return (resolved[0], resolved[1], False) if resolved else None
        if isinstance(node, (ast.FuncCall, ast.A_Expr, ast.CoalesceExpr)):
            cols = self.columns_in(node)
            tables = {t for t, _ in cols}
            if cols and len(tables) == 1 and "?" not in tables and not _has_sublink(node) and not _has_param(node):
                return cols[0][0], _deparse_unqualified(node), True
        return None

    def _is_value(self, node, table: str) -> bool:
        """A parameter, a constant or an expression not reading `table` (outer column, now())."""
        if _has_sublink(node):
            return False
        return (
            all(t not in ("?", table) for t, _ in self.columns_in(node))
            if not isinstance(node, (ast.A_Const, ast.ParamRef))
            else True
        )

    def conjunct(self, node) -> None:
        if isinstance(node, ast.NullTest):
            side = self._side(node.arg)
            if side:
                table, column, expr = side
                if node.nulltesttype == enums.NullTestType.IS_NULL:
                    self.use(table).predicates.append(Predicate(column, "null", expr))
                    self.use(table).partial.append(f"{key_sql(column, expr)} IS NULL")
                else:
                    self.use(table).partial.append(f"{key_sql(column, expr)} IS NOT NULL")
            return
        if isinstance(node, ast.ColumnRef):  # WHERE active
            side = self._side(node)
            if side:
                self.use(side[0]).partial.append(key_sql(side[1], side[2]))
            return
        if (
            isinstance(node, ast.BoolExpr)
            and node.boolop == enums.BoolExprType.NOT_EXPR
            and isinstance(node.args[0], ast.ColumnRef)
        ):
            side = self._side(node.args[0])
            if side:
                self.use(side[0]).partial.append(f"NOT {key_sql(side[1], side[2])}")
            return
        if not isinstance(node, ast.A_Expr):
            return
        op = node.name[-1].sval if node.name and isinstance(node.name[-1], ast.String) else None
        kind = node.kind
        if kind == enums.A_Expr_Kind.AEXPR_OP and op in ({"="} | _RANGE_OPS):
            left, right = self._side(node.lexpr), self._side(node.rexpr)
            if op == "=" and left and right and left[0] != right[0]:
                for t, c, e in (left, right):
                    self.use(t).predicates.append(Predicate(c, "join", e))
                return
            for side, other in ((left, node.rexpr), (right, node.lexpr)):
                if side and self._is_value(other, side[0]):
                    table, column, expr = side
                    constant = None
                    if isinstance(other, ast.A_Const) or (
                        isinstance(other, ast.TypeCast) and isinstance(other.arg, ast.A_Const)
                    ):
                        constant = f"{key_sql(column, expr)} {op} {RawStream()(other)}"
                    self.use(table).predicates.append(Predicate(column, "eq" if op == "=" else "range", expr, constant))
                    if constant and op == "=":
                        self.use(table).partial.append(constant)
                    return
        elif kind in (enums.A_Expr_Kind.AEXPR_IN, enums.A_Expr_Kind.AEXPR_OP_ANY) and op == "=":
            side = self._side(node.lexpr)
            if side:
                self.use(side[0]).predicates.append(Predicate(side[1], "in", side[2]))
        elif kind == enums.A_Expr_Kind.AEXPR_BETWEEN:
            side = self._side(node.lexpr)
            if side:
                self.use(side[0]).predicates.append(Predicate(side[1], "range", side[2]))


def _output_column(expr, targets, resolution: names.Resolution, kind: str):
    """ORDER BY 2 and ORDER BY alias mean a select-list entry: its expression. An ORDER BY
    name matches an output alias first; a GROUP BY name an input column first (SQL rule):
    one names resolves to a table's column (an alias has no answer there: a probe, not a miss)."""
    targets = list(targets or ())
    if isinstance(expr, ast.A_Const) and isinstance(expr.val, ast.Integer):
        n = expr.val.ival
        return targets[n - 1].val if 0 < n <= len(targets) else None
    if isinstance(expr, ast.ColumnRef) and len(expr.fields) == 1 and isinstance(expr.fields[0], ast.String):
        name = expr.fields[0].sval
        aliased = [t.val for t in targets if _output_name(t) == name]
        if len(aliased) == 1 and (kind == "sort" or resolution.column_at(expr.location) is None):
            return aliased[0]
    return expr


def _output_name(target: ast.ResTarget) -> str | None:
    """The name a select-list entry is known by: its alias, or a bare column's name."""
    if target.name:
        return target.name
    val = target.val
    if isinstance(val, ast.ColumnRef) and isinstance(val.fields[-1], ast.String):
        return val.fields[-1].sval
    return None


def _conjuncts(node) -> list:
    if isinstance(node, ast.BoolExpr) and node.boolop == enums.BoolExprType.AND_EXPR:
        out = []
        for arg in node.args:
            out.extend(_conjuncts(arg))
        return out
    return [node]


def _or_factors(node) -> list:
    """The conjuncts every arm of an OR shares: (a = b AND x) OR (a = b AND y) is
    a = b AND (x OR y) to the planner (canonicalize_qual factors them out), so a = b can
    use an index (a join key repeated in each arm, as reports write them)."""
    if not (isinstance(node, ast.BoolExpr) and node.boolop == enums.BoolExprType.OR_EXPR):
        return []
    arms = [_conjuncts(arg) for arg in node.args]
    others = [{RawStream()(c) for c in arm} for arm in arms[1:]]
    return [c for c in arms[0] if all(RawStream()(c) in texts for texts in others)]


def _has_sublink(node) -> bool:
    return bool(find_nodes(node, ast.SubLink, stop_at=ast.SubLink))


def _has_param(node) -> bool:
    return bool(find_nodes(node, ast.ParamRef))


def _deparse_unqualified(node) -> str:
    """An expression's text with table aliases removed (CREATE INDEX names bare columns),
    deparsed by pglast so every name keeps the quoting it needs."""
    text = RawStream()(node)
    try:  # a fresh tree to edit: parse() results are cached and shared
        expr = pglast.parse_sql(f"SELECT {text}")[0].stmt.targetList[0].val
    except Exception:  # pglast raises ParseError, and others on odd input
        return text
    for ref in find_nodes(expr, ast.ColumnRef):
        if len(ref.fields) > 1 and isinstance(ref.fields[-1], ast.String):
            ref.fields = (ref.fields[-1],)
    return RawStream()(expr)


def statement_uses(query: str, snapshot: Snapshot, source: str = "sql") -> StatementUses:
    """What a statement asks of each table it reads, and why not all of it is known."""
    stmts = parse(query)
    if not stmts or len(stmts) != 1:
        return StatementUses([], "not one statement pglast can parse")
    extractor = _Extractor(snapshot, source, query)
    try:
        extractor.statement(stmts[0].stmt)
    except (AttributeError, TypeError, IndexError, KeyError) as exc:
        return StatementUses([], f"a statement shape the advisor does not model ({type(exc).__name__})")
    return StatementUses(list(extractor.uses.values()), extractor.unresolved())


# -- plans ----------------------------------------------------------------------------

_SCANS = {"Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan"}


def _walk(node: dict, parents=()):
    yield node, parents
    for child in node.get("Plans", ()) or ():
        yield from _walk(child, parents + (node,))


def plan_uses(plan: dict, snapshot: Snapshot) -> list[TableUse]:
    """Candidates a captured plan points at: scans that throw most rows away by filter
    (or read a large table for few rows), and sorts over one table's columns."""
    uses: dict[str, TableUse] = {}
    catalog = names.catalog_for(snapshot)
    root = plan.get("Plan", plan)
    for node, _ in _walk(root):
        kind = node.get("Node Type")
        if kind in _SCANS and node.get("Relation Name"):
            relation = catalog.find(node.get("Schema"), node["Relation Name"])
            found = snapshot.table(relation.qualified_name) if relation else None
            conditions = [node[k] for k in ("Filter", "Recheck Cond") if node.get(k)]
            if kind in ("Index Scan", "Index Only Scan") and node.get("Filter") and node.get("Index Cond"):
                conditions.append(node["Index Cond"])
            if found is None or not conditions or not _selective_scan(node, found):
                continue
            alias = node.get("Alias") or node["Relation Name"]
            text = (
                f"SELECT 1 FROM {quote_qualified(found.schema, found.name)} AS {quote_ident(alias)} WHERE "
                + " AND ".join(f"({c})" for c in conditions)
            )
            for use in statement_uses(text, snapshot, "plan").tables:
                uses.setdefault(use.table, TableUse(use.table)).predicates.extend(
                    Predicate(p.column, p.kind, p.expression) for p in use.predicates
                )  # plan constants are parameters
                uses[use.table].sources.add(f"plan:{kind.lower()} filter")
        elif kind in ("Sort", "Incremental Sort") and node.get("Sort Key"):
            scans = [n for n, _ in _walk(node) if n.get("Relation Name")]
            if len(scans) != 1:
                continue
            relation = catalog.find(scans[0].get("Schema"), scans[0]["Relation Name"])
            table = relation.qualified_name if relation else None
            cols = []
            for key in node["Sort Key"]:
                column = names.column_name(key)
                if column is None:
                    cols = []
                    break
                cols.append(column)
            if table and cols:
                use = uses.setdefault(table, TableUse(table))
                use.sort = use.sort or cols
                use.sources.add("plan:sort")
    return list(uses.values())


def _selective_scan(node: dict, table: Table | None) -> bool:
    removed = node.get("Rows Removed by Filter")
    if removed is not None:
        kept = float(node.get("Actual Rows", 0)) * float(node.get("Actual Loops", 1) or 1)
        total = kept + float(removed) * float(node.get("Actual Loops", 1) or 1)
        return (
            total >= MIN_TABLE_ROWS
            and total > 0
            and float(removed) * float(node.get("Actual Loops", 1) or 1) / total >= PLAN_FILTER_MIN_REMOVED
        )
    if table is None or table.reltuples < MIN_TABLE_ROWS:
        return False
    return float(node.get("Plan Rows", 0)) <= (1 - PLAN_FILTER_MIN_REMOVED) * table.reltuples


# -- candidates -----------------------------------------------------------------------

# Bytes per value by type when a table has no statistics (PostgreSQL's get_typavgwidth
# guesses 32 for variable-width types too).
_TYPE_WIDTH = {
    "smallint": 2,
    "integer": 4,
    "bigint": 8,
    "real": 4,
    "double precision": 8,
    "boolean": 1,
    "date": 4,
    "uuid": 16,
    "oid": 4,
}


def analyze_due(t: Table | None) -> bool:
    """Never analyzed: reltuples is -1 from PostgreSQL 14, 0 before (with data on disk)."""
    if t is None or t.kind == "p" or t.last_analyze or t.last_autoanalyze:
        return False
    return t.reltuples < 0 or (t.reltuples == 0 and max(t.relpages * 8192, t.table_bytes) > 8192)


def estimated_rows(t: Table | None) -> float:
    """reltuples, or for a table never analyzed its size on disk over a row width from
    the column types: what the planner itself falls back to."""
    if t is None:
        return 0.0
    if not analyze_due(t):
        return max(t.reltuples, 0.0)
    width = 24 + sum(_TYPE_WIDTH.get(c.type, 8 if c.type.startswith("timestamp") else 32) for c in t.columns)
    return max(t.relpages * 8192, t.table_bytes) * 0.9 / width


def table_rows(snapshot: Snapshot, table: str) -> float:
    """estimated_rows, summed over the partitions for a partitioned table (whose own
    reltuples stays -1 until the parent itself is analyzed)."""
    t = snapshot.table(table)
    if t is None or t.kind != "p":
        return estimated_rows(t)
    parts = sum(table_rows(snapshot, p.qualified_name) for p in snapshot.tables if p.partition_of == table)
    return max(t.reltuples, parts, 0.0)


def selectivity(snapshot: Snapshot, table: str, column: str) -> float:
    """Fraction of rows one equality value matches, from pg_stats (1/n_distinct)."""
    t = snapshot.table(table)
    stats = snapshot.stats_for(table, column)
    rows = max(table_rows(snapshot, table), 1.0) if t else 1000.0
    if stats is None or stats.n_distinct is None:
        return 0.005  # PostgreSQL's DEFAULT_EQ_SEL
    distinct = stats.n_distinct if stats.n_distinct > 0 else -stats.n_distinct * rows
    return 1.0 / max(distinct, 1.0)


def _constant_fraction(snapshot: Snapshot, table: str, predicate: str) -> float:
    """Fraction of rows a constant predicate keeps, from pg_stats; 1 when unknown."""
    m, column = _predicate_parts(predicate)
    if not m:
        return 1.0
    stats = snapshot.stats_for(table, column)
    if stats is None:
        return 1.0
    if m.group(3) and "NULL" in m.group(3):
        nulls = stats.null_frac or 0.0
        return 1 - nulls if m.group(4) else nulls
    values = [str(v) for v in (stats.most_common_vals or [])]
    freqs = stats.most_common_freqs or []
    if m.group(5):
        literal = re.sub(
            r"^CAST\('(.*)' AS .*\)$|^'(.*)'(::.*)?$", lambda x: x.group(1) or x.group(2) or "", m.group(5).strip()
        )
        if literal in values:
            return float(freqs[values.index(literal)])
        return selectivity(snapshot, table, column)
    target = "false" if m.group(1) else "true"
    for v, f in zip(values, freqs, strict=False):
        if v in (target, target[0]):
            return float(f)
    return 1.0


def candidates_for_use(use: TableUse, snapshot: Snapshot, queryid: str) -> list[Candidate]:
    table = snapshot.table(use.table)
    if table is None or table_rows(snapshot, use.table) < MIN_TABLE_ROWS:
        return []
    seen: dict[str, Predicate] = {}
    for p in use.predicates:
        prev = seen.get(p.column)
        if prev is None or (prev.kind == "range" and p.kind != "range"):
            seen[p.column] = p
    # IS NULL is an equality for a B-tree, worth a key column only when few rows are NULL.
    equality = [
        p
        for p in seen.values()
        if p.kind in ("eq", "in", "join")
        or (
            p.kind == "null"
            and _constant_fraction(snapshot, use.table, f"{key_sql(p.column, p.expression)} IS NULL")
            <= PARTIAL_MAX_FRACTION
        )
    ]
    equality.sort(key=lambda p: (p.kind == "in", selectivity(snapshot, use.table, p.column), p.column))
    equality = equality[:MAX_EQUALITY_COLUMNS]
    ranges = sorted((p for p in seen.values() if p.kind == "range"), key=lambda p: (p.expression, p.column))[:2]
    eq_cols = [p.column for p in equality]
    has_in = any(p.kind == "in" for p in equality)
    reasons = {p.kind for p in equality} | ({"range"} if ranges else set())
    expressions = {p.column for p in use.predicates if p.expression}
    out: list[tuple[list[str], int, set[str], str | None, tuple[str, ...], tuple[str, ...]]] = []

    def add(cols, n_eq, why, predicate=None, include=(), desc=()):
        cols = list(dict.fromkeys(cols))[:MAX_KEY_COLUMNS]
        if cols:
            out.append((cols, min(n_eq, len(cols)), why, predicate, include, tuple(c for c in desc if c in cols)))

    # Join keys serve a parameterized nested loop: alone, or after the filter's equalities.
    filters = [p for p in equality if p.kind != "join"]
    joins = [p for p in equality if p.kind == "join"]
    if filters and joins:
        add([p.column for p in filters], len(filters), {p.kind for p in filters})
    for p in joins:
        add([p.column], 1, {"join"})
    if eq_cols:
        add(eq_cols, len(eq_cols), {p.kind for p in equality})
    for r in ranges:
        add(eq_cols + [r.column], len(eq_cols), reasons | {"range"})
    if use.sort and not has_in and not set(use.sort) & {r.column for r in ranges}:
        add(
            eq_cols + [c for c in use.sort if c not in eq_cols],
            len(eq_cols),
            reasons | {"sort"},
            desc=sorted(use.descending - set(eq_cols)),
        )
    if use.group and not eq_cols and not ranges and not use.sort:
        add(use.group, 0, {"group"})
    # INCLUDE: an index-only scan pays when the other columns the statement reads are few.
    if out and use.referenced is not None:
        for cols, n_eq, why, _, _, desc in list(out):
            extra = tuple(sorted(c for c in use.referenced if c not in cols))
            if extra and len(extra) <= MAX_INCLUDE_COLUMNS and not expressions & set(cols + list(extra)):
                add(cols, n_eq, why | {"include"}, None, extra, desc)
    # Partial: a selective constant predicate moves from the key into WHERE.
    for constant in dict.fromkeys(use.partial):
        if _constant_fraction(snapshot, use.table, constant) > PARTIAL_MAX_FRACTION:
            continue
        constant_col = _predicate_parts(constant)[1]
        rest = [c for c in eq_cols if c != constant_col]
        keys = rest + ([ranges[0].column] if ranges else [c for c in use.sort if c not in rest])
        if keys:
            add(keys, len(rest), reasons | {"partial"}, constant)
    cands = []
    for cols, n_eq, why, predicate, include, desc in out:
        exprs = tuple(c for c in cols if c in expressions)
        why = why | ({"expression"} if exprs else set())
        cands.append(Candidate(use.table, tuple(cols), include, predicate, n_eq, set(why), {queryid}, desc, exprs))
    return cands


def covered_by(candidate: Candidate, index: Index) -> bool:
    """An existing valid B-tree index already serves what the candidate would."""
    if not index.is_valid or index.method != "btree" or (index.predicate or None) != candidate.predicate:
        return False
    if candidate.descending and " DESC" not in index.definition:
        return False
    n = len(candidate.columns)
    cols = [c.strip('"') for c in index.columns]
    if len(cols) < n:
        return False
    k = candidate.equality_prefix
    if set(cols[:k]) != set(candidate.columns[:k]) or cols[k:n] != list(candidate.columns[k:]):
        return False
    return set(candidate.include) <= set(cols) | {c.strip('"') for c in index.include_columns}


def merge(candidates: list[Candidate]) -> list[Candidate]:
    """One candidate per definition, with the union of its statements and reasons."""
    merged: dict[tuple, Candidate] = {}
    for c in candidates:
        if c.key in merged:
            merged[c.key].queryids |= c.queryids
            merged[c.key].reasons |= c.reasons
        else:
            merged[c.key] = replace(c, reasons=set(c.reasons), queryids=set(c.queryids))
    return list(merged.values())


def all_uses(statement, snapshot: Snapshot) -> StatementUses:
    """What a statement asks of each table, from its SQL and its captured plan."""
    uses = statement_uses(statement.query, snapshot)
    capture = snapshot.plan_for(statement.queryid)
    if capture and isinstance(capture.plan, dict):
        try:
            uses.tables += plan_uses(capture.plan, snapshot)
        except (AttributeError, TypeError, ValueError, KeyError):  # a plan shape we do not know: SQL only
            pass
    return uses


def workload_candidates(snapshot: Snapshot, statements) -> tuple[list[Candidate], dict[str, set[str]], dict[str, str]]:
    """Every candidate for the given statements (SQL and plans), minus what existing
    indexes already serve; for each statement, the tables it touches; and the statements
    whose names did not all resolve, with the reason (their candidates may be missing)."""
    found: list[Candidate] = []
    touched: dict[str, set[str]] = {}
    unresolved: dict[str, str] = {}
    existing = {}
    for i in snapshot.indexes:
        existing.setdefault(i.table, []).append(i)
    for s in statements:
        uses = all_uses(s, snapshot)
        touched[s.queryid] = {u.table for u in uses.tables}
        if uses.unresolved:
            unresolved[s.queryid] = uses.unresolved
        for use in uses.tables:
            for c in candidates_for_use(use, snapshot, s.queryid):
                if not any(covered_by(c, i) for i in existing.get(c.table, [])):
                    found.append(c)
    return merge(found), touched, unresolved
