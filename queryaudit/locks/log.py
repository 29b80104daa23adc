"""Lock contention from server logs: `log_lock_waits` waits, deadlocks and lock timeouts.

Built on the log ingest's event stream (`queryaudit.logs.iter_events`: LockEvent,
StatementEvent, SessionEndEvent); it parses no log format itself. A wait's holders are
pids (DETAIL `Process holding the lock: ...`): they are joined to their statements
through the session: the last statement that session logged before the wait (with
`log_statement` a statement is logged when it starts), else the first one it logs
afterwards (with `log_min_duration_statement` a statement still running at the time of
the wait is logged when it ends). Transaction control statements (BEGIN, COMMIT, ...)
are never taken for the blocker.

The result is the same `LockFacts` the sampler produces (source "log"), so the
lock-contention check reads both the same way.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from pathlib import Path

from queryaudit.locks.facts import LockEpisode, LockFacts, LockWait, chain_node
from queryaudit.logs import LockEvent, SessionEndEvent, StatementEvent, iter_events
from queryaudit.sql import referenced_relations

_TRANSACTION_CONTROL = re.compile(
    r"^\s*(BEGIN|START\s+TRANSACTION|COMMIT|END|ROLLBACK|ABORT|SAVEPOINT|RELEASE|"
    r"PREPARE\s+TRANSACTION|SET|SHOW|RESET|DISCARD|DEALLOCATE)\b",
    re.I,
)
_ROW = re.compile(r"tuple \((\d+,\d+)\)")
_DEADLOCK_STATEMENT = re.compile(r"^Process (\d+): (.*)$", re.M)
_DEADLOCK_WAIT = re.compile(r"Process (\d+) waits for (\S+) on (.+?); blocked by process (\d+)\.")
MAX_WAIT_ROWS = 20
MAX_DEADLOCKS = 200
MAX_SESSIONS = 50_000  # sessions remembered at once (their latest statement)
MAX_EPISODES = 5_000  # blocking episodes kept (one per root, relation and minute)


def _parse_timestamp(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    parts = text.split()
    try:
        return dt.datetime.fromisoformat(" ".join(parts[:2]))
    except ValueError:
        return None


class LockLogAnalyser:
    """Feed events in log order (`add`), then `facts()`."""

    def __init__(
        self, relation_names: dict[int, str] | None = None, tables: Iterable[str] = (), database: str | None = None
    ):
        self.relation_names = relation_names or {}  # pg_class oid -> schema.name, for `database`
        self.by_name: dict[str, list[str]] = {}
        for qualified in tables:
            self.by_name.setdefault(qualified.rsplit(".", 1)[-1], []).append(qualified)
        self.database = database
        self.facts = LockFacts(source="log", database=database)
        self.session_of_pid: dict[int, str] = {}
        self.last_statement: dict[str, tuple[str | None, str]] = {}  # session -> (queryid, query)
        self.pending: dict[str, list[LockWait]] = {}  # session -> waits whose blocker is not known yet
        self.open_waits: dict[tuple[int, str], dict] = {}  # (pid, lock object) -> the wait in progress
        self.waits: dict[tuple, LockWait] = {}
        self.episodes: dict[tuple, LockEpisode] = {}
        self.first_text = self.last_text = None  # timestamps as logged, parsed once at the end
        self._control: dict[str, bool] = {}  # statement text -> transaction control (never a blocker)
        # Set by the log ingest (LogDigest.recent_statements): pid -> its session's latest
        # statements, so that statements need not be fed one by one; then `statement()` is
        # only called while a wait's blocker is unknown (`pending`).
        self.recent = None
        self.learned: dict[int, str] = {}  # relation OIDs named from the statements that locked them

    # -- the stream ----------------------------------------------------------------------
    def statement(self, session: str, pid: int | None, queryid: str | None, query: str, timestamp: str | None) -> None:
        """One statement of the log: remembered as its session's latest, the candidate
        blocker of a later wait. (Fed by the log ingest, which keeps the sessions' latest
        statements itself (`recent`), this is only called while `pending` waits exist.)"""
        if timestamp:
            self.first_text = self.first_text or timestamp
            self.last_text = timestamp
        if pid is not None and session[:4] != "pid:":
            if len(self.session_of_pid) >= MAX_SESSIONS:  # flat memory on endless logs
                self.session_of_pid.clear()
            self.session_of_pid[pid] = session
        if self._is_control(query):
            return
        if self.recent is None:
            if len(self.last_statement) >= MAX_SESSIONS and session not in self.last_statement:
                self.last_statement.pop(next(iter(self.last_statement)))
            self.last_statement[session] = (queryid, query)
        if self.pending:
            waits = self.pending.pop(session, None)
            if waits is None and pid is not None:  # keyed by pid when the holder's session was not known
                waits = self.pending.pop(f"pid:{pid}", None)
            for wait in waits or ():
                wait.blocking = wait.root = self.facts.add_statement(queryid, query)

    def add(self, event) -> None:
        if isinstance(event, StatementEvent):
            if event.phase not in ("parse", "bind"):
                self.statement(event.session_key, event.pid, event.queryid, event.query or "", event.timestamp)
            return
        if event.pid is not None:
            self.session_of_pid[event.pid] = event.session_key
        if event.timestamp:
            self.first_text = self.first_text or event.timestamp
            self.last_text = event.timestamp
        if isinstance(event, SessionEndEvent):
            self.last_statement.pop(event.session_key, None)
        elif isinstance(event, LockEvent):
            if event.kind in ("waiting", "deadlock-avoided"):
                self._waiting(event)
            elif event.kind in ("acquired", "detected"):
                self._ended(event)
            elif event.kind == "deadlock":
                self._deadlock(event)
            elif event.kind == "timeout":
                self._timeout(event)

    def _relation(self, event: LockEvent) -> str | None:
        if event.relation_oid and (self.database is None or event.database in (None, self.database)):
            name = self.relation_names.get(event.relation_oid)
            if name:
                return name
        if event.relation_name:
            return self._qualify(None, event.relation_name)
        if event.relation_oid:
            if event.relation_oid in self.learned:
                return self.learned[event.relation_oid]
            # No catalog: a statement that names one relation locks that one (a relation or
            # row lock taken by its own statement, e.g. ALTER TABLE t or SELECT ... FROM t).

            named = referenced_relations(event.statement or "")
            if len(named) == 1 and event.lock_type in ("relation", "tuple"):
                name = self.learned[event.relation_oid] = self._qualify(*named[0])
                return name
            return f"relation {event.relation_oid}"
        return None

    def _qualify(self, schema: str | None, name: str) -> str:
        if schema:
            return f"{schema}.{name}"
        if "." in name:
            return name
        candidates = self.by_name.get(name, [])
        return candidates[0] if len(candidates) == 1 else f"public.{name}"

    def _holder_statement(self, pid: int) -> str | None:
        session = self.session_of_pid.get(pid, f"pid:{pid}")
        if self.recent is not None:  # fed by the log ingest: its sessions' latest statements, newest first
            known = next((s for s in self.recent(pid) if not self._is_control(s[1])), None)
        else:
            known = self.last_statement.get(session)
        return self.facts.add_statement(*known) if known else None

    def _is_control(self, query: str) -> bool:
        control = self._control.get(query)  # the same texts come back: one regex per text
        if control is None:
            if len(self._control) >= MAX_SESSIONS:
                self._control.clear()
            control = self._control[query] = _TRANSACTION_CONTROL.match(query) is not None
        return control

    def _waiting(self, event: LockEvent) -> None:
        key = (event.pid, event.lock_object or "")
        if key in self.open_waits:  # logged again (deadlock-avoided after waiting): update the duration
            self.open_waits[key]["waited_ms"] = event.waited_ms or self.open_waits[key]["waited_ms"]
            return
        relation = self._relation(event)
        row = _ROW.search(event.lock_object or "") or _ROW.search(event.context or "")
        waiting = self.facts.add_statement(event.queryid, event.statement or "") or "unknown"
        holder = event.holders[0] if event.holders else None
        blocking = self._holder_statement(holder) if holder is not None else None
        if relation and relation.startswith("relation ") and holder is not None:
            # A tuple lock names its relation by OID only; the holder, waiting on the same
            # row's transaction, logged its name (CONTEXT `while updating tuple ... in relation`).
            upstream = next((w for (p, _), w in self.open_waits.items() if p == holder), None)
            if upstream and upstream["relation"] and not upstream["relation"].startswith("relation "):
                relation = upstream["relation"]
        # The root: follow the holder while it waits itself.
        root_pid, seen = holder, {event.pid}
        while root_pid is not None and root_pid not in seen:
            seen.add(root_pid)
            upstream = next((w for (p, _), w in self.open_waits.items() if p == root_pid), None)
            if upstream is None or upstream["holder"] is None:
                break
            root_pid = upstream["holder"]
        root = self._holder_statement(root_pid) if root_pid is not None else None
        wkey = (relation, event.lock_type or "?", event.lock_mode or "?", waiting, blocking, root)
        wait = self.waits.get(wkey)
        if wait is None:
            wait = self.waits[wkey] = LockWait(
                relation=relation,
                locktype=_locktype(event.lock_type),
                mode=event.lock_mode or "?",
                waiting=waiting,
                blocking=blocking,
                root=root,
                source="log",
            )
        if row and row.group(1) and f"({row.group(1)})" not in wait.rows and len(wait.rows) < MAX_WAIT_ROWS:
            wait.rows.append(f"({row.group(1)})")
        if holder is not None and blocking is None:
            self.pending.setdefault(self.session_of_pid.get(holder, f"pid:{holder}"), []).append(wait)
        self.open_waits[key] = {
            "wait": wait,
            "waited_ms": event.waited_ms or 0.0,
            "holder": holder,
            "holders": event.holders,
            "queue": event.wait_queue,
            "relation": relation,
            "timestamp": event.timestamp,
            "mode": event.lock_mode,
            "root_pid": root_pid,
            "locktype": _locktype(event.lock_type),
            "row": wait.rows[-1] if wait.rows else None,
        }

    def _ended(self, event: LockEvent) -> None:
        key = (event.pid, event.lock_object or "")
        state = self.open_waits.pop(key, None)
        if state is None:  # its "still waiting" line was not in the files read
            self._waiting(event)
            state = self.open_waits.pop(key)
        state["waited_ms"] = max(state["waited_ms"], event.waited_ms or 0.0)
        self._close(event.pid, state)

    def _close(self, pid: int, state: dict) -> None:
        wait: LockWait = state["wait"]
        wait.wait_ms = round(wait.wait_ms + state["waited_ms"], 3)
        wait.samples += 1
        root_pid = state["root_pid"] if state["root_pid"] is not None else -1
        ekey = (root_pid, state["relation"], state["timestamp"][:16] if state["timestamp"] else None)
        episode = self.episodes.get(ekey)
        if episode is None and len(self.episodes) >= MAX_EPISODES:
            return  # flat memory on endless logs: the waits above still count
        if episode is None:
            episode = self.episodes[ekey] = LockEpisode(
                root_pid=root_pid,
                root_statement=wait.root,
                root_state=None,
                root_xact_start=None,
                first_ms=0.0,
                last_ms=0.0,
                tree=chain_node(root_pid, wait.root, timestamp=state["timestamp"]),
            )
        episode.ticks += 1
        episode.wait_ms = round(episode.wait_ms + state["waited_ms"], 3)
        episode.root_statement = episode.root_statement or wait.root
        if state["relation"] and state["relation"] not in episode.relations:
            episode.relations.append(state["relation"])
        if state["mode"] and state["mode"] not in episode.modes:
            episode.modes.append(state["mode"])
        episode.tree["children"].append(
            {
                "pid": pid,
                "statement": wait.waiting,
                "queryid": None,
                "query": None,
                "state": "active",
                "locktype": state["locktype"],
                "mode": state["mode"],
                "relation": state["relation"],
                "row": state["row"],
                "waiting_ms": round(state["waited_ms"], 1),
                "blocked_by_holds": [],
                "also_blocked_by": [h for h in state["holders"] if h != state["holder"]],
                "children": [],
                "blocked_by_pid": state["holder"],
                "timestamp": state["timestamp"],
            }
        )
        episode.max_waiters = max(episode.max_waiters, len(episode.tree["children"]))

    def _deadlock(self, event: LockEvent) -> None:
        statements = dict((int(p), q) for p, q in _DEADLOCK_STATEMENT.findall(event.detail or ""))
        cycle = _DEADLOCK_WAIT.findall(event.detail or "")
        relation = self._relation(event)
        processes = []
        for pid, mode, obj, blocker in cycle:
            key = self.facts.add_statement(None, statements.get(int(pid), ""))
            stmt = self.facts.statement(key)
            processes.append(
                {
                    "pid": int(pid),
                    "waits_for": f"{mode} on {obj}",
                    "blocked_by": int(blocker),
                    "statement": key,
                    "query": stmt.query if stmt else None,
                }
            )
        if len(self.facts.deadlocks) < MAX_DEADLOCKS:
            self.facts.deadlocks.append(
                {"timestamp": event.timestamp, "relation": relation, "victim_pid": event.pid, "processes": processes}
            )
        state = self.open_waits.pop((event.pid, event.lock_object or ""), None)
        if state is not None:
            self._close(event.pid, state)

    def _timeout(self, event: LockEvent) -> None:
        waiting = self.facts.add_statement(event.queryid, event.statement or "")
        relation = self._relation(event)
        for key in [k for k in self.open_waits if k[0] == event.pid]:
            state = self.open_waits.pop(key)
            relation = relation or state["relation"]
            self._close(event.pid, state)
        for entry in self.facts.lock_timeouts:
            if entry["statement"] == waiting and entry["relation"] == relation:
                entry["count"] += 1
                entry["last"] = event.timestamp
                return
        stmt = self.facts.statement(waiting)
        self.facts.lock_timeouts.append(
            {
                "statement": waiting,
                "query": stmt.query if stmt else None,
                "relation": relation,
                "count": 1,
                "first": event.timestamp,
                "last": event.timestamp,
            }
        )

    # -- reading in parallel (queryaudit.logs.parallel) -----------------------------------
    def close_open_waits(self) -> None:
        """Waits never acquired within what was read: counted with the time logged so far."""
        for key, state in list(self.open_waits.items()):
            self._close(key[0], state)
        self.open_waits.clear()

    def merge(self, other: LockLogAnalyser) -> None:
        """Add what `other` found in the next piece of the logs (its waits closed)."""
        for key, statement in other.facts.statements.items():
            self.facts.statements.setdefault(key, statement)
        for key, wait in other.waits.items():
            mine = self.waits.get(key)
            if mine is None:
                self.waits[key] = wait
                continue
            mine.wait_ms = round(mine.wait_ms + wait.wait_ms, 3)
            mine.samples += wait.samples
            mine.rows += [r for r in wait.rows if r not in mine.rows][: max(0, MAX_WAIT_ROWS - len(mine.rows))]
        for key, episode in other.episodes.items():
            mine = self.episodes.get(key)
            if mine is None:
                if len(self.episodes) < MAX_EPISODES:
                    self.episodes[key] = episode
                continue
            mine.ticks += episode.ticks
            mine.wait_ms = round(mine.wait_ms + episode.wait_ms, 3)
            mine.relations += [r for r in episode.relations if r not in mine.relations]
            mine.modes += [m for m in episode.modes if m not in mine.modes]
            mine.tree["children"] += episode.tree.get("children", [])
            mine.max_waiters = max(mine.max_waiters, episode.max_waiters, len(mine.tree["children"]))
        self.facts.deadlocks += other.facts.deadlocks[: max(0, MAX_DEADLOCKS - len(self.facts.deadlocks))]
        for entry in other.facts.lock_timeouts:
            mine = next(
                (
                    e
                    for e in self.facts.lock_timeouts
                    if e["statement"] == entry["statement"] and e["relation"] == entry["relation"]
                ),
                None,
            )
            if mine is None:
                self.facts.lock_timeouts.append(entry)
            else:
                mine["count"] += entry["count"]
                mine["last"] = entry["last"] or mine["last"]
        self.learned.update(other.learned)
        self.first_text = self.first_text or other.first_text
        self.last_text = other.last_text or self.last_text

    # -- the end -------------------------------------------------------------------------
    def result(self, first_timestamp: str | None = None, last_timestamp: str | None = None) -> LockFacts:
        """The facts; the log ingest passes the first and last timestamps of its statements."""
        if first_timestamp and (self.first_text is None or first_timestamp < self.first_text):
            self.first_text = first_timestamp
        if last_timestamp and (self.last_text is None or last_timestamp > self.last_text):
            self.last_text = last_timestamp
        for key, state in list(self.open_waits.items()):  # never acquired within the log
            self._close(key[0], state)
        self.open_waits.clear()
        facts = self.facts
        facts.waits = sorted(self.waits.values(), key=lambda w: -w.wait_ms)
        for episode in self.episodes.values():
            _fill_queries(facts, episode.tree)
        facts.episodes = sorted(self.episodes.values(), key=lambda e: -e.wait_ms)
        first, last = _parse_timestamp(self.first_text), _parse_timestamp(self.last_text)
        if first and last:
            facts.started_at = first.isoformat()
            facts.window_s = facts.elapsed_s = round((last - first).total_seconds(), 3)
        return facts


def _fill_queries(facts: LockFacts, node: dict) -> None:
    stmt = facts.statement(node.get("statement"))
    if stmt:
        node["queryid"], node["query"] = stmt.queryid, stmt.query
    for child in node.get("children", []):
        _fill_queries(facts, child)


def _locktype(logged: str | None) -> str:
    """The log's words for the lock tag, in pg_locks' vocabulary."""
    return {"transaction": "transactionid", "virtual transaction": "virtualxid", "extension of relation": "extend"}.get(
        logged or "", logged or "unknown"
    )


def analyse_lock_log(
    events: Iterable,
    relation_names: dict[int, str] | None = None,
    tables: Iterable[str] = (),
    database: str | None = None,
) -> LockFacts:
    analyser = LockLogAnalyser(relation_names, tables, database)
    for event in events:
        analyser.add(event)
    return analyser.result()


def lock_log_from_files(paths: list[str | Path], prefix: str | None, snapshot) -> LockFacts:
    """Read the logs' events (the log ingest's reader) and analyse their lock events;
    relation OIDs are named from the snapshot's catalog when it has one. (The audit reads
    its logs once, in queryaudit.logs.stage.read_logs, with an analyser from `for_snapshot`.)"""

    return analyse_lock_log(iter_events(paths, prefix), *_catalog(snapshot))


def _catalog(snapshot) -> tuple[dict[int, str], list[str], str | None]:
    names = {t.oid: t.qualified_name for t in snapshot.tables if t.oid}
    database = snapshot.server.database if snapshot.tables else None
    return names, [t.qualified_name for t in snapshot.tables], database


def for_snapshot(snapshot) -> LockLogAnalyser:
    """An analyser that names relations from the snapshot's catalog, to feed from the log read."""
    return LockLogAnalyser(*_catalog(snapshot))
