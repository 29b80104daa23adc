"""Driver hooks: psycopg 3 (sync and async), psycopg2 and asyncpg.

None of them has an execute hook of its own, so each is wrapped once, process-wide, at
the narrowest place every statement passes through; the wrappers record only inside an
active capture and never under a framework hook that records the statement itself.
"""

from __future__ import annotations

import functools
import inspect
import time

from queryaudit.capture import core


def _recording(original, connection_of, source: str):
    """`original` (sync or async), recording each call's statement and parameters."""
    if getattr(original, "_queryaudit", False):
        return original

    if inspect.iscoroutinefunction(original):

        @functools.wraps(original)
        async def wrapper(self, query, *args, **kwargs):
            if core.skip(connection_of(self)):
                return await original(self, query, *args, **kwargs)
            started = time.perf_counter()
            try:
                return await original(self, query, *args, **kwargs)
            finally:
                core.record(query, _parameters(args, kwargs), started, connection_of(self), source)
    else:

        @functools.wraps(original)
        def wrapper(self, query, *args, **kwargs):
            if core.skip(connection_of(self)):
                return original(self, query, *args, **kwargs)
            started = time.perf_counter()
            try:
                return original(self, query, *args, **kwargs)
            finally:
                core.record(query, _parameters(args, kwargs), started, connection_of(self), source)

    wrapper._queryaudit = True
    return wrapper


def _parameters(args: tuple, kwargs: dict):
    if "params" in kwargs:
        return kwargs["params"]
    if "vars" in kwargs:  # psycopg2's keyword
        return kwargs["vars"]
    return args[0] if len(args) == 1 else args


def install_psycopg() -> None:
    try:  # deferred: only the drivers the application has are hooked, and loaded
        import psycopg
    except ImportError:
        return
    for cls in (psycopg.Cursor, psycopg.AsyncCursor, psycopg.ServerCursor, psycopg.AsyncServerCursor):
        cls.execute = _recording(cls.execute, lambda cur: cur.connection, "psycopg")
    for cls in (psycopg.Cursor, psycopg.AsyncCursor):
        cls.executemany = _recording(cls.executemany, lambda cur: cur.connection, "psycopg")


def install_psycopg2() -> None:
    """psycopg2's cursor and connection are C types whose methods cannot be replaced, so
    `psycopg2.connect` is wrapped: each new connection gets a subclass whose cursors, of
    whatever cursor_factory the application asks for, record their statements. Code that
    looks up `psycopg2.connect` at call time (Django, SQLAlchemy, most applications) is
    covered; a connection opened before the first capture is not."""
    try:  # optional dependency
        import psycopg2
        import psycopg2.extensions
    except ImportError:
        return
    if getattr(psycopg2.connect, "_queryaudit", False):
        return
    original_connect = psycopg2.connect

    @functools.cache
    def recording_cursor(cursor_cls):
        methods = {
            name: _recording(getattr(cursor_cls, name), lambda cur: cur.connection, "psycopg2")
            for name in ("execute", "executemany", "callproc")
        }
        return type(f"QueryAudit{cursor_cls.__name__}", (cursor_cls,), methods)

    @functools.cache
    def recording_connection(connection_cls):
        def cursor(self, *args, **kwargs):
            factory = kwargs.pop("cursor_factory", None) or self.cursor_factory or psycopg2.extensions.cursor
            return connection_cls.cursor(self, *args, cursor_factory=recording_cursor(factory), **kwargs)

        return type(f"QueryAudit{connection_cls.__name__}", (connection_cls,), {"cursor": cursor})

    @functools.wraps(original_connect)
    def connect(*args, connection_factory=None, **kwargs):
        factory = recording_connection(connection_factory or psycopg2.extensions.connection)
        return original_connect(*args, connection_factory=factory, **kwargs)

    connect._queryaudit = True
    psycopg2.connect = connect


def install_asyncpg() -> None:
    try:  # optional dependency
        from asyncpg import connection, prepared_stmt
    except ImportError:
        return
    cls = connection.Connection
    for name in ("execute", "executemany", "fetch", "fetchrow", "fetchval", "fetchmany"):
        if hasattr(cls, name):
            setattr(cls, name, _recording(getattr(cls, name), lambda conn: conn, "asyncpg"))
    # conn.prepare(sql) then stmt.fetch(...): the statement's text and connection are the prepared one's.
    stmt_cls = prepared_stmt.PreparedStatement
    for name in ("fetch", "fetchrow", "fetchval", "fetchmany", "executemany"):
        if hasattr(stmt_cls, name):
            setattr(stmt_cls, name, _prepared(getattr(stmt_cls, name)))


def _prepared(original):
    if getattr(original, "_queryaudit", False):
        return original

    @functools.wraps(original)
    async def wrapper(self, *args, **kwargs):
        if core.skip(self._connection):
            return await original(self, *args, **kwargs)
        started = time.perf_counter()
        try:
            return await original(self, *args, **kwargs)
        finally:
            core.record(self.get_query(), args, started, self._connection, "asyncpg")

    wrapper._queryaudit = True
    return wrapper
