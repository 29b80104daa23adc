"""Application capture: record the statements an application runs, per unit of work, and
find its N+1 loops with the application's own line (file:line) that sent them and the
fix in the framework's words.

    from queryaudit.capture import capture, query_budget

    with capture() as cap:                 # every statement this block runs, whatever the driver
        render_orders_page()
    for loop in cap.n_plus_one():          # NPlusOne: call_site, executions, fix_hint, batched_query...
        print(loop.describe())
    cap.assert_no_n_plus_one()             # raises NPlusOneError listing them

    with query_budget(3):                  # a test's budget: more statements fail, naming the loops
        render_orders_page()

Drivers (queryaudit.capture.drivers): psycopg 3 (sync and async), psycopg2 and asyncpg.
Frameworks: SQLAlchemy, sync and async, on any of them (sqlalchemy_hooks: the relationship
of a lazy load gives the selectinload/joinedload hint) and Django (django: its
execute_wrappers hook; select_related/prefetch_related hints; a middleware). Hooks are
installed once per process and record only inside an active capture (a context variable,
so threads and asyncio tasks keep their own units of work). WSGI/ASGI middleware:
`queryaudit.capture.middleware`; pytest: `queryaudit.capture.pytest_plugin`.

The call site is the innermost frame outside the standard library, installed packages
and queryaudit; `capture(include=("myapp",), exclude=("myapp.db",))` adjusts that by module
prefix, and every statement keeps its whole stack.
"""
from __future__ import annotations

import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

from queryaudit.capture import django_hooks, drivers, sqlalchemy_hooks
from queryaudit.capture.core import CallSiteRule, CapturedStatement, active
from queryaudit.nplusone import MAX_GAP, MIN_EXECUTIONS, Run, RunDetector, batched_rewrite, lookup_shape

__all__ = ["CAPTURE_MIN_MS", "CallSiteRule", "Capture", "CapturedStatement", "NPlusOne", "NPlusOneError",
           "QueryBudgetExceeded", "capture", "install", "query_budget"]

# Loops in tests are fast (a local server): the time threshold is off by default here.
CAPTURE_MIN_MS = 0.0
_install_lock = threading.Lock()


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
    orm_hint: str | None = None  # the framework's fix (SQLAlchemy loader option, Django select/prefetch_related)
    example_parameters: list = field(default_factory=list)
    stack: list[str] = field(default_factory=list)  # of the first execution, innermost first
    source: str = "psycopg"

    @property
    def fix_hint(self) -> str | None:
        return self.orm_hint

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
        super().__init__(f"{len(loops)} N+1 loop(s) detected:\n" + "\n".join(loop.describe() for loop in loops))


class QueryBudgetExceeded(AssertionError):
    def __init__(self, budget: int, cap: Capture):
        self.budget, self.capture = budget, cap
        loops = cap.n_plus_one()
        lines = [f"{len(cap.statements)} statements run, budget {budget}"]
        lines += [loop.describe() for loop in loops] or [f"  {s.call_site}: {' '.join(s.sql.split())[:120]}"
                                                        for s in cap.statements[budget:budget + 5]]
        super().__init__("\n".join(lines))


class Capture:
    """The statements of one unit of work (a request, a test, a block)."""

    def __init__(self, name: str = "capture", min_executions: int = MIN_EXECUTIONS,
                 min_total_ms: float = CAPTURE_MIN_MS, max_statements: int = 100_000,
                 call_sites: CallSiteRule = CallSiteRule()):
        self.name = name
        self.min_executions = min_executions
        self.min_total_ms = min_total_ms
        self.max_statements = max_statements
        self.call_sites = call_sites
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
        first: dict[str, CapturedStatement] = {}  # the first execution of each fingerprint with a fix hint
        for s in self.statements:
            sql = _to_pg_params(s.sql)
            fp = fingerprint(sql) or sql
            if fp not in first or (s.fix_hint and not first[fp].fix_hint):
                first[fp] = s
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
            example = first[run.fingerprint]
            loops[key] = NPlusOne(
                sql=run.query, executions=run.count, total_ms=run.total_ms, call_site=site,
                call_sites=dict(run.call_sites), parent_sql=run.parent_query, parent_call_site=run.parent_call_site,
                table=shape.table if shape else None, columns=list(shape.columns) if shape else [],
                batched_query=batched_rewrite(run.query, shape.columns[0])
                if shape and len(shape.columns) == 1 else None,
                orm_hint=example.fix_hint, stack=list(example.stack), source=example.source,
                example_parameters=[list(p) if isinstance(p, tuple) else p for p in run.example_parameters[:3]])
        return sorted(loops.values(), key=lambda loop: loop.total_ms, reverse=True)

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


_DRIVER_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%s")


def _to_pg_params(sql: str) -> str:
    """psycopg's %s / %(name)s placeholders as $n, so pglast can parse the statement
    (asyncpg and pg_stat_statements already use $n)."""
    if "%" not in sql:
        return sql
    counter = iter(range(1, 10_000))
    return _DRIVER_PLACEHOLDER.sub(lambda m: f"${next(counter)}", sql)


_installed = False


def install() -> None:
    """Install the hooks once per process (they do nothing outside a capture). Django's
    are attached to its connections on every call: they are per connection and thread."""
    global _installed
    with _install_lock:
        if not _installed:
            for hook in (drivers.install_psycopg, drivers.install_psycopg2, drivers.install_asyncpg,
                         sqlalchemy_hooks.install):
                hook()
            _installed = True
        django_hooks.install()


@contextmanager
def capture(name: str = "capture", min_executions: int = MIN_EXECUTIONS, min_total_ms: float = CAPTURE_MIN_MS,
            include: tuple[str, ...] = (), exclude: tuple[str, ...] = ()):
    """Record every statement run in this block (this thread / task) into a Capture.
    `include` / `exclude`: module prefixes that are / are not the application's code,
    for naming the call site."""
    install()
    cap = Capture(name, min_executions, min_total_ms, call_sites=CallSiteRule(tuple(include), tuple(exclude)))
    token = active.set(active.get() + (cap,))
    orm_token = sqlalchemy_hooks.orm_path.set(None)
    try:
        yield cap
    finally:
        sqlalchemy_hooks.orm_path.reset(orm_token)
        active.reset(token)


@contextmanager
def query_budget(max_statements: int, name: str = "query budget", **options):
    """Fail the block when it runs more than `max_statements` statements (like Django's
    assertNumQueries, as an upper bound), naming the N+1 loops that spent the budget."""
    with capture(name, **options) as cap:
        yield cap
    if len(cap.statements) > max_statements:
        raise QueryBudgetExceeded(max_statements, cap)
