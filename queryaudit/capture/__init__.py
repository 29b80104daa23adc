"""Application capture: record the statements an application runs, per unit of work, and
find its N+1 loops with the call site (file:line) that sent them.

    from queryaudit.capture import capture

    with capture() as cap:                 # every psycopg 3 / SQLAlchemy statement in this block
        render_orders_page()
    for loop in cap.n_plus_one():          # NPlusOne: call_site, executions, batched_query, orm_hint...
        print(loop.describe())
    cap.assert_no_n_plus_one()             # raises NPlusOneError listing them

Hooks: SQLAlchemy's `before/after_cursor_execute` engine events (and `do_orm_execute`,
which names the relationship a lazy load comes from, for the selectinload/joinedload
hint); for plain psycopg 3, which has no execute hook, `Cursor.execute`/`executemany`
(sync and async) are wrapped once, process-wide, and record only inside an active
capture (a context variable, so threads and asyncio tasks keep their own units of work).
Middleware: `queryaudit.capture.middleware`; pytest: `queryaudit.capture.pytest_plugin`.
"""
from __future__ import annotations

import contextvars
import os
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from queryaudit.nplusone import MIN_EXECUTIONS, MAX_GAP, Run, RunDetector, batched_rewrite, lookup_shape

# Loops in tests are fast (a local server): the time threshold is off by default here.
CAPTURE_MIN_MS = 0.0
_active: contextvars.ContextVar[tuple] = contextvars.ContextVar("queryaudit_captures", default=())
_in_sqlalchemy: contextvars.ContextVar[bool] = contextvars.ContextVar("queryaudit_in_sqlalchemy", default=False)
_orm_path: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("queryaudit_orm_path", default=None)
_install_lock = threading.Lock()
_installed: set[str] = set()

_SKIP_MODULES = ("queryaudit.capture", "queryaudit.nplusone", "sqlalchemy", "psycopg", "contextlib", "asyncio",
                 "concurrent", "threading", "_pytest", "pluggy")


@dataclass
class CapturedStatement:
    sql: str
    parameters: object
    duration_ms: float
    call_site: str  # file:line of the application frame that ran it
    connection: int  # id() of the DBAPI connection: the session
    orm_path: tuple | None = None  # (parent class name, relationship key, direction) of a lazy load
    source: str = "psycopg"  # psycopg | sqlalchemy


@dataclass
class NPlusOne:
    """A loop found in a capture: the child statement, where it was sent from, the parent."""

    sql: str
    executions: int
    total_ms: float
    call_site: str
    call_sites: dict[str, int]
    parent_sql: str | None = None
    parent_call_site: str | None = None
    table: str | None = None
    columns: list[str] = field(default_factory=list)
    batched_query: str | None = None
    orm_hint: str | None = None
    example_parameters: list = field(default_factory=list)

    def describe(self) -> str:
        text = " ".join(self.sql.split())
        lines = [f"N+1 at {self.call_site}: {self.executions} executions ({self.total_ms:.1f} ms) of {text[:160]}"]
        if self.parent_sql:
            lines.append(f"  after {' '.join(self.parent_sql.split())[:160]}"
                         + (f" at {self.parent_call_site}" if self.parent_call_site else ""))
        if self.orm_hint:
            lines.append(f"  fix: {self.orm_hint}")
        if self.batched_query:
            lines.append(f"  batched: {self.batched_query}")
        return "\n".join(lines)


class NPlusOneError(AssertionError):
    def __init__(self, loops: list[NPlusOne]):
        self.loops = loops
        super().__init__(f"{len(loops)} N+1 loop(s) detected:\n" + "\n".join(l.describe() for l in loops))


