"""Live lock sampling: who waits on whom, on what, for how long, over a short window.

Every tick (10 Hz by default) runs one query on pg_stat_activity for the audited
database: the backends waiting on a heavyweight lock, their blockers, the transactions
open past a threshold, and how many sessions are active (the database time a wait is
measured against). Only when someone waits does the same query read pg_locks and
pg_blocking_pids() (both take the lock manager's partition locks briefly, so never
while nobody waits), to build the blocking chains: root blocker -> waiters, with the
lock type, mode, relation name, the row (page,tuple) or advisory key, and how long each
has waited (pg_locks.waitstart, 14+). One query, not two, because a row lock wait under
a busy OLTP load lasts milliseconds: a second round trip finds it gone.

Each tick's wait time (the time since the previous tick) is attributed to the waiting
statement, its direct blocker and its root blocker, on the relation it waits for.
The sampler reads views only; its session is read-only, runs under a short
statement_timeout and lock_timeout while sampling, and stops at its deadline.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from queryaudit.collect.catalog import collect_tables
from queryaudit.collect.server import collect_server
from queryaudit.connect import named_rows, scalar, session
from queryaudit.locks.facts import (
    IDLE_IN_TRANSACTION_S,
    LONG_TRANSACTION_S,
    LockEpisode,
    LockFacts,
    LockWait,
    TimelineTick,
    TransactionObservation,
    chain_node,
    write_target,
)
from queryaudit.snapshot import Snapshot

DEFAULT_RATE_HZ = 10.0
MAX_RATE_HZ = 50.0
# While sampling, no sampler query may wait on a lock or outlast a tick by much.
SAMPLER_STATEMENT_TIMEOUT_MS = 1000
SAMPLER_LOCK_TIMEOUT_MS = 100
MAX_TIMELINE_TICKS = 3000  # longer windows are folded into coarser ticks for the report


@dataclass
class SampleOptions:
    seconds: float
    rate_hz: float = DEFAULT_RATE_HZ
    long_transaction_s: float = LONG_TRANSACTION_S
    idle_in_transaction_s: float = IDLE_IN_TRANSACTION_S


# -- version differences, in one place --------------------------------------------------
def _columns(version_num: int) -> dict[str, str]:
    modern = version_num >= 140000
    return {
        # pg_stat_activity.query_id and pg_locks.waitstart appeared in PostgreSQL 14.
        "query_id": "a.query_id::text" if modern else "NULL::text",
        "waited_ms": ("extract(epoch FROM clock_timestamp() - l.waitstart) * 1000" if modern else "NULL::float8"),
    }


# One query per tick, so a wait of a few milliseconds is seen whole: the sessions of the
# audited database, each waiter's blockers (pg_blocking_pids) and, only when someone
# waits, the locks that matter to the chains from pg_locks (what is waited for, the row
# locks that say which relation a transactionid wait is about, and what blockers hold on
# the same objects). pg_locks takes the lock manager's partition locks briefly: the
# uncorrelated EXISTS is a one-time filter, so it is not read while nobody waits.
# Rows: waiters, their blockers, and transactions open past the threshold; plus the count
# of active client sessions (the tick's database time, which a lock wait's share is
# measured against). A tick where nobody matches returns one row with a NULL pid.
TICK_SQL = """
WITH activity AS MATERIALIZED (
    SELECT a.pid, a.state, a.wait_event_type, a.wait_event, a.backend_type, a.xact_start,
           {query_id} AS query_id, a.query, a.usename, a.application_name,
           extract(epoch FROM clock_timestamp() - a.xact_start)::float8 AS xact_age_s,
           extract(epoch FROM clock_timestamp() - a.state_change)::float8 AS state_age_s,
           a.backend_xid IS NOT NULL AS holds_xid, a.backend_xmin IS NOT NULL AS holds_xmin,
           CASE WHEN a.wait_event_type = 'Lock' THEN pg_blocking_pids(a.pid) END AS blocked_by
    FROM pg_stat_activity a
    WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
), involved AS MATERIALIZED (
    SELECT pid FROM activity WHERE blocked_by IS NOT NULL
    UNION SELECT unnest(blocked_by) FROM activity
), locks AS MATERIALIZED (
    SELECT l.pid, l.locktype, l.mode, l.granted, l.database, l.relation, l.page, l.tuple,
           l.transactionid::text AS xid, l.virtualxid, l.classid::int8 AS classid, l.objid::int8 AS objid,
           l.objsubid, {waited_ms} AS waited_ms
    FROM pg_locks l
    WHERE EXISTS (SELECT 1 FROM involved) AND l.pid IN (SELECT pid FROM involved)
), relevant AS (
    SELECT l.* FROM locks l
    WHERE NOT l.granted OR l.locktype = 'tuple'
       OR EXISTS (SELECT 1 FROM locks x WHERE NOT x.granted AND x.pid <> l.pid AND x.locktype = l.locktype
                  AND x.database IS NOT DISTINCT FROM l.database AND x.relation IS NOT DISTINCT FROM l.relation
                  AND x.page IS NOT DISTINCT FROM l.page AND x.tuple IS NOT DISTINCT FROM l.tuple
                  AND x.xid IS NOT DISTINCT FROM l.xid AND x.virtualxid IS NOT DISTINCT FROM l.virtualxid
                  AND x.classid IS NOT DISTINCT FROM l.classid AND x.objid IS NOT DISTINCT FROM l.objid
                  AND x.objsubid IS NOT DISTINCT FROM l.objsubid)
), sessions AS (
    SELECT a.pid, a.blocked_by, a.state, a.wait_event_type, a.wait_event, a.backend_type, a.xact_start,
           a.query_id, a.query, a.usename, a.application_name, a.xact_age_s, a.state_age_s,
           CASE WHEN i.pid IS NOT NULL THEN
           (SELECT coalesce(json_agg(json_build_object(
                'locktype', r.locktype, 'mode', r.mode, 'granted', r.granted,
                'relation', CASE WHEN c.oid IS NOT NULL THEN n.nspname || '.' || c.relname
                                 ELSE r.relation::text END,
                'page', r.page, 'tuple', r.tuple, 'xid', r.xid, 'waited_ms', r.waited_ms,
                'classid', r.classid, 'objid', r.objid, 'objsubid', r.objsubid)), '[]'::json)
            FROM relevant r
            LEFT JOIN pg_database d ON d.datname = current_database()
            LEFT JOIN pg_class c ON c.oid = r.relation AND r.database = d.oid
            LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE r.pid = a.pid) END AS locks,
           a.holds_xid, a.holds_xmin,
           a.backend_type = 'client backend' AND a.xact_start < clock_timestamp() - make_interval(secs => %s)
               AS is_long,
           i.pid IS NOT NULL AS involved
    FROM activity a LEFT JOIN involved i ON i.pid = a.pid
)
SELECT s.*, (SELECT count(*) FROM activity WHERE backend_type = 'client backend' AND state = 'active')
         AS active_sessions
