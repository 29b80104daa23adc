"""N+1 building blocks shared by the three sources (pg_stat_statements, logs, capture).

- `lookup_shape`: is a statement a single-table lookup by equality (the child of an N+1)?
- `RunDetector`: streaming detection of loops (>= N executions of one fingerprint close
  together in one session, with different parameters) and of the statement before them.
- `batched_rewrite` / `join_rewrite`: the batched form of the child, built on pglast's AST.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import pglast
from pglast import ast, enums

from queryaudit.sql import parse, quote_ident, quote_table

# A loop: at least this many executions of one fingerprint, with different parameters,
# in one session, at most MAX_GAP other statements between two of them, and at least
# MIN_RUN_MS of execution time in total (below that a loop costs nobody anything).
MIN_EXECUTIONS = 5
MIN_RUN_MS = 50.0
MAX_GAP = 3
# Logs: a loop is reported when it repeats in this many transactions or requests, and what
# it costs is its round trips (the application waits for each) plus the server's time.
MIN_REPEATS = 2
ROUND_TRIP_MS = 0.5
MAX_SESSIONS = 20000  # sessions followed at once; the oldest is closed beyond this (flat memory)
_MAX_PARAM_KEYS = 32
_LOOKBACK = 6


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
    if isinstance(node, ast.A_Expr) and node.kind == enums.A_Expr_Kind.AEXPR_OP and len(node.name) == 1 \
            and node.name[0].sval == "=":
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
        col_side = next((x for x in sides if isinstance(x, ast.ColumnRef) and
                         (len(x.fields) == 1 or x.fields[0].sval in own)), None)
        value_side = next((x for x in sides if x is not col_side), None)
        if col_side is None or isinstance(value_side, ast.ColumnRef) and value_side.fields[0].sval in own:
            return None  # a comparison of two columns of the table: not a lookup
        col = _column_name(col_side)
        columns.append(col)
        if isinstance(eq.rexpr, ast.ParamRef) or isinstance(eq.lexpr, ast.ParamRef) or \
                isinstance(eq.rexpr, ast.TypeCast) and isinstance(eq.rexpr.arg, ast.ParamRef):
            parameterised.append(col)
    targets: list[str] | None = []
    for t in stmt.targetList or ():
        name = _column_name(t.val) if isinstance(t, ast.ResTarget) else None
        if name is None or (isinstance(t.val, ast.ColumnRef) and isinstance(t.val.fields[-1], ast.A_Star)):
            targets = None
            break
        targets.append(t.name or name)
    return Lookup(rv.schemaname, rv.relname, rv.alias.aliasname if rv.alias else None, columns,
                  parameterised or columns, targets, has_limit=stmt.limitCount is not None)


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
    replacement = ast.A_Expr(kind=enums.A_Expr_Kind.AEXPR_OP_ANY, name=(ast.String(sval="="),), lexpr=col_node,
                             rexpr=value)
    if stmt.whereClause is target:
        stmt.whereClause = replacement
    else:
        stmt.whereClause.args = tuple(replacement if a is target else a for a in stmt.whereClause.args)
    # A LIMIT 1 per key cannot survive batching (it would limit the whole batch).
    stmt.limitCount = None
    names = [(_column_name(t.val) if isinstance(t, ast.ResTarget) else None) for t in stmt.targetList or ()]
    star = any(isinstance(t.val, ast.ColumnRef) and isinstance(t.val.fields[-1], ast.A_Star)
               for t in stmt.targetList or ())
    if column not in names and not star:
        stmt.targetList = tuple(stmt.targetList or ()) + (ast.ResTarget(val=col_node),)
    try:
        from pglast.stream import RawStream  # the printers: only when a rewrite is printed

        return RawStream()(stmt)
    except Exception:
        return None


def join_rewrite(parent_query: str, parent_column: str, child: Lookup, child_table: str,
                 child_column: str) -> str | None:
    """The parent and its children in one statement: the parent as a subquery, LEFT JOIN
    the child table on the looked-up key. Validated by parsing it back."""
    parent = parent_query.strip().rstrip(";")
    if _single_select(parent) is None:
        return None
    cols = ", ".join(f"c.{quote_ident(c)}" for c in child.targets) if child.targets else "c.*"
    text = (f"SELECT p.*, {cols} FROM ({parent}) AS p "
            f"LEFT JOIN {quote_table(child_table)} AS c "
            f"ON c.{quote_ident(child_column)} = p.{quote_ident(parent_column)}")
    try:
        pglast.parse_sql(text)
        return pglast.prettify(text)
    except Exception:
        return None


# -- loops in a stream of statements ----------------------------------------------------------

@dataclass(slots=True)
class Run:
    """Executions of one fingerprint close together in one session."""

    session: str
    fingerprint: str
    query: str
    queryid: str | None = None
    count: int = 0
    total_ms: float = 0.0
    first_ts: str | None = None
    last_ts: str | None = None
    param_keys: set = field(default_factory=set)
    example_parameters: list = field(default_factory=list)
    call_sites: dict[str, int] = field(default_factory=dict)
    parent_fingerprint: str | None = None
    parent_query: str | None = None
    parent_queryid: str | None = None
    parent_call_site: str | None = None
    orm_path: str | None = None
    unit: tuple | None = None  # (session, the BEGIN that opened its transaction), or the run itself in autocommit
    _last_index: int = 0
    _preceding: tuple = ()
    _parent: tuple | None = None

    @property
    def distinct_parameters(self) -> int:
        return len(self.param_keys)


class _Session:
    __slots__ = ("index", "active", "recent", "block", "last")

    def __init__(self):
        self.index = 0
        self.last = None  # the fingerprint fed last
        self.block: int | None = None  # index of the BEGIN of the open transaction block
        self.active: dict[str, Run] = {}
        self.recent: deque = deque(maxlen=_LOOKBACK)  # (fingerprint, query, queryid, run, call_site)


class RunDetector:
    """Feed statements in order; `on_run` gets every qualifying loop when it ends.

    Memory: per session, the runs still open (at most MAX_GAP + 1) and the last few
    statements; at most MAX_SESSIONS sessions (the least recently active is closed).
    """

    def __init__(self, on_run: Callable[[Run], None], min_executions: int = MIN_EXECUTIONS,
                 min_total_ms: float = MIN_RUN_MS, max_gap: int = MAX_GAP, max_sessions: int = MAX_SESSIONS):
        self.on_run = on_run
        self.min_executions = min_executions
        self.min_total_ms = min_total_ms
        self.max_gap = max_gap
        self.max_sessions = max_sessions
        self.sessions: dict[str, _Session] = {}

    def feed(self, session: str, fingerprint: str, query: str, params_key, duration_ms: float | None,
             timestamp: str | None = None, queryid: str | None = None, call_site: str | None = None,
             orm_path: str | None = None) -> None:
        # Called for every statement of a log: kept to a few dict operations.
        sessions = self.sessions
        state = sessions.get(session)
        if state is None:
            if len(sessions) >= self.max_sessions:  # the session seen first goes (flat memory)
                self._close_all(sessions.pop(next(iter(sessions))))
            state = sessions[session] = _Session()
        state.index += 1
        index = state.index
        active = state.active
        if active and not (len(active) == 1 and state.last == fingerprint):
            # (The loop's next iteration, alone in the session: nothing can have ended.)
            # A run ends after MAX_GAP other statements, or when its parent comes again (the
            # next page of the list: a new loop begins).
            limit = index - self.max_gap - 1
            ended = [fp for fp, r in active.items()
                     if r._last_index < limit or (r._parent is not None and r._parent[0] == fingerprint)]
            for fp in ended:
                self._close(active.pop(fp))
        run = active.get(fingerprint)
        if run is None:
            run = Run(session, fingerprint, query, queryid=queryid, first_ts=timestamp, orm_path=orm_path,
                      unit=(session, state.block if state.block is not None else -index))
            run._preceding = tuple(state.recent)
            state.active[fingerprint] = run
        run.count += 1
        if run.count == self.min_executions:
            run._parent = self._find_parent(run)
        run.total_ms += duration_ms or 0.0
        run.last_ts = timestamp
        run._last_index = index
        if len(run.param_keys) < _MAX_PARAM_KEYS and params_key not in run.param_keys:
            run.param_keys.add(params_key)
            if len(run.example_parameters) < 3 and params_key is not None:
                run.example_parameters.append(params_key)
        if call_site:
            run.call_sites[call_site] = run.call_sites.get(call_site, 0) + 1
        state.recent.append((fingerprint, query, queryid, run, call_site))
        state.last = fingerprint

    def set_block(self, session: str, begin: bool) -> None:
        """BEGIN (begin) or COMMIT/ROLLBACK just ran in the session: runs started inside one
        transaction block share it as their unit."""
        state = self.sessions.get(session)
        if state is not None:
            state.block = state.index if begin else None

    def end_session(self, session: str) -> None:
        state = self.sessions.pop(session, None)
        if state is not None:
            self._close_all(state)

    def finish(self) -> None:
        for state in self.sessions.values():
            self._close_all(state)
        self.sessions.clear()

    def _close_all(self, state: _Session) -> None:
        for run in state.active.values():
            self._close(run)
        state.active.clear()

    def _qualifies(self, run: Run) -> bool:
        return run.count >= self.min_executions and run.distinct_parameters >= 2 \
            and run.total_ms >= self.min_total_ms

    def _find_parent(self, run: Run) -> tuple | None:
        """The latest statement before the loop that is not itself in a loop."""
        for fp, query, queryid, other, site in reversed(run._preceding):
            if fp != run.fingerprint and other.count < self.min_executions:
                return fp, query, queryid, site
        return None

    def _close(self, run: Run) -> None:
        parent = run._parent
        run._preceding, run._parent = (), None
        if not self._qualifies(run):
            return
        if parent:
            run.parent_fingerprint, run.parent_query, run.parent_queryid, run.parent_call_site = parent
        self.on_run(run)