class Capture:
    """The statements of one unit of work (a request, a test, a block)."""

    def __init__(self, name: str = "capture", min_executions: int = MIN_EXECUTIONS,
                 min_total_ms: float = CAPTURE_MIN_MS, max_statements: int = 100_000):
        self.name = name
        self.min_executions = min_executions
        self.min_total_ms = min_total_ms
        self.max_statements = max_statements
        self.statements: list[CapturedStatement] = []
        self.dropped = 0

    def record(self, statement: CapturedStatement) -> None:
        if len(self.statements) < self.max_statements:
            self.statements.append(statement)
        else:
            self.dropped += 1

    def n_plus_one(self, min_executions: int | None = None, min_total_ms: float | None = None) -> list[NPlusOne]:
        from queryaudit.sql import fingerprint

        runs: list[Run] = []
        detector = RunDetector(runs.append, min_executions=min_executions or self.min_executions,
                               min_total_ms=self.min_total_ms if min_total_ms is None else min_total_ms,
                               max_gap=MAX_GAP)
        orm_paths: dict[str, tuple] = {}
        for s in self.statements:
            sql = _to_pg_params(s.sql)
            fp = fingerprint(sql) or sql
            if s.orm_path:
                orm_paths.setdefault(fp, s.orm_path)
            detector.feed(str(s.connection), fp, sql, _params_key(s.parameters), s.duration_ms,
                          call_site=s.call_site)
        detector.finish()
        loops: dict[tuple, NPlusOne] = {}
        for run in runs:
            site = max(run.call_sites, key=run.call_sites.get) if run.call_sites else "?"
            key = (run.fingerprint, site)
            if key in loops:
                loop = loops[key]
                loop.executions += run.count
                loop.total_ms += run.total_ms
                for k, v in run.call_sites.items():
                    loop.call_sites[k] = loop.call_sites.get(k, 0) + v
                continue
            shape = lookup_shape(run.query)
            loops[key] = NPlusOne(
                sql=run.query, executions=run.count, total_ms=run.total_ms, call_site=site,
                call_sites=dict(run.call_sites), parent_sql=run.parent_query, parent_call_site=run.parent_call_site,
                table=shape.table if shape else None, columns=list(shape.columns) if shape else [],
                batched_query=batched_rewrite(run.query, shape.columns[0])
                if shape and len(shape.columns) == 1 else None,
                orm_hint=_orm_hint(orm_paths.get(run.fingerprint)),
                example_parameters=[list(p) if isinstance(p, tuple) else p for p in run.example_parameters[:3]])
        return sorted(loops.values(), key=lambda l: l.total_ms, reverse=True)

    def assert_no_n_plus_one(self, min_executions: int | None = None, min_total_ms: float | None = None) -> None:
        loops = self.n_plus_one(min_executions, min_total_ms)
        if loops:
            raise NPlusOneError(loops)


def _params_key(params) -> object:
    try:
        if isinstance(params, dict):
            return tuple(sorted((str(k), repr(v)) for k, v in params.items()))
        if isinstance(params, (list, tuple)):
            return tuple(repr(v) for v in params)
        return repr(params)
    except Exception:
        return id(params)


def _to_pg_params(sql: str) -> str:
    """psycopg's %s / %(name)s placeholders as $n, so pglast can parse the statement."""
    if "%" not in sql:
        return sql
    import re

    counter = iter(range(1, 10_000))
    return re.sub(r"%\((\w+)\)s|%s", lambda m: f"${next(counter)}", sql)


def _orm_hint(path: tuple | None) -> str | None:
    if not path:
        return None
    owner, key, direction = path
    loader = "selectinload" if direction in ("ONETOMANY", "MANYTOMANY") else "joinedload"
    return (f"load {owner}.{key} eagerly: .options({loader}({owner}.{key})) on the query that loads the {owner} "
            f"rows (or lazy=\"{'selectin' if loader == 'selectinload' else 'joined'}\" on the relationship)")


def call_site() -> str:
    """file:line of the innermost frame outside the database libraries and this package."""
    frame = sys._getframe(2)
    cwd = os.getcwd()
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if not module.startswith(_SKIP_MODULES) and not frame.f_code.co_filename.startswith("<"):
            filename = frame.f_code.co_filename
            if filename.startswith(cwd + os.sep):
                filename = filename[len(cwd) + 1:]
            return f"{filename}:{frame.f_lineno}"
        frame = frame.f_back
    return "?"