FROM (SELECT 1) AS one
LEFT JOIN sessions s ON s.is_long OR s.involved
"""

# Once, at the end: what the long transactions still open hold (relation locks only).
# reset_val: what a new session gets (server, database and role settings), not the
# timeouts the audit session set for itself.
LOCK_SETTINGS = (
    "idle_in_transaction_session_timeout",
    "lock_timeout",
    "statement_timeout",
    "deadlock_timeout",
    "log_lock_waits",
    "transaction_timeout",
)
SETTINGS_SQL = """
SELECT name, reset_val || coalesce(' ' || unit, '') AS value FROM pg_settings WHERE name = ANY(%s)
"""

HELD_SQL = """
SELECT l.pid, l.mode,
       CASE WHEN c.oid IS NOT NULL THEN n.nspname || '.' || c.relname ELSE l.relation::text END AS relation
FROM pg_locks l
JOIN pg_database d ON d.datname = current_database() AND l.database = d.oid
LEFT JOIN pg_class c ON c.oid = l.relation
LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE l.pid = ANY(%s) AND l.granted AND l.locktype = 'relation'
  AND (c.relkind IS NULL OR c.relkind NOT IN ('i', 'I'))
ORDER BY 1, 3, 2
"""


class LockSampler:
    """Samples one database through `conn` (the audit's read-only session).

    `run()` samples until the deadline; `facts` holds what was seen so far, also when
    run() is interrupted (Ctrl-C), so a caller can keep a partial window.
    """

    def __init__(
        self,
        conn: psycopg.Connection,
        options: SampleOptions,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if options.seconds <= 0:
            raise ValueError("the sampling window must be positive")
        self.conn = conn
        self.options = options
        self.rate_hz = max(0.1, min(MAX_RATE_HZ, options.rate_hz))
        self.clock, self.sleep = clock, sleep
        version = conn.info.server_version
        cols = _columns(version)
        self.tick_sql = TICK_SQL.format(**cols)
        self.facts = LockFacts(
            source="sample",
            database=conn.info.dbname,
            window_s=float(options.seconds),
            rate_hz=self.rate_hz,
            long_transaction_s=options.long_transaction_s,
            idle_in_transaction_s=options.idle_in_transaction_s,
        )
        self._waits: dict[tuple, LockWait] = {}
        self._episodes: dict[tuple, LockEpisode] = {}
        self._transactions: dict[tuple, TransactionObservation] = {}
        # Per wait: (tick, root pid, idle s, ticks) of the stretch its root blocker is idle in.
        self._idle_stretches: dict[tuple, tuple[int, int, float, int]] = {}

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> LockFacts:
        facts = self.facts
        facts.started_at = dt.datetime.now(dt.UTC).isoformat()
        interval = 1.0 / self.rate_hz
        record_after = min(self.options.long_transaction_s, self.options.idle_in_transaction_s)
        facts.settings = {r["name"]: r["value"] for r in named_rows(self.conn, SETTINGS_SQL, (list(LOCK_SETTINGS),))}
        restore = self._limit_session()
        start = self.clock()
        deadline = start + self.options.seconds
        previous = None
        try:
            next_tick = start
            while True:
                now = self.clock()
                if now >= deadline:
                    break
                try:
                    rows = named_rows(self.conn, self.tick_sql, (record_after,))
                except (psycopg.errors.QueryCanceled, psycopg.errors.LockNotAvailable):
                    # Slower than the sampler's statement_timeout (or a catalog lock held past its
                    # lock_timeout): this tick is lost and counted, the sample goes on (autocommit:
                    # no transaction to roll back). The next tick's weight is capped as for a slow tick.
                    facts.lost_ticks += 1
                    rows = None
                t = self.clock()
                # The wait seen now stands for the time since the previous tick (capped:
                # a slow tick must not attribute more than two intervals to one sample).
                weight_ms = min(t - previous, 2 * interval) * 1000 if previous is not None else interval * 1000
                if rows is not None:
                    previous = t
                    self._tick((t - start) * 1000, weight_ms, rows, deadline)
                next_tick += interval
                if next_tick < self.clock():  # fell behind: skip ticks rather than burst
                    next_tick = self.clock() + interval
                pause = min(next_tick, deadline) - self.clock()
                if pause > 0:
                    self.sleep(pause)
            self._held_locks()
        except psycopg.errors.QueryCanceled:
            pass  # the held locks outlived the statement_timeout: the sample stands without them
        except KeyboardInterrupt:
            facts.interrupted = True
            raise
        finally:
            facts.elapsed_s = round(self.clock() - start, 3)
            self._finish()
            restore()
        return facts

    def _limit_session(self) -> Callable[[], None]:
        settings = {
            "statement_timeout": f"{SAMPLER_STATEMENT_TIMEOUT_MS}ms",
            "lock_timeout": f"{SAMPLER_LOCK_TIMEOUT_MS}ms",
        }
        before = {name: scalar(self.conn, "SELECT current_setting(%s)", (name,)) for name in settings}
        for name, value in settings.items():
            self.conn.execute("SELECT set_config(%s, %s, false)", (name, value))

        def restore():
            if self.conn.closed or self.conn.broken:
                return
            try:
                for name, value in before.items():
                    self.conn.execute("SELECT set_config(%s, %s, false)", (name, value))
            except psycopg.Error:
                pass

        return restore

    # -- one tick ------------------------------------------------------------------------
    def _tick(self, t_ms: float, weight_ms: float, rows, deadline: float) -> None:
        facts = self.facts
        facts.ticks += 1
        facts.db_time_ms = round(facts.db_time_ms + (rows[0]["active_sessions"] if rows else 0) * weight_ms, 3)
        chain_rows = []
        for row in rows:
            if row["pid"] is None:  # the one row of a tick with no session of interest
                continue
            if row["involved"]:
                chain_rows.append(row)
            if (
                row["backend_type"] == "client backend"
                and row["xact_age_s"] is not None
                and (row["is_long"] or row["wait_event_type"] == "Lock")
            ):
                self._observe_transaction(t_ms, row)
        tick = TimelineTick(t_ms=round(t_ms, 1), waiting=0)
        if chain_rows:
            facts.lock_queries += 1
            self._chains(t_ms, weight_ms, chain_rows, tick)
        facts.timeline.append(tick)

    def _observe_transaction(self, t_ms: float, row: dict) -> None:
        pid, state, state_age, xact_start = row["pid"], row["state"], row["state_age_s"], row["xact_start"]
        key = (pid, xact_start)
        obs = self._transactions.get(key)
        if obs is None:
            obs = self._transactions[key] = TransactionObservation(
                pid=pid,
                xact_start=xact_start.isoformat() if xact_start else None,
                usename=row["usename"],
                application_name=row["application_name"],
                first_seen_ms=round(t_ms, 1),
            )
        obs.last_seen_ms = round(t_ms, 1)
        obs.max_age_s = round(max(obs.max_age_s, row["xact_age_s"]), 3)
        obs.last_state = state
        if state and state.startswith("idle in transaction") and state_age is not None:
            obs.max_idle_in_transaction_s = round(max(obs.max_idle_in_transaction_s, state_age), 3)
        obs.statement = self.facts.add_statement(row["query_id"], row["query"]) or obs.statement
        obs.holds_xid = obs.holds_xid or bool(row["holds_xid"])
        obs.holds_xmin = obs.holds_xmin or bool(row["holds_xmin"])
        obs.waited_on_lock = obs.waited_on_lock or row["wait_event_type"] == "Lock"

    def _chains(self, t_ms: float, weight_ms: float, rows: list[dict], tick: TimelineTick) -> None:
        nodes = {}
        for row in rows:
            pid, state, xact_start, xact_age, state_age = (
                row["pid"],
                row["state"],
                row["xact_start"],
                row["xact_age_s"],
                row["state_age_s"],
            )
            nodes[pid] = {
                "pid": pid,
                "blocked_by": [b for b in (row["blocked_by"] or []) if b != pid],
                "state": state,
                "wait_event": row["wait_event"] if row["wait_event_type"] == "Lock" else None,
                "backend_type": row["backend_type"],
                "xact_start": xact_start.isoformat() if xact_start else None,
                "xact_age_s": round(xact_age, 3) if xact_age is not None else None,
                "idle_s": (
                    round(state_age, 3)
                    if state and state.startswith("idle in transaction") and state_age is not None
                    else 0.0
                ),
                "statement": self.facts.add_statement(row["query_id"], row["query"]),
                "query": row["query"],
                "usename": row["usename"],
                "application_name": row["application_name"],
                "locks": row["locks"] or [],
            }
        waiters = {pid: n for pid, n in nodes.items() if n["blocked_by"] and _waited_lock(n)}
        if not waiters:
            return
        parent = {pid: _first_blocker(n, nodes) for pid, n in waiters.items()}

        def root_of(pid):
            path = [pid]
            while pid in parent:
                pid = parent[pid]
                if pid in path:  # a cycle (a deadlock not yet detected): one root for all of it
                    return min(path[path.index(pid) :])
                path.append(pid)
            return pid

        # The tree under each root, children under their first blocker.
        children: dict[int, list[int]] = {}
        for pid, p in parent.items():
            children.setdefault(p, []).append(pid)
        roots = sorted({root_of(pid) for pid in waiters})

        tick.waiting = len(waiters)
        for pid, node in waiters.items():
            lock = _waited_lock(node)
            relation, row = _object_of(node, lock, nodes)
            blocker = nodes.get(parent[pid]) or {}
            root = nodes.get(root_of(pid)) or {}
            label = relation or f"({lock['locktype']} locks)"  # advisory locks name no relation
            tick.relations[label] = tick.relations.get(label, 0) + 1
            held = sorted({h["mode"] for h in blocker.get("locks", []) if h["granted"] and _same_object(h, lock)})
            key = (
                relation,
                lock["locktype"],
                lock["mode"],
                node["statement"],
                blocker.get("statement"),
                root.get("statement"),
            )
            wait = self._waits.get(key)
            if wait is None:
                wait = self._waits[key] = LockWait(
                    relation=relation,
                    locktype=lock["locktype"],
                    mode=lock["mode"],
                    waiting=node["statement"] or "unknown",
                    blocking=blocker.get("statement"),
                    root=root.get("statement"),
                )
            wait.wait_ms = round(wait.wait_ms + weight_ms, 3)
            wait.samples += 1
            wait.blocker_modes = sorted(set(wait.blocker_modes) | set(held))
            wait.blocker_state = blocker.get("state")
            note_root_idle(self._idle_stretches, key, wait, self.facts.ticks, root_of(pid), root.get("idle_s") or 0.0)
            wait.root_xact_age_s = max(wait.root_xact_age_s, root.get("xact_age_s") or 0.0)
            if row and row not in wait.rows and len(wait.rows) < 20:
                wait.rows.append(row)
            if row and (row in wait.row_samples or len(wait.row_samples) < 50):
                wait.row_samples[row] = wait.row_samples.get(row, 0) + 1

        for root_pid in roots:
            root = nodes.get(root_pid) or {"pid": root_pid}
            members = _subtree(root_pid, children)
            key = (root_pid, root.get("xact_start"))
            episode = self._episodes.get(key)
            if episode is None:
                episode = self._episodes[key] = LockEpisode(
                    root_pid=root_pid,
                    root_statement=root.get("statement"),
                    root_state=root.get("state"),
                    root_xact_start=root.get("xact_start"),
                    first_ms=round(t_ms, 1),
                    last_ms=round(t_ms, 1),
                )
            episode.last_ms = round(t_ms, 1)
            episode.ticks += 1
            episode.root_state = root.get("state") or episode.root_state
            episode.wait_ms = round(episode.wait_ms + weight_ms * len(members), 3)
            for pid in members:
                lock = _waited_lock(nodes[pid])
                relation, _ = _object_of(nodes[pid], lock, nodes)
                if relation and relation not in episode.relations:
                    episode.relations.append(relation)
                if lock["mode"] not in episode.modes:
                    episode.modes.append(lock["mode"])
            if len(members) >= episode.max_waiters:
                episode.max_waiters = len(members)
                episode.tree = self._tree(root_pid, nodes, children, parent)

    def _tree(self, pid: int, nodes: dict, children: dict, parent: dict, seen: frozenset = frozenset()) -> dict:
        node = nodes.get(pid) or {"pid": pid, "locks": [], "blocked_by": []}
        stmt = self.facts.statement(node.get("statement"))
        out = chain_node(
            pid,
            node.get("statement"),
            queryid=stmt.queryid if stmt else None,
            query=stmt.query if stmt else None,
            state=node.get("state"),
            backend_type=node.get("backend_type"),
            xact_age_s=node.get("xact_age_s"),
        )
        if pid in parent:
            lock = _waited_lock(node)
            relation, row = _object_of(node, lock, nodes)
            blocker = nodes.get(parent[pid]) or {}
            out.update(
                locktype=lock["locktype"],
                mode=lock["mode"],
                relation=relation,
                row=row,
                waiting_ms=round(lock["waited_ms"], 1) if lock.get("waited_ms") is not None else None,
                also_blocked_by=[b for b in node["blocked_by"] if b != parent[pid]],
            )
            out["blocked_by_holds"] = sorted(
                {h["mode"] for h in blocker.get("locks", []) if h["granted"] and _same_object(h, lock)}
            )
        seen = seen | {pid}  # a deadlock not yet detected is a cycle: draw each session once
        out["children"] = [
            self._tree(c, nodes, children, parent, seen) for c in sorted(children.get(pid, [])) if c not in seen
        ]
        return out

    # -- the end -------------------------------------------------------------------------
    def _held_locks(self) -> None:
        """What the transactions still open past the threshold hold: one query, at the end."""
        pids = sorted({o.pid for o in self._transactions.values()})
        if not pids:
            return
        held: dict[int, list[str]] = {}
        for row in named_rows(self.conn, HELD_SQL, (pids,)):
            held.setdefault(row["pid"], []).append(f"{row['mode']} on {row['relation']}")
        latest: dict[int, TransactionObservation] = {}
        for obs in self._transactions.values():
            if obs.pid not in latest or obs.last_seen_ms > latest[obs.pid].last_seen_ms:
                latest[obs.pid] = obs
        for pid, obs in latest.items():
            obs.held_locks = held.get(pid, [])[:50]

    def _finish(self) -> None:
        facts = self.facts
        facts.waits = sorted(self._waits.values(), key=lambda w: -w.wait_ms)
        facts.episodes = sorted(self._episodes.values(), key=lambda e: -e.wait_ms)
        for obs in self._transactions.values():
            obs.blocked_ms = round(
                sum(
                    e.wait_ms
                    for e in self._episodes.values()
                    if e.root_pid == obs.pid and e.root_xact_start == obs.xact_start
                ),
                3,
            )
        facts.transactions = sorted(self._transactions.values(), key=lambda o: -o.max_age_s)
        facts.timeline = fold_timeline(facts.timeline, MAX_TIMELINE_TICKS)


def _waited_lock(node: dict) -> dict | None:
    return next((w for w in node.get("locks", []) if not w["granted"]), None)


def _first_blocker(node: dict, nodes: dict) -> int:
    """The blocker a waiter hangs under: one that does not wait itself, when there is one."""
    blockers = node["blocked_by"]
    free = [b for b in blockers if not (nodes.get(b) and nodes[b]["blocked_by"])]
    return min(free) if free else min(blockers)


def _same_object(lock: dict, other: dict | None) -> bool:
    if not other:
        return False
    return all(
        lock.get(k) == other.get(k)
        for k in ("locktype", "relation", "page", "tuple", "xid", "classid", "objid", "objsubid")
    )


def _object_of(node: dict, lock: dict | None, nodes: dict) -> tuple[str | None, str | None]:
    """(relation, row) a wait is about. A transactionid wait names no relation: the
    waiter's tuple lock does (PostgreSQL takes it before waiting on the row's updater),
    else the blocker's only row lock target."""
    if lock is None:
        return None, None
    if lock.get("locktype") == "advisory":
        return None, advisory_key(lock)
    row = f"({lock['page']},{lock['tuple']})" if lock.get("tuple") is not None else None
    if lock.get("relation"):
        return lock["relation"], row
    tuple_lock = next((t for t in node.get("locks", []) if t["granted"] and t["locktype"] == "tuple"), None)
    if tuple_lock:
        return tuple_lock["relation"], f"({tuple_lock['page']},{tuple_lock['tuple']})"
    if lock.get("locktype") == "transactionid":
        # No tuple lock seen (taken and released around the tick): an UPDATE or DELETE
        # waits for a row of the table it writes.
        return write_target(node.get("query")), None
    return None, None


