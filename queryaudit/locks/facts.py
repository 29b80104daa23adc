"""Lock facts: what the lock sampler (or a server log) saw, as plain JSON-able dataclasses.

Collected by `queryaudit.locks.sampling` (live sampling of pg_stat_activity / pg_locks)
and `queryaudit.locks.log` (log_lock_waits lines); read by the lock-contention,
long-transaction and idle-in-transaction checks and by the report. Statements are
named by a key: the pg_stat_statements queryid when the server reports one (14+ with
compute_query_id), else `fp:<pglast fingerprint>`; their text is normalized (no literal
values), because pg_stat_activity and the log show the raw text with its parameters.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from pglast import ast
from pglast.parser import normalize as pg_normalize

from queryaudit.sql import fingerprint, parse, statement_kind

if TYPE_CHECKING:  # the snapshot holds lock facts
    from queryaudit.snapshot import Snapshot

# Defaults of the thresholds the sampler records against (the CLI can change them;
# the chosen values are kept in the facts so the checks judge by what was asked).
LONG_TRANSACTION_S = 60.0
IDLE_IN_TRANSACTION_S = 10.0
MAX_QUERY_CHARS = 2000


@dataclass
class LockStatement:
    key: str
    queryid: str | None
    query: str  # normalized: constants replaced by $n

    @property
    def kind(self) -> str:
        return statement_kind(self.query) if self.query else "invalid"


@dataclass
class LockWait:
    """Wait time of one statement behind another on one object, summed over the window."""

    relation: str | None  # schema.name; None when the object is not a relation (advisory, ...)
    locktype: str  # relation | tuple | transactionid | page | extend | advisory | object | ...
    mode: str  # the mode waited for
    waiting: str  # statement key
    blocking: str | None  # statement key of the direct blocker
    root: str | None  # statement key of the root blocker (the one that does not wait)
    wait_ms: float = 0.0
    samples: int = 0  # ticks (sampler) or log events
    blocker_modes: list[str] = field(default_factory=list)  # what the direct blocker holds on the object
    rows: list[str] = field(default_factory=list)  # "(page,tuple)" of row waits
    blocker_state: str | None = None
    source: str = "sample"  # sample | log
    # Per "(page,tuple)" (or advisory key): how many waiting samples named it; the
    # hot-row pattern is many waits on few of these.
    row_samples: dict[str, int] = field(default_factory=dict)
    # The root blocker's longest stretch idle inside its transaction while this wait lasted
    # (sampler only): at how many consecutive ticks it was seen idle in one and the same idle
    # period, and how long it had been idle at the last of them. One tick alone can catch a
    # client between two statements that the scheduler held up: a stretch shows it stayed idle.
    root_idle_ticks: int = 0
    root_idle_s: float = 0.0
    root_xact_age_s: float = 0.0  # the oldest the root blocker's transaction was, at any tick


@dataclass
class LockEpisode:
    """One root blocker holding others up over consecutive ticks (or one logged wait)."""

    root_pid: int
    root_statement: str | None
    root_state: str | None
    root_xact_start: str | None
    first_ms: float
    last_ms: float
    ticks: int = 0
    max_waiters: int = 0
    wait_ms: float = 0.0
    relations: list[str] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)
    # The largest tree seen: chain_node dicts, each with its children (rendered as a tree).
    tree: dict[str, Any] = field(default_factory=dict)


def chain_node(pid: int, statement: str | None, **known: Any) -> dict[str, Any]:
    """One session of a lock chain (LockEpisode.tree), the same keys from the sampler and the
    log: what the source does not know stays None (the lock it waits for: None at the root)."""
    return {
        "pid": pid,
        "statement": statement,
        "queryid": None,
        "query": None,
        "state": None,
        "locktype": None,
        "mode": None,
        "relation": None,
        "row": None,
        "waiting_ms": None,
        "blocked_by_holds": [],
        "also_blocked_by": [],
        "children": [],
    } | known


@dataclass
class TransactionObservation:
    """A client session whose transaction stayed open past a threshold during the window."""

    pid: int
    xact_start: str | None
    usename: str | None = None
    application_name: str | None = None
    first_seen_ms: float = 0.0
    last_seen_ms: float = 0.0
    max_age_s: float = 0.0
    last_state: str | None = None
    max_idle_in_transaction_s: float = 0.0
    statement: str | None = None  # key of the last statement the session ran
    holds_xid: bool = False  # it wrote: its row locks and xid are held until it ends
    holds_xmin: bool = False  # it holds back the vacuum horizon
    held_locks: list[str] = field(default_factory=list)  # "RowExclusiveLock on public.accounts"
    blocked_ms: float = 0.0  # wait time of others behind it during the window
    waited_on_lock: bool = False  # it waited for a lock itself at some tick


@dataclass
class TimelineTick:
    t_ms: float
    waiting: int
    relations: dict[str, int] = field(default_factory=dict)


@dataclass
class LockFacts:
    source: str  # sample | log
    started_at: str | None = None
    database: str | None = None
    window_s: float = 0.0  # the sampled window (planned), or the span the log covers
    elapsed_s: float = 0.0
    rate_hz: float = 0.0
    ticks: int = 0
    # Ticks whose query outlived the sampler's statement_timeout (a busy server or a stalled
    # sampler): skipped, the sample goes on; the wait they would have seen is not counted.
    lost_ticks: int = 0
    lock_queries: int = 0  # pg_locks reads (only on ticks where someone waited)
    interrupted: bool = False
    long_transaction_s: float = LONG_TRANSACTION_S
    idle_in_transaction_s: float = IDLE_IN_TRANSACTION_S
    statements: dict[str, LockStatement] = field(default_factory=dict)
    waits: list[LockWait] = field(default_factory=list)
    episodes: list[LockEpisode] = field(default_factory=list)
    transactions: list[TransactionObservation] = field(default_factory=list)
    timeline: list[TimelineTick] = field(default_factory=list)
    deadlocks: list[dict[str, Any]] = field(default_factory=list)  # log: processes, statements, locks
    lock_timeouts: list[dict[str, Any]] = field(default_factory=list)  # log: statement, count
    # The server's own values (pg_settings.reset_val: not the audit session's limits) of
    # the settings the advice depends on.
    settings: dict[str, str] = field(default_factory=dict)
    # Database time sampled over the window: client sessions active at each tick times the
    # tick's weight (the denominator of a lock wait's share; sampler only, 0 from a log).
    db_time_ms: float = 0.0

    def statement(self, key: str | None) -> LockStatement | None:
        return self.statements.get(key) if key else None

    def add_statement(self, queryid: str | int | None, text: str | None) -> str | None:
        """Register a statement seen in pg_stat_activity or the log; return its key."""
        if not text and not queryid:
            return None
        key, normalized = statement_key(queryid, text or "")
        if key not in self.statements or (not self.statements[key].query and normalized):
            qid = str(queryid) if queryid not in (None, 0, "0", "") else None
            self.statements[key] = LockStatement(key=key, queryid=qid, query=normalized)
        return key


def statement_key(queryid: str | int | None, text: str) -> tuple[str, str]:
    normalized = normalize(text)
    if queryid not in (None, 0, "0", ""):
        return str(queryid), normalized
    return _fingerprint_key(normalized), normalized


@lru_cache(maxsize=4096)
def _fingerprint_key(normalized: str) -> str:
    fp = fingerprint(normalized)
    if fp:
        return f"fp:{fp}"

    return "text:" + hashlib.sha1(" ".join(normalized.split()).encode()).hexdigest()[:16]


_LITERALS = re.compile(r"'(?:[^']|'')*'|\b\d+(?:\.\d+)?\b")


@lru_cache(maxsize=4096)
def normalize(text: str) -> str:
    """The statement without its literal values (they may be personal data)."""
    text = (text or "").strip()
    if not text:
        return ""
    try:
        out = pg_normalize(text)
    except Exception:  # truncated by track_activity_query_size, or not SQL: redact by pattern
        out = _LITERALS.sub("?", text)
    return out[:MAX_QUERY_CHARS]


def write_target(query: str | None) -> str | None:
    """The table an INSERT, UPDATE or DELETE writes (schema.name as written, public when bare)."""

    stmts = parse(query or "") if query else None
    if not stmts or len(stmts) != 1:
        return None
    stmt = stmts[0].stmt
    if not isinstance(stmt, (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt)) or stmt.relation is None:
        return None
    return f"{stmt.relation.schemaname or 'public'}.{stmt.relation.relname}"


def describe(facts: LockFacts, key: str | None, snapshot: Snapshot | None) -> dict:
    """A statement as evidence: its queryid and text (pg_stat_statements' text when it has one)."""
    stmt: LockStatement | None = facts.statement(key)
    if stmt is None:
        return {"statement": key, "queryid": None, "query": None}
    known = snapshot.statement(stmt.queryid) if snapshot is not None and stmt.queryid else None
    return {"statement": key, "queryid": stmt.queryid, "query": known.query if known else stmt.query}


def short(text: str | None, limit: int = 70) -> str:
    one = " ".join((text or "?").split())
    return one if len(one) <= limit else one[: limit - 1] + "…"
