"""Typed events read from PostgreSQL logs (see queryaudit.logs for the API)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class LogEvent:
    """What every log entry carries; fields the log format or prefix lacks are None."""

    timestamp: str | None = None
    pid: int | None = None
    session_id: str | None = None  # %c / csv session_id / json session_id
    line_num: int | None = None
    vxid: str | None = None
    xid: str | None = None
    user: str | None = None
    database: str | None = None
    application: str | None = None
    host: str | None = None
    queryid: str | None = None  # %Q (14+); None when absent or 0
    sqlstate: str | None = None
    severity: str = "LOG"
    source: str = ""  # file:line of the entry's first line

    @property
    def session_key(self) -> str:
        """What identifies one connection: %c when logged, else the backend pid."""
        return self.session_id or f"pid:{self.pid}"


@dataclass(slots=True)
class StatementEvent(LogEvent):
    """One statement execution: `duration: ... statement:/execute ...:` (log_min_duration_statement)
    or `statement:` (log_statement) lines; `phase` is simple, execute, parse or bind."""

    query: str = ""
    duration_ms: float | None = None
    phase: str = "simple"
    prepared_name: str | None = None
    parameters: list[str] = field(default_factory=list)  # $1, $2... values as logged (quoted text)


@dataclass(slots=True)
class PlanEvent(LogEvent):
    """An auto_explain plan: text (the indented tree) or the parsed JSON (FORMAT JSON)."""

    query: str = ""
    duration_ms: float | None = None
    plan_text: str | None = None
    plan_json: dict | None = None


@dataclass(slots=True)
class LockEvent(LogEvent):
    """log_lock_waits and lock failures.

    kind: waiting (`still waiting for`), acquired (after a wait), deadlock (`deadlock
    detected`, ERROR), deadlock-avoided, timeout (`canceling statement due to lock
    timeout`), detected (`detected deadlock while waiting`).
    """

    kind: str = "waiting"
    lock_mode: str | None = None  # ShareLock, AccessExclusiveLock, ...
    lock_object: str | None = None  # as logged: `transaction 123`, `relation 16384 of database 5`, ...
    lock_type: str | None = None  # transaction, relation, tuple, virtual transaction, advisory, ...
    relation_oid: int | None = None
    relation_name: str | None = None  # from CONTEXT `... in relation "t"` when logged
    database_oid: int | None = None
    waited_ms: float | None = None
    holders: list[int] = field(default_factory=list)
    wait_queue: list[int] = field(default_factory=list)
    statement: str | None = None  # STATEMENT: the waiting (or failing) statement
    detail: str | None = None  # the raw DETAIL (deadlock: the cycle and each process's statement)
    context: str | None = None


@dataclass(slots=True)
class TempFileEvent(LogEvent):
    """`temporary file: path "...", size N` (log_temp_files)."""

    path: str = ""
    size_bytes: int = 0
    statement: str | None = None


@dataclass(slots=True)
class SessionEndEvent(LogEvent):
    """`disconnection: session time: ...` (log_disconnections): the session's state can go."""
