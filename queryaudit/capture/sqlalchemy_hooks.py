"""SQLAlchemy hooks: the engine's cursor events (sync engines, and async ones, whose events
run on the sync engine underneath, whatever the driver) record the statements;
`do_orm_execute` sees each lazy load (`lazy_loaded_from`: the instance, and the
relationship on its loader path), and the `load` / `refresh` instance events mark the
rows each query gave, so a lazy load knows whether its instance came from a multi-row
result and along which path (selectinload / joinedload of the whole chain)."""

from __future__ import annotations

import contextvars
import time

from queryaudit.capture import core, lazy
from queryaudit.capture.lazy import Hop, Origin

# Set by do_orm_execute for the statement that follows it: the lazy load it belongs to.
pending: contextvars.ContextVar = contextvars.ContextVar("queryaudit_sa_pending", default=None)
# The lazy load running now, whose rows are one hop down the parent's path (chains).
loading_parent: contextvars.ContextVar = contextvars.ContextVar("queryaudit_sa_parent", default=None)


def install() -> None:
    try:
        # deferred: the hooks load in the application's process, which may not use SQLAlchemy
        from sqlalchemy import event
        from sqlalchemy.engine import Engine
        from sqlalchemy.orm import Mapper, Session
    except ImportError:
        return

    @event.listens_for(Engine, "before_cursor_execute")
    def _before(conn, cursor, statement, parameters, context, executemany):
        if core.active.get():
            conn.info.setdefault("queryaudit_started", []).append(time.perf_counter())
            conn.info.setdefault("queryaudit_tokens", []).append(core.in_framework.set(True))
            core.framework_connections.add(_driver_connection(conn))

    @event.listens_for(Engine, "after_cursor_execute")
    def _after(conn, cursor, statement, parameters, context, executemany):
        if not conn.info.get("queryaudit_started"):
            return
        started = _done(conn)
        load = pending.get()
        pending.set(None)
        core.record(statement, parameters, started, conn.connection.dbapi_connection, "sqlalchemy", load=load)

    @event.listens_for(Engine, "handle_error")
    def _error(context):
        conn = context.connection
        if conn is not None and conn.info.get("queryaudit_started"):
            _done(conn)

    @event.listens_for(Session, "do_orm_execute")
    def _orm(state):
        if not core.active.get():
            return
        loaded_from = state.lazy_loaded_from if state.is_relationship_load else None
        instance = loaded_from.obj() if loaded_from is not None else None
        prop = _relationship(state) if instance is not None else None
        if prop is None:
            pending.set(None)
            loading_parent.set(None)
            return
        hop = Hop(type(instance).__name__, prop.key, bool(prop.uselist))
        load = lazy.start("sqlalchemy", hop, "relation", instance)
        pending.set(load)
        loading_parent.set(load)
        lazy.finish(load)  # before the SQL: strict mode fails here, at the application's line

    @event.listens_for(Mapper, "load")
    def _loaded(target, context):
        _mark(target, context)

    @event.listens_for(Mapper, "refresh")
    def _refreshed(target, context, attrs):
        _mark(target, context)


def _relationship(state):
    """The relationship a lazy load loads, from its loader path; None for a path of
    another shape (no hint rather than a wrong one)."""
    path = state.loader_strategy_path
    try:
        prop = path[-1] if hasattr(path[-1], "direction") else path[1]
        return prop if hasattr(prop, "direction") else None
    except Exception:
        return None


def _mark(target, context) -> None:
    captures = core.active.get()
    if not captures:
        return
    parent = loading_parent.get()
    if parent is not None and parent.origin is not None:  # a lazy load's rows: one hop down its path
        lazy.mark(target, Origin(parent.origin.result, parent.path))
        return
    key = ("queryaudit_result", type(target))
    result = context.attributes.get(key)
    if result is None:
        site, _ = core.locate(captures[-1].call_sites, depth=3)
        statements = captures[-1].statements
        result = context.attributes[key] = lazy.new_result(
            lazy.Result("sqlalchemy", type(target).__name__, site, statement=statements[-1].sql if statements else None)
        )
    result.rows += 1
    lazy.mark(target, Origin(result), replace=parent is None)


def _driver_connection(conn) -> int:
    return id(conn.connection.driver_connection)  # the asyncpg connection behind the async adapter


def _done(conn) -> float:
    core.in_framework.reset(conn.info["queryaudit_tokens"].pop())
    core.framework_connections.discard(_driver_connection(conn))
    return conn.info["queryaudit_started"].pop()
