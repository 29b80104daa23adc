"""SQLAlchemy hooks: the engine's cursor events (sync engines, and async ones, whose events
run on the sync engine underneath, whatever the driver) and `do_orm_execute`, which names
the relationship a lazy load comes from: the selectinload/joinedload hint."""
from __future__ import annotations

import contextvars
import time

from queryaudit.capture import core

# Set by do_orm_execute for the one statement that follows it.
orm_path: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("queryaudit_orm_path", default=None)
def install() -> None:
    try:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine
        from sqlalchemy.orm import Session
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
        path = orm_path.get()
        orm_path.set(None)
        core.record(statement, parameters, started, conn.connection.dbapi_connection, "sqlalchemy", orm_path=path,
                    fix_hint=orm_hint(path))

    @event.listens_for(Engine, "handle_error")
    def _error(context):
        conn = context.connection
        if conn is not None and conn.info.get("queryaudit_started"):
            _done(conn)

    @event.listens_for(Session, "do_orm_execute")
    def _orm(state):
        if not core.active.get() or not state.is_relationship_load:
            return
        path = state.loader_strategy_path
        try:
            prop = path[-1] if hasattr(path[-1], "direction") else path[1]
            orm_path.set((prop.parent.class_.__name__, prop.key, prop.direction.name))
        except Exception:  # a loader path of another shape: no hint rather than a wrong one
            orm_path.set(None)


def _driver_connection(conn) -> int:
    return id(conn.connection.driver_connection)  # the asyncpg connection behind the async adapter


def _done(conn) -> float:
    core.in_framework.reset(conn.info["queryaudit_tokens"].pop())
    core.framework_connections.discard(_driver_connection(conn))
    return conn.info["queryaudit_started"].pop()


def orm_hint(path: tuple | None) -> str | None:
    if not path:
        return None
    owner, key, direction = path
    loader = "selectinload" if direction in ("ONETOMANY", "MANYTOMANY") else "joinedload"
    return (f"load {owner}.{key} eagerly: .options({loader}({owner}.{key})) on the query that loads the {owner} "
            f"rows (or lazy=\"{'selectin' if loader == 'selectinload' else 'joined'}\" on the relationship)")
