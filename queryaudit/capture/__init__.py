"""Application capture: record the statements an application runs, per unit of work, and
find its N+1 loops with the application's own line (file:line) and the fix in the
framework's words.

    from queryaudit.capture import allow_n_plus_one, capture, query_budget

    with capture() as cap:                 # every statement this block runs, whatever the driver
        render_orders_page()
    for loop in cap.n_plus_one():          # NPlusOne: call_site, relation, executions, fix_hint...
        print(loop.describe())
    cap.assert_no_n_plus_one()             # raises NPlusOneError listing them
    cap.unused_eager_loads()               # select_related / prefetch_related never read

    with query_budget(3):                  # a test's budget: more statements fail, naming the loops
        render_orders_page()
    with capture(strict=True):             # fail at the loop's second lazy load, at its line
        with allow_n_plus_one("Book.author"):  # ... except the loops a team accepts
            render_orders_page()

Two signals. With an ORM (Django 4.2 / 5.x, SQLAlchemy 2 sync and async), the lazy load
itself (queryaudit.capture.lazy): a relation loaded lazily on rows of a multi-row result,
from one line, at least MIN_LAZY_LOADS (2) times in one unit of work, is a loop, keyed by
line and relation path, not by statement text; the fix loads the whole path
(queryaudit.capture.hints). Raw driver statements (psycopg 3, psycopg2, asyncpg:
queryaudit.capture.drivers) are loops when MIN_EXECUTIONS of one statement run from one
line in a row, as in the logs.

Units of work: a capture (a test, a request through the middleware, a query_budget()
block) and each Django request inside it (the request signals, so each test-client
request); no loop spans two. Hooks are installed once per process and record only
inside an active capture (a context variable, so threads and asyncio tasks keep their
own). WSGI/ASGI middleware: `queryaudit.capture.middleware`; Django's:
`queryaudit.capture.django`; pytest: `queryaudit.capture.pytest_plugin`.

The call site is the innermost frame outside the standard library, installed packages
and queryaudit; `capture(include=("myapp",), exclude=("myapp.db",))` adjusts that by module
prefix, and every statement keeps its whole stack.
"""

from __future__ import annotations

import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

from queryaudit.capture import core, django_hooks, drivers, hints, lazy, sqlalchemy_hooks
from queryaudit.capture.core import CallSiteRule, CapturedStatement, active
from queryaudit.n_plus_one import MAX_GAP, MIN_EXECUTIONS
from queryaudit.n_plus_one.runs import Run, RunDetector
from queryaudit.n_plus_one.shape import batched_rewrite, lookup_shape
from queryaudit.sql import fingerprint

__all__ = [
    "CAPTURE_MIN_MS",
    "CallSiteRule",
    "Capture",
    "CapturedStatement",
    "NPlusOne",
    "NPlusOneError",
    "QueryBudgetExceeded",
    "allow_n_plus_one",
    "capture",
    "install",
    "query_budget",
]

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
    relation: str | None = None  # ORM lazy loads: Owner.field of the last hop (Book.author)
    path: str | None = None  # and the path from the parent rows (author__profile)

    @property
    def fix_hint(self) -> str | None:
        return self.orm_hint

    def describe(self) -> str:
        text = " ".join(self.sql.split())
        lines = [f"N+1 at {self.call_site}: {self.executions} executions ({self.total_ms:.1f} ms) of {text[:160]}"]
        if self.relation:
            lines.append(f"  lazy load of {self.relation} on each row" + (f" (path {self.path})" if self.path else ""))
        if self.parent_sql:
            lines.append(
                f"  after {' '.join(self.parent_sql.split())[:160]}"
                + (f" at {self.parent_call_site}" if self.parent_call_site else "")
            )
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
        lines += [loop.describe() for loop in loops] or [
            f"  {s.call_site}: {' '.join(s.sql.split())[:120]}" for s in cap.statements[budget : budget + 5]
        ]
        super().__init__("\n".join(lines))


