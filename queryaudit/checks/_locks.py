"""Helpers the three lock checks share (not a check: the name starts with an underscore)."""

from __future__ import annotations

from queryaudit.locks.facts import LockFacts, LockWait, describe, short, write_target  # noqa: F401
from queryaudit.snapshot import Snapshot
from queryaudit.sql import quote_ident


def lock_facts(snapshot: Snapshot) -> list[LockFacts]:
    return [f for f in (snapshot.lock_samples, snapshot.lock_log) if f is not None]


def real_queryids(facts: LockFacts, keys) -> list[str]:
    """pg_stat_statements queryids only (a text fingerprint is not one)."""
    out = []
    for key in keys:
        stmt = facts.statement(key)
        if stmt and stmt.queryid and stmt.queryid not in out:
            out.append(stmt.queryid)
    return out


def setting_is_off(facts: LockFacts, name: str) -> bool:
    """Off on the server (the sampler records pg_settings.reset_val, not the audit
    session's own timeouts); unknown counts as off."""
    value = (facts.settings or {}).get(name)
    return value is None or value.split()[0] in ("0", "")


def alter_database_sql(snapshot: Snapshot, name: str, value: str) -> str:
    return f"ALTER DATABASE {quote_ident(snapshot.server.database or 'postgres')} SET {name} = '{value}';"


# -- lock contention patterns: which one a wait belongs to ------------------------------
# A root blocker idle inside its transaction this long, while others waited, is the cause
# of their wait (a client between two statements is idle for microseconds: not a cause)...
IDLE_BLOCKER_S = 1.0
# ...when the sampler saw it idle, in that one idle period, at this many consecutive ticks
# of the wait: a single tick can catch a client the scheduler held up between two
# statements (on a busy machine, for a second or more) in an otherwise hot-row wait.
IDLE_BLOCKER_TICKS = 2
DDL_MODES = {"AccessExclusiveLock", "ExclusiveLock", "ShareRowExclusiveLock", "ShareLock"}
ROW_LOCKTYPES = ("tuple", "transactionid")
# Precedence when several explain one wait: the first one names it.
PATTERNS = ("advisory", "ddl-queue", "fk-share", "idle-blocker", "long-transaction", "hot-row", "table-lock")


def statement_kind(facts: LockFacts, key: str | None) -> str:
    stmt = facts.statement(key)
    return stmt.kind if stmt else "invalid"


def is_ddl_wait(facts: LockFacts, key: str | None, mode: str) -> bool:
    return mode in DDL_MODES and statement_kind(facts, key) == "other"


def ddl_waits(facts: LockFacts) -> tuple[set[str], set[str]]:
    """(statement keys, relations) of DDL that waited for its lock: what queues behind it
    (blocked by it, or waiting on the same relation: a log names the holder, not the queue)
    is part of the DDL queue."""
    waits = [w for w in facts.waits if w.locktype in ("relation", "object") and is_ddl_wait(facts, w.waiting, w.mode)]
    return {w.waiting for w in waits}, {w.relation for w in waits if w.relation}


def classify(facts: LockFacts, wait: LockWait, snapshot: Snapshot, ddl: tuple[set[str], set[str]]) -> str:
    """The pattern that explains one wait (`ddl`: from ddl_waits)."""
    if wait.locktype == "advisory":
        return "advisory"
    if wait.locktype in ("relation", "object") and (
        is_ddl_wait(facts, wait.waiting, wait.mode) or wait.blocking in ddl[0] or wait.relation in ddl[1]
    ):
        return "ddl-queue"
    if wait.locktype in ROW_LOCKTYPES:
        stmt = facts.statement(wait.waiting)
        target = write_target(stmt.query if stmt else None)
        if target and wait.relation and target != wait.relation and _references(snapshot, target, wait.relation):
            return "fk-share"
    if wait.root_idle_s >= IDLE_BLOCKER_S and wait.root_idle_ticks >= IDLE_BLOCKER_TICKS:
        return "idle-blocker"
    if facts.source == "sample" and wait.root_xact_age_s >= facts.long_transaction_s:
        return "long-transaction"
    return "hot-row" if wait.locktype in ROW_LOCKTYPES else "table-lock"


def _references(snapshot: Snapshot, child: str, parent: str) -> bool:
    """A foreign key from child to parent; without the catalog, assume one (the waiter
    writes one table and waits for a row of another: a foreign key check is what does that)."""
    if not snapshot.foreign_keys:
        return True
    return any(fk.table == child and fk.ref_table == parent for fk in snapshot.foreign_keys)


def foreign_keys_between(snapshot: Snapshot, child: str, parent: str) -> list[str]:
    return [fk.name for fk in snapshot.foreign_keys if fk.table == child and fk.ref_table == parent]
