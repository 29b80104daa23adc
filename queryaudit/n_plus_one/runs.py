"""Loops in a stream of statements: runs of one fingerprint close together in one session
(server logs, and raw driver statements in an application capture)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from queryaudit.n_plus_one import MAX_GAP, MAX_SESSIONS, MIN_EXECUTIONS, MIN_RUN_MS

_MAX_PARAM_KEYS = 32
_LOOKBACK = 6


# -- loops in a stream of statements ----------------------------------------------------------


@dataclass(slots=True)
class Run:
    """Executions of one fingerprint close together in one session."""

    session: str
    fingerprint: str
    query: str
    queryid: str | None = None
    count: int = 0
    total_ms: float = 0.0
    first_ts: str | None = None
    last_ts: str | None = None
    param_keys: set = field(default_factory=set)
    example_parameters: list = field(default_factory=list)
    call_sites: dict[str, int] = field(default_factory=dict)
    parent_fingerprint: str | None = None
    parent_query: str | None = None
    parent_queryid: str | None = None
    parent_call_site: str | None = None
    orm_path: str | None = None
    unit: tuple | None = None  # (session, the BEGIN that opened its transaction), or the run itself in autocommit
    _last_index: int = 0
    _preceding: tuple = ()
    _parent: tuple | None = None

    @property
    def distinct_parameters(self) -> int:
        return len(self.param_keys)


class _Session:
    __slots__ = ("index", "active", "recent", "block", "last")

    def __init__(self):
        self.index = 0
        self.last = None  # the fingerprint fed last
        self.block: int | None = None  # index of the BEGIN of the open transaction block
        self.active: dict[str, Run] = {}
        self.recent: deque = deque(maxlen=_LOOKBACK)  # (fingerprint, query, queryid, run, call_site)


class RunDetector:
    """Feed statements in order; `on_run` gets every qualifying loop when it ends.

    Memory: per session, the runs still open (at most MAX_GAP + 1) and the last few
    statements; at most MAX_SESSIONS sessions (the least recently active is closed).
    """

    def __init__(
        self,
        on_run: Callable[[Run], None],
        min_executions: int = MIN_EXECUTIONS,
        min_total_ms: float = MIN_RUN_MS,
        max_gap: int = MAX_GAP,
        max_sessions: int = MAX_SESSIONS,
    ):
        self.on_run = on_run
        self.min_executions = min_executions
        self.min_total_ms = min_total_ms
        self.max_gap = max_gap
        self.max_sessions = max_sessions
        self.sessions: dict[str, _Session] = {}

    def feed(
        self,
        session: str,
        fingerprint: str,
        query: str,
        params_key,
        duration_ms: float | None,
        timestamp: str | None = None,
        queryid: str | None = None,
        call_site: str | None = None,
        orm_path: str | None = None,
    ) -> None:
        # Called for every statement of a log: kept to a few dict operations.
        sessions = self.sessions
        state = sessions.get(session)
        if state is None:
            if len(sessions) >= self.max_sessions:  # the session seen first goes (flat memory)
                self._close_all(sessions.pop(next(iter(sessions))))
            state = sessions[session] = _Session()
        state.index += 1
        index = state.index
        active = state.active
        if active and not (len(active) == 1 and state.last == fingerprint):
            # (The loop's next iteration, alone in the session: nothing can have ended.)
            # A run ends after MAX_GAP other statements, or when its parent comes again (the
            # next page of the list: a new loop begins).
            limit = index - self.max_gap - 1
            ended = [
                fp
                for fp, r in active.items()
                if r._last_index < limit or (r._parent is not None and r._parent[0] == fingerprint)
            ]
            for fp in ended:
                self._close(active.pop(fp))
        run = active.get(fingerprint)
        if run is None:
            run = Run(
                session,
                fingerprint,
                query,
                queryid=queryid,
                first_ts=timestamp,
                orm_path=orm_path,
                unit=(session, state.block if state.block is not None else -index),
            )
            run._preceding = tuple(state.recent)
            state.active[fingerprint] = run
        run.count += 1
        if run.count == self.min_executions:
            run._parent = self._find_parent(run)
        run.total_ms += duration_ms or 0.0
        run.last_ts = timestamp
        run._last_index = index
        if len(run.param_keys) < _MAX_PARAM_KEYS and params_key not in run.param_keys:
            run.param_keys.add(params_key)
            if len(run.example_parameters) < 3 and params_key is not None:
                run.example_parameters.append(params_key)
        if call_site:
            run.call_sites[call_site] = run.call_sites.get(call_site, 0) + 1
        state.recent.append((fingerprint, query, queryid, run, call_site))
        state.last = fingerprint

    def set_block(self, session: str, begin: bool) -> None:
        """BEGIN (begin) or COMMIT/ROLLBACK just ran in the session: runs started inside one
        transaction block share it as their unit."""
        state = self.sessions.get(session)
        if state is not None:
            state.block = state.index if begin else None

    def end_session(self, session: str) -> None:
        state = self.sessions.pop(session, None)
        if state is not None:
            self._close_all(state)

    def finish(self) -> None:
        for state in self.sessions.values():
            self._close_all(state)
        self.sessions.clear()

    def _close_all(self, state: _Session) -> None:
        for run in state.active.values():
            self._close(run)
        state.active.clear()

    def _qualifies(self, run: Run) -> bool:
        return run.count >= self.min_executions and run.distinct_parameters >= 2 and run.total_ms >= self.min_total_ms

    def _find_parent(self, run: Run) -> tuple | None:
        """The latest statement before the loop that is not itself in a loop."""
        for fp, query, queryid, other, site in reversed(run._preceding):
            if fp != run.fingerprint and other.count < self.min_executions:
                return fp, query, queryid, site
        return None

    def _close(self, run: Run) -> None:
        parent = run._parent
        run._preceding, run._parent = (), None
        if not self._qualifies(run):
            return
        if parent:
            run.parent_fingerprint, run.parent_query, run.parent_queryid, run.parent_call_site = parent
        self.on_run(run)