class Capture:
    """The statements and ORM lazy loads of one unit of work (a request, a test, a block).
    `strict`: raise NPlusOneError at the lazy load that makes a loop (in CI); `allow`:
    relations (`Book.author`, `Book.*`) or call sites whose loops are accepted."""

    def __init__(
        self,
        name: str = "capture",
        min_executions: int = MIN_EXECUTIONS,
        min_total_ms: float = CAPTURE_MIN_MS,
        max_statements: int = 100_000,
        call_sites: CallSiteRule = CallSiteRule(),
        strict: bool = False,
        allow: tuple[str, ...] = (),
    ):
        self.name = name
        self.min_executions = min_executions
        self.min_total_ms = min_total_ms
        self.max_statements = max_statements
        self.call_sites = call_sites
        self.strict, self.allow = strict, tuple(allow)
        self.statements: list[CapturedStatement] = []
        self.units: list[int] = []  # the unit of work of each statement
        self.unit = 0  # bumped at each boundary (a request starts or ends, a nested capture)
        self.lazy_loads: list[tuple[int, lazy.LazyLoad]] = []
        self.results: list[lazy.Result] = []
        self.dropped = 0

    def record(self, statement: CapturedStatement) -> None:
        if len(self.statements) < self.max_statements:
            self.statements.append(statement)
            self.units.append(self.unit)
        else:
            self.dropped += 1

    def on_lazy_load(self, load: lazy.LazyLoad) -> None:
        __tracebackhide__ = True  # pytest shows the application's line, not this one
        if self.allow and not load.allowed and lazy.allowed(load, self.allow):
            load.allowed = True
        if len(self.lazy_loads) >= self.max_statements:
            self.dropped += 1
            return
        self.lazy_loads.append((self.unit, load))
        if self.strict and lazy.in_loop(self._loads_of(self.unit), load):
            raise NPlusOneError([self._loop([x for x in self._loads_of(self.unit) if x.key == load.key])])

    def _loads_of(self, unit: int) -> list[lazy.LazyLoad]:
        return [load for u, load in self.lazy_loads if u == unit]

    def n_plus_one(self, min_executions: int | None = None, min_total_ms: float | None = None) -> list[NPlusOne]:
        """The loops: ORM lazy loads (>= MIN_LAZY_LOADS on rows of a multi-row result, by line
        and relation), and runs of raw statements (>= min_executions, by line), per unit."""
        found = [
            self._loop(group)
            for unit in sorted({u for u, _ in self.lazy_loads})
            for group in lazy.loops(self._loads_of(unit))
        ]
        found += self._statement_loops(
            min_executions or self.min_executions, self.min_total_ms if min_total_ms is None else min_total_ms
        )
        return sorted(found, key=lambda loop: (-loop.executions, loop.call_site))

    def _loop(self, group: list[lazy.LazyLoad]) -> NPlusOne:
        deepest = max(group, key=lambda g: len(g.path))
        statements = [s for load in group for s in load.statements]
        sql = next((s.sql for load in group if load is deepest for s in load.statements), None) or (
            statements[0].sql if statements else f"lazy load of {deepest.hop.owner}.{deepest.hop.name}"
        )
        sql = _to_pg_params(sql)
        shape = lookup_shape(sql)
        result = deepest.origin.result if deepest.origin else None
        return NPlusOne(
            sql=sql,
            executions=sum(1 for g in group if g is deepest or g.key == deepest.key) or len(group),
            total_ms=sum(s.duration_ms for s in statements),
            call_site=deepest.site,
            call_sites={deepest.site: len(group)},
            parent_sql=result.statement if result else None,
            parent_call_site=result.site if result else None,
            table=shape.table if shape else None,
            columns=list(shape.columns) if shape else [],
            batched_query=batched_rewrite(sql, shape.columns[0]) if shape and len(shape.columns) == 1 else None,
            orm_hint=hints.fix_hint(group),
            source=deepest.framework,
            stack=list(deepest.statements[0].stack if deepest.statements else deepest.stack),
            relation=f"{deepest.hop.owner}.{deepest.hop.name}",
            path="__".join(h.name for h in deepest.path) if len(deepest.path) > 1 else None,
        )

    def _statement_loops(self, min_executions: int, min_total_ms: float) -> list[NPlusOne]:
        """Raw statements in a loop: runs of one statement from one line, in one session and
        unit; the statements of ORM lazy loads are counted by their relation instead."""

        runs: list[Run] = []
        detector = RunDetector(runs.append, min_executions=min_executions, min_total_ms=min_total_ms, max_gap=MAX_GAP)
        first: dict[str, CapturedStatement] = {}
        for s, unit in zip(self.statements, self.units, strict=True):
            if s.lazy:
                continue
            sql = _to_pg_params(s.sql)
            fp = f"{fingerprint(sql) or sql}@{s.call_site}"  # one loop is one line's
            first.setdefault(fp, s)
            detector.feed(
                f"{s.connection}/{unit}", fp, sql, _params_key(s.parameters), s.duration_ms, call_site=s.call_site
            )
        detector.finish()
        loops: dict[str, NPlusOne] = {}
        for run in runs:
            if run.fingerprint in loops:
                loop = loops[run.fingerprint]
                loop.executions += run.count
                loop.total_ms += run.total_ms
                loop.call_sites[loop.call_site] += run.count
                continue
            shape = lookup_shape(run.query)
            example = first[run.fingerprint]
            loops[run.fingerprint] = NPlusOne(
                sql=run.query,
                executions=run.count,
                total_ms=run.total_ms,
                call_site=example.call_site,
                call_sites={example.call_site: run.count},
                parent_sql=run.parent_query,
                parent_call_site=run.parent_call_site,
                table=shape.table if shape else None,
                columns=list(shape.columns) if shape else [],
                batched_query=batched_rewrite(run.query, shape.columns[0])
                if shape and len(shape.columns) == 1
                else None,
                stack=list(example.stack),
                source=example.source,
                example_parameters=[list(p) if isinstance(p, tuple) else p for p in run.example_parameters[:3]],
            )
        return list(loops.values())

    def assert_no_n_plus_one(self, min_executions: int | None = None, min_total_ms: float | None = None) -> None:
        loops = self.n_plus_one(min_executions, min_total_ms)
        if loops:
            raise NPlusOneError(loops)

    def unused_eager_loads(self) -> list[str]:
        """select_related / prefetch_related paths (Django) that no row was ever read through,
        as nplusone notes them: each one loads what nobody reads."""
        return [
            f"unused eager load at {result.site}: {result.model}.objects.{result.eager[path]}"
            f'("{"__".join(path)}") is never read; drop it'
            for result, path in lazy.unused_eager_loads(self.results)
        ]


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
            for hook in (
                drivers.install_psycopg,
                drivers.install_psycopg2,
                drivers.install_asyncpg,
                sqlalchemy_hooks.install,
            ):
                hook()
            _installed = True
        django_hooks.install()