def advisory_key(lock: dict) -> str:
    """The key as the application passed it: pg_advisory_lock(bigint) stores its high and
    low halves in classid and objid (objsubid 1); the (int, int) form stores each (objsubid 2)."""
    classid, objid = lock.get("classid") or 0, lock.get("objid") or 0
    if lock.get("objsubid") == 2:
        return f"advisory ({_int4(classid)}, {_int4(objid)})"
    key = (classid << 32) | objid
    return f"advisory {key - (1 << 64) if key >= 1 << 63 else key}"


def _int4(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


def _subtree(root: int, children: dict) -> list[int]:
    out, stack, seen = [], list(children.get(root, [])), {root}
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        out.append(pid)
        stack.extend(children.get(pid, []))
    return out


def note_root_idle(stretches: dict, key: tuple, wait: LockWait, tick: int, root_pid: int, idle_s: float) -> None:
    """One tick of `wait` (sampler tick number `tick`) seen with its root blocker idle in its
    transaction for `idle_s` (0: not idle): extend or restart the stretch of consecutive ticks
    in one idle period (`stretches[key]`: last tick, root pid, idle s, ticks); the wait keeps
    its longest stretch and the idle time it reached."""
    last = stretches.get(key)
    if last is not None and last[0] == tick:  # another waiter of the same wait, this tick
        return
    if idle_s <= 0:
        stretches.pop(key, None)
        return
    # The same idle period: seen at the previous tick, same session, idle for longer since.
    same = last is not None and last[0] == tick - 1 and last[1] == root_pid and idle_s > last[2]
    ticks = last[3] + 1 if last is not None and same else 1
    stretches[key] = (tick, root_pid, idle_s, ticks)
    if (ticks, idle_s) > (wait.root_idle_ticks, wait.root_idle_s):
        wait.root_idle_ticks, wait.root_idle_s = ticks, round(idle_s, 3)


def fold_timeline(ticks: list[TimelineTick], limit: int) -> list[TimelineTick]:
    """At most `limit` points: consecutive ticks folded, keeping the peak waiting count."""
    if len(ticks) <= limit:
        return ticks
    size = -(-len(ticks) // limit)
    out = []
    for i in range(0, len(ticks), size):
        group = ticks[i : i + size]
        peak = max(group, key=lambda t: t.waiting)
        out.append(TimelineTick(t_ms=group[0].t_ms, waiting=peak.waiting, relations=dict(peak.relations)))
    return out


def sample_locks(conn: psycopg.Connection, options: SampleOptions) -> LockFacts:
    return LockSampler(conn, options).run()


def sampling_stage(options: SampleOptions):
    """A collection stage (pipeline CollectOptions.stages): samples and stores the facts,
    also when interrupted, so a partial window is still reported."""

    def stage(conn: psycopg.Connection, snapshot) -> None:
        sampler = LockSampler(conn, options)
        try:
            sampler.run()
        finally:
            snapshot.lock_samples = sampler.facts

    return stage


def collect_lock_snapshot(dsn: str, options: SampleOptions | None):
    """`queryaudit locks`: server identity, table names (to name the relation OIDs a log
    shows) and a lock sample (None: no sampling), in one read-only session. The facts
    are kept when interrupted."""

    with session(dsn) as conn:
        snapshot = Snapshot(server=collect_server(conn), collected_at=dt.datetime.now(dt.UTC).isoformat())
        if options is None:
            snapshot.tables = collect_tables(conn)
            return snapshot
        sampler = LockSampler(conn, options)
        try:
            sampler.run()
        except KeyboardInterrupt:
            snapshot.record_error("lock sampling", "interrupted (Ctrl-C): the window was cut short")
        snapshot.lock_samples = sampler.facts
    return snapshot