def _record(sql, params, started: float, connection, source: str) -> None:
    captures = _active.get()
    if not captures:
        return
    if isinstance(sql, bytes):
        sql = sql.decode(errors="replace")
    elif not isinstance(sql, str):  # psycopg.sql.Composed and friends
        sql = str(sql)
    statement = CapturedStatement(sql=sql, parameters=params, duration_ms=(time.perf_counter() - started) * 1000,
                                  call_site=call_site(), connection=id(connection), orm_path=_orm_path.get(),
                                  source=source)
    _orm_path.set(None)  # set by do_orm_execute for the one statement that follows
    for cap in captures:
        cap.record(statement)


# -- hooks ----------------------------------------------------------------------------------

def _install_psycopg() -> None:
    try:
        import psycopg
    except ImportError:
        return

    def wrap(cls, name):
        original = getattr(cls, name)
        if getattr(original, "_queryaudit", False):
            return

        def execute(self, query, params=None, *args, **kwargs):
            if not _active.get() or _in_sqlalchemy.get():
                return original(self, query, params, *args, **kwargs)
            started = time.perf_counter()
            try:
                return original(self, query, params, *args, **kwargs)
            finally:
                _record(query, params, started, self.connection, "psycopg")

        async def aexecute(self, query, params=None, *args, **kwargs):
            if not _active.get() or _in_sqlalchemy.get():
                return await original(self, query, params, *args, **kwargs)
            started = time.perf_counter()
            try:
                return await original(self, query, params, *args, **kwargs)
            finally:
                _record(query, params, started, self.connection, "psycopg")

        import inspect

        wrapper = aexecute if inspect.iscoroutinefunction(original) else execute
        wrapper._queryaudit = True
        wrapper.__wrapped__ = original
        setattr(cls, name, wrapper)

    for cls in (psycopg.Cursor, psycopg.AsyncCursor, psycopg.ServerCursor, psycopg.AsyncServerCursor):
        wrap(cls, "execute")
    for cls in (psycopg.Cursor, psycopg.AsyncCursor):
        wrap(cls, "executemany")


def _install_sqlalchemy() -> None:
    try:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine
        from sqlalchemy.orm import Session
    except ImportError:
        return

    @event.listens_for(Engine, "before_cursor_execute")
    def _before(conn, cursor, statement, parameters, context, executemany):
        if _active.get():
            conn.info.setdefault("queryaudit_started", []).append(time.perf_counter())
            conn.info.setdefault("queryaudit_tokens", []).append(_in_sqlalchemy.set(True))

    @event.listens_for(Engine, "after_cursor_execute")
    def _after(conn, cursor, statement, parameters, context, executemany):
        starts = conn.info.get("queryaudit_started")
        if not starts:
            return
        started = starts.pop()
        _in_sqlalchemy.reset(conn.info["queryaudit_tokens"].pop())
        _record(statement, parameters, started, conn.connection.dbapi_connection, "sqlalchemy")

    @event.listens_for(Engine, "handle_error")
    def _error(context):
        conn = context.connection
        if conn is not None and conn.info.get("queryaudit_started"):
            conn.info["queryaudit_started"].pop()
            _in_sqlalchemy.reset(conn.info["queryaudit_tokens"].pop())

    @event.listens_for(Session, "do_orm_execute")
    def _orm(state):
        # A lazy load names the relationship it loads: the eager-loading hint.
        if not _active.get() or not state.is_relationship_load:
            return
        path = state.loader_strategy_path
        try:
            prop = path[-1] if hasattr(path[-1], "direction") else path[1]
            owner = prop.parent.class_.__name__
            _orm_path.set((owner, prop.key, prop.direction.name))
        except Exception:
            _orm_path.set(None)


def install() -> None:
    """Install the hooks once per process (idempotent; they do nothing outside a capture)."""
    with _install_lock:
        for name, fn in (("psycopg", _install_psycopg), ("sqlalchemy", _install_sqlalchemy)):
            if name not in _installed:
                fn()
                _installed.add(name)


@contextmanager
def capture(name: str = "capture", min_executions: int = MIN_EXECUTIONS, min_total_ms: float = CAPTURE_MIN_MS):
    """Record every statement run in this block (this thread / task) into a Capture."""
    install()
    cap = Capture(name, min_executions, min_total_ms)
    token = _active.set(_active.get() + (cap,))
    orm_token = _orm_path.set(None)
    try:
        yield cap
    finally:
        _orm_path.reset(orm_token)
        _active.reset(token)