@contextmanager
def capture(
    name: str = "capture",
    min_executions: int = MIN_EXECUTIONS,
    min_total_ms: float = CAPTURE_MIN_MS,
    include: tuple[str, ...] = (),
    exclude: tuple[str, ...] = (),
    strict: bool = False,
    allow: tuple[str, ...] = (),
):
    """Record every statement run in this block (this thread / task) into a Capture.
    `include` / `exclude`: module prefixes that are / are not the application's code,
    for naming the call site. The block is a unit of work of its own in the enclosing
    captures. `strict` and `allow`: see Capture."""
    install()
    cap = Capture(
        name,
        min_executions,
        min_total_ms,
        call_sites=CallSiteRule(tuple(include), tuple(exclude)),
        strict=strict,
        allow=allow,
    )
    core.new_unit()
    token = active.set(active.get() + (cap,))
    orm_tokens = sqlalchemy_hooks.pending.set(None), sqlalchemy_hooks.loading_parent.set(None)
    try:
        yield cap
    finally:
        sqlalchemy_hooks.pending.reset(orm_tokens[0])
        sqlalchemy_hooks.loading_parent.reset(orm_tokens[1])
        active.reset(token)
        core.new_unit()


@contextmanager
def allow_n_plus_one(*patterns: str):
    """Lazy-load loops in this block are accepted: all of them, or those of the relations
    (`Book.author`, `Book.*`) or call sites (`views.py:12`) named."""
    token = core.allow_list.set(core.allow_list.get() + (patterns or ("*",)))
    try:
        yield
    finally:
        core.allow_list.reset(token)


@contextmanager
def query_budget(max_statements: int, name: str = "query budget", **options):
    """Fail the block when it runs more than `max_statements` statements (like Django's
    assertNumQueries, as an upper bound), naming the N+1 loops that spent the budget."""
    with capture(name, **options) as cap:
        yield cap
    if len(cap.statements) > max_statements:
        raise QueryBudgetExceeded(max_statements, cap)
