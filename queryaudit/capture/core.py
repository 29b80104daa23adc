"""What every driver hook shares: the active captures, the recorded statement, and the
call site (the application's own line) found on the stack.

The hooks run in the application's process on every statement, so this module stays
small and cheap: no parsing here, only a stack walk while a capture is active.
"""

from __future__ import annotations

import contextvars
import os
import site
import sys
import sysconfig
import time
from dataclasses import dataclass, field

# The captures open in this thread / task (innermost last).
active: contextvars.ContextVar[tuple] = contextvars.ContextVar("queryaudit_captures", default=())
# Set while a framework hook (SQLAlchemy, Django) records a statement, so that the driver
# hook underneath does not record it a second time.
in_framework: contextvars.ContextVar[bool] = contextvars.ContextVar("queryaudit_in_framework", default=False)
# The same, by driver connection, for a framework whose driver calls run in another
# context (SQLAlchemy's async engines run the asyncpg calls in the awaiting greenlet).
framework_connections: set[int] = set()
# The ORM lazy load running now (queryaudit.capture.lazy.LazyLoad): its statements are its own.
loading: contextvars.ContextVar = contextvars.ContextVar("queryaudit_loading", default=None)
# Relations and call sites whose loops are accepted here (allow_n_plus_one()).
allow_list: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("queryaudit_allow", default=())


def skip(connection) -> bool:
    """True when a driver hook must not record: no capture, or a framework records it."""
    return not active.get() or in_framework.get() or id(connection) in framework_connections


def new_unit() -> None:
    """A unit of work begins or ends (a request, a nested capture): no loop spans it."""
    for cap in active.get():
        cap.unit += 1


MAX_STACK = 40


@dataclass
class CapturedStatement:
    sql: str
    parameters: object
    duration_ms: float
    call_site: str  # file:line of the application's own frame that ran it
    connection: int  # id() of the driver connection: the session
    source: str = "psycopg"  # psycopg | psycopg2 | asyncpg | sqlalchemy | django
    lazy: bool = False  # sent by an ORM lazy load (counted by its relation, not by its text)
    stack: list[str] = field(default_factory=list)  # file:line in function, innermost first


def _library_roots() -> tuple[str, ...]:
    """Directories whose code is not the application's: the standard library, installed
    packages (site-packages, dist-packages), and queryaudit itself."""
    paths = {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    try:
        paths.update(site.getsitepackages())
    except AttributeError:  # virtualenvs of old
        pass
    paths.add(site.getusersitepackages())
    paths.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the queryaudit package
    return tuple(os.path.join(os.path.realpath(p), "") for p in paths if p)


LIBRARY_ROOTS = _library_roots()
# The frameworks and drivers whose frames are never the application's, wherever they are
# installed (a vendored copy or a directory on PYTHONPATH is no site-packages).
LIBRARY_PACKAGES = frozenset(
    {
        "django",
        "sqlalchemy",
        "psycopg",
        "psycopg2",
        "psycopg_pool",
        "asyncpg",
        "asgiref",
        "greenlet",
        "pluggy",
        "_pytest",
        "pytest",
        "pytest_django",
        "pytest_asyncio",
    }
)


@dataclass(frozen=True)
class CallSiteRule:
    """Which frames count as the application's. `include` and `exclude` are module-name
    prefixes: include forces a frame in (an application installed into site-packages),
    exclude skips it (the application's own database helper layer)."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def is_application(self, module: str, filename: str) -> bool:
        if module and self.exclude and module.startswith(self.exclude):
            return False
        if module and self.include and module.startswith(self.include):
            return True
        if filename.startswith("<") or module.partition(".")[0] in LIBRARY_PACKAGES:  # <frozen ...>, <string>
            return False
        return not os.path.realpath(filename).startswith(LIBRARY_ROOTS)


def _frames(start):
    """The frames from `start` outwards; inside a greenlet (SQLAlchemy's asyncio bridge)
    the chain ends at the greenlet, so it goes on in the parent greenlet that awaits it."""
    frame = start
    greenlet = sys.modules.get("greenlet")
    current = greenlet.getcurrent() if greenlet else None
    while True:
        while frame is not None:
            yield frame
            frame = frame.f_back
        parent = getattr(current, "parent", None)
        if parent is None:
            return
        current, frame = parent, parent.gr_frame


def locate(rule: CallSiteRule, depth: int = 2) -> tuple[str, list[str]]:
    """(call site, stack): the innermost application frame as file:line (relative to the
    working directory when under it), and the whole stack, innermost first."""
    cwd = os.path.join(os.getcwd(), "")
    site_found, stack = "?", []
    for frame in _frames(sys._getframe(depth)):
        filename, line = frame.f_code.co_filename, frame.f_lineno
        shown = filename[len(cwd) :] if filename.startswith(cwd) else filename
        if len(stack) < MAX_STACK:
            stack.append(f"{shown}:{line} in {frame.f_code.co_name}")
        if site_found == "?" and rule.is_application(frame.f_globals.get("__name__", ""), filename):
            site_found = f"{shown}:{line}"
    return site_found, stack


def record(sql, params, started: float, connection, source: str, *, load=None) -> None:
    """Add one executed statement to every active capture."""
    captures = active.get()
    if not captures:
        return
    if isinstance(sql, bytes):
        sql = sql.decode(errors="replace")
    elif not isinstance(sql, str):  # psycopg.sql.Composed and friends
        sql = str(sql)
    site_found, stack = locate(captures[-1].call_sites, depth=3)
    statement = CapturedStatement(
        sql=sql,
        parameters=params,
        duration_ms=(time.perf_counter() - started) * 1000,
        call_site=site_found,
        connection=id(connection),
        source=source,
        stack=stack,
    )
    load = load or loading.get()
    if load is not None:
        statement.lazy = True
        load.statements.append(statement)
    for cap in captures:
        cap.record(statement)
