"""Aggregating log events into LogFacts, in one pass and bounded memory.

Per statement (queryid, else pglast fingerprint): count, total, min/max and a
`LatencySketch` for p50/p95/p99; the slowest auto_explain plan; N+1 loops through
`queryaudit.n_plus_one.runs.RunDetector`. Every table here is capped, so memory stays flat
however long the log is.
"""

from __future__ import annotations

import gc
import math
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from queryaudit.logs.events import LockEvent, PlanEvent, SessionEndEvent, StatementEvent, TempFileEvent
from queryaudit.logs.facts import LogFacts, LogNPlusOne, LogStatement
from queryaudit.logs.messages import parse_parameters, to_events
from queryaudit.logs.reader import ReadStats, read_records
from queryaudit.n_plus_one import MIN_EXECUTIONS, MIN_REPEATS, ROUND_TRIP_MS
from queryaudit.n_plus_one.runs import Run, RunDetector
from queryaudit.sql import fingerprint as pglast_fingerprint

MAX_STATEMENTS = 50_000  # distinct statements followed; beyond, new ones only count in the totals
MAX_QUERY_CHARS = 4000
TOP_STATEMENTS = 500  # kept in the snapshot, by total time
_CACHE_SIZE = 20_000


class LatencySketch:
    """Quantiles with a relative error of at most `accuracy`, in bounded memory (the
    DDSketch idea: logarithmic buckets; about 600 buckets span 1 µs to 3 hours at 2%)."""

    __slots__ = ("gamma_log", "buckets", "zero", "count")

    def __init__(self, accuracy: float = 0.02):
        self.gamma_log = math.log((1 + accuracy) / (1 - accuracy))
        self.buckets: dict[int, int] = {}
        self.zero = 0
        self.count = 0

    def add(self, value_ms: float) -> None:
        self.count += 1
        if value_ms <= 1e-6:
            self.zero += 1
            return
        key = math.ceil(math.log(value_ms) / self.gamma_log)
        self.buckets[key] = self.buckets.get(key, 0) + 1

    def merge(self, other: LatencySketch) -> None:
        self.count += other.count
        self.zero += other.zero
        for key, n in other.buckets.items():
            self.buckets[key] = self.buckets.get(key, 0) + n

    def quantile(self, q: float) -> float:
        if self.count == 0:
            return 0.0
        rank = q * (self.count - 1)
        seen = self.zero
        if rank < seen:
            return 0.0
        for key in sorted(self.buckets):
            seen += self.buckets[key]
            if seen > rank:
                # The bucket's midpoint in relative terms: (gamma^(k-1), gamma^k].
                return 2 * math.exp(key * self.gamma_log) / (1 + math.exp(self.gamma_log))
        return math.exp(max(self.buckets) * self.gamma_log)


# Literals out, so one statement run with a thousand values is fingerprinted once.
_LITERALS = re.compile(r"'(?:[^']|'')*'|\b\d+(?:\.\d+)?\b")
# The statement lines, in one match: `duration: 0.015 ms  execute S_1: ...`, `statement: ...`,
# `parse <unnamed>: ...`, `execute fetch from S_1/C_2: ...` (postgres.c).
_STATEMENT = re.compile(r"(?:duration: (\d+(?:\.\d+)?) ms  )?(statement|execute|parse|bind)(?: ([^:]*?))?: ")
# Transaction boundaries: what makes two loops two transactions (ROLLBACK TO keeps the transaction).
_CONTROL = re.compile(r"\s*(?:(BEGIN|START\s+TRANSACTION)|(COMMIT|END|ROLLBACK|ABORT))\b(?!\s+TO\b)", re.I)
_ceil, _log = math.ceil, math.log
OWN = object()  # the audit's own statements (MARKER) and DEALLOCATE: left out of every figure
# A driver's DEALLOCATE (psycopg's `DEALLOCATE ALL` after a failed transaction) is protocol
# housekeeping: pg_stat_statements before 17 ignores it and pgBadger does not count it.
_DEALLOCATE = re.compile(r"\s*DEALLOCATE\b", re.I)
# queryaudit.connect.MARKER, which every statement the audit sends ends with. Spelled out
# here so that reading a log does not import the driver (a third of a 50 MB log's time);
# tests/test_log_formats.py checks the two agree.
MARKER = "/* queryaudit */"


class _BoundedDict(dict):
    def __setitem__(self, key, value):
        if len(self) >= _CACHE_SIZE and key not in self:
            self.clear()
        super().__setitem__(key, value)


class _Agg:
    __slots__ = (
        "key",
        "fingerprint",
        "queryid",
        "query",
        "count",
        "total",
        "min",
        "max",
        "sketch",
        "params",
        "plan",
        "plan_text",
        "plan_ms",
        "control",
    )

    def __init__(self, key, fingerprint, queryid, query, control=None):
        self.key, self.fingerprint, self.queryid = key, fingerprint, queryid
        self.query = query[:MAX_QUERY_CHARS]
        self.count, self.total, self.min, self.max = 0, 0.0, math.inf, 0.0
        self.sketch = LatencySketch()
        self.params: list[str] = []
        self.plan = self.plan_text = self.plan_ms = None
        self.control = control  # "begin" | "end" | None


@dataclass
class DigestOptions:
    min_executions: int = MIN_EXECUTIONS
    min_run_ms: float = 0.0  # cost of one loop (round trips x round_trip_ms + server time) to report it
    top_statements: int = TOP_STATEMENTS
    round_trip_ms: float = ROUND_TRIP_MS
    min_repeats: int = MIN_REPEATS  # transactions or requests a loop must repeat in


class LogDigest:
    """Feed records (`add_record`, the fast path) or events (`add`), then `facts()`.

    The statement lines, which are nearly all of a log, never become event objects: their
    text is looked up in a bounded cache of statements, so a statement seen before costs
    a dict lookup, not a parse. `listeners` (the lock analysis) get each statement
    (`statement(session, pid, queryid, query, timestamp)`) and every other event (`add`),
    so one read of the file serves them all."""

    def __init__(self, options: DigestOptions | None = None, listeners=()):
        self.options = options or DigestOptions()
        self.stats: dict[str, _Agg] = {}
        self.by_text: dict[str, object] = {}  # raw text -> _Agg | OWN (bounded)
        self.normalized: dict[str, str] = {}  # literal-free text -> fingerprint (bounded)
        self.patterns: dict[tuple, LogNPlusOne] = {}
        self._last_unit: dict[tuple, object] = {}
        self._unfollowed = [0, 0.0]  # executions and ms of statements beyond MAX_STATEMENTS
        self.listeners = list(listeners)
        self._pid_keys: dict[str, str] = {}
        self._pid_sessions = _BoundedDict()  # pid -> session id (%c), when the log has them
        for listener in self.listeners:
            listener.recent = self.recent_statements
        self.detector = RunDetector(self._on_run, min_executions=self.options.min_executions, min_total_ms=0.0)
        self.facts_ = LogFacts(
            thresholds={
                "min_executions": self.options.min_executions,
                "min_run_ms": self.options.min_run_ms,
                "round_trip_ms": self.options.round_trip_ms,
                "min_repeats": self.options.min_repeats,
            }
        )

    # -- statements ----------------------------------------------------------------------
    def _fingerprint(self, query: str) -> str:
        key = _LITERALS.sub("?", query)
        fp = self.normalized.get(key)
        if fp is None:
            fp = pglast_fingerprint(query)
            if fp is None:  # does not parse (truncated): group by its literal-free text
                fp = "text:" + format(zlib.crc32(" ".join(key.split()).encode()), "08x")
            if len(self.normalized) >= _CACHE_SIZE:
                self.normalized.clear()
            self.normalized[key] = fp
        return fp

    def _new(self, query: str, queryid: str | None):
        """The statement's aggregate, created on first sight; OWN for the audit's own."""
        if MARKER in query or _DEALLOCATE.match(query):
            agg = OWN
        else:
            fp = self._fingerprint(query)
            key = queryid or f"fp:{fp}"
            agg = self.stats.get(key)
            if agg is None and len(self.stats) < MAX_STATEMENTS:
                control = _CONTROL.match(query)
                agg = self.stats[key] = _Agg(
                    key, fp, queryid, query, control and ("begin" if control.group(1) else "end")
                )
        if queryid is None and agg is not None:
            if len(self.by_text) >= _CACHE_SIZE:
                self.by_text.clear()
            self.by_text[query] = agg
        return agg

    def add_record(self, rec) -> None:
        phase = rec.phase
        if phase is not None:  # the stderr reader's fast path read the statement head already
            query = rec.first[rec.cut :]
            if rec.more is not None:
                query = query + "\n" + "\n".join(rec.more)
            extra = rec.extra
            duration = rec.duration
            self.statement(
                rec.key,
                query,
                float(duration) if duration is not None else None,
                extra.get("detail") if extra is not None and phase == "execute" else None,
            )
            return
        if rec.severity == "LOG":
            first = rec.first
            if first.startswith("connection "):  # received / authorized: no event, and many of them
                return
            m = _STATEMENT.match(first)
            if m is not None:
                duration, phase, _name = m.groups()
                if phase == "parse" or phase == "bind":  # the execute line follows with the duration
                    return
                query = first[m.end() :]
                if rec.more is not None:
                    query = query + "\n" + "\n".join(rec.more)
                extra = rec.extra
                self.statement(
                    rec.key,
                    query,
                    float(duration) if duration is not None else None,
                    extra.get("detail") if extra is not None and phase == "execute" else None,
                )
                return
        for event in to_events(rec):
            self.add(event)

    def statement(self, key: tuple, query: str, duration: float | None, params: str | None) -> None:
        """One executed (or, under log_statement, started) statement; `key` is the record's
        (timestamp, pid, session id, query id); `params` the DETAIL text of its parameters."""
        ts, pid, session_id, queryid = key
        if not queryid or queryid == "0":
            queryid = None
            agg = self.by_text.get(query)
        else:
            agg = self.stats.get(queryid)
            # A comment does not change the query id: the audit's own copy of a workload
            # statement (its pg_stat_statements_reset(), say) shares the workload's id.
            if agg is not None and MARKER in query:
                agg = OWN
        if agg is None:
            agg = self._new(query, queryid)
        if agg is OWN:
            return
        facts = self.facts_
        if ts:
            if facts.first_timestamp is None:
                facts.first_timestamp = ts
            facts.last_timestamp = ts
        if duration is not None:
            if agg is not None:  # the totals are summed from the statements at the end
                agg.count += 1
                agg.total += duration
                if duration < agg.min:
                    agg.min = duration
                if duration > agg.max:
                    agg.max = duration
                sketch = agg.sketch  # LatencySketch.add, inline: this runs once per execution
                sketch.count += 1
                if duration <= 1e-6:
                    sketch.zero += 1
                else:
                    buckets = sketch.buckets
                    bucket = _ceil(_log(duration) / sketch.gamma_log)
                    buckets[bucket] = buckets.get(bucket, 0) + 1
            else:
                self._unfollowed[0] += 1
                self._unfollowed[1] += duration
        session = session_id or self._pid_keys.get(pid)
        if session is None:
            if len(self._pid_keys) >= _CACHE_SIZE:
                self._pid_keys.clear()
            session = self._pid_keys[pid] = f"pid:{pid}"
        if agg is not None:
            if params and not agg.params:
                agg.params = parse_parameters(params)[:20]
            self.detector.feed(session, agg.key, agg.query, params or query, duration, ts, agg.queryid)
            if agg.control is not None:
                self.detector.set_block(session, agg.control == "begin")
        if session_id and pid and self._pid_sessions.get(pid) != session_id:
            self._pid_sessions[pid] = session_id
        for listener in self.listeners:
            if listener.pending:  # a wait's blocker is this session's next statement
                listener.statement(session, int(pid) if pid else None, queryid, query, ts)

    def recent_statements(self, pid: int) -> list[tuple[str | None, str]]:
        """(queryid, query) of the latest statements of the session of `pid`, newest first:
        what a lock listener asks for when `pid` holds a lock another waits for."""
        session = self._pid_sessions.get(str(pid)) or f"pid:{pid}"
        state = self.detector.sessions.get(session)
        if state is None:
            return []
        return [(queryid, query) for _fp, query, queryid, _run, _site in reversed(state.recent)]

    # -- every other event ---------------------------------------------------------------
    def add(self, event) -> None:
        facts = self.facts_
        if isinstance(event, StatementEvent):
            if event.phase in ("parse", "bind"):
                return
            params = (
                "parameters: " + ", ".join(f"${i} = {v}" for i, v in enumerate(event.parameters, 1))
                if event.parameters
                else None
            )
            self.statement(
                (event.timestamp, str(event.pid) if event.pid is not None else None, event.session_id, event.queryid),
                event.query,
                event.duration_ms,
                params,
            )
            return
        for listener in self.listeners:
            listener.add(event)
        if isinstance(event, PlanEvent):
            facts.plans += 1
            if not event.query or MARKER in event.query:
                return
            key = event.queryid or f"fp:{self._fingerprint(event.query)}"
            agg = self.stats.get(key)
            if agg is None and len(self.stats) < MAX_STATEMENTS:
                # auto_explain logs the plan before the statement's own duration line.
                agg = self.stats[key] = _Agg(
                    key,
                    key[3:] if key.startswith("fp:") else self._fingerprint(event.query),
                    event.queryid,
                    event.query,
                )
            if agg is not None and (agg.plan_ms is None or (event.duration_ms or 0) > agg.plan_ms):
                agg.plan, agg.plan_text, agg.plan_ms = event.plan_json, event.plan_text, event.duration_ms
        elif isinstance(event, LockEvent):
            facts.lock_events += 1
            facts.deadlocks += event.kind == "deadlock"
            facts.lock_timeouts += event.kind == "timeout"
        elif isinstance(event, TempFileEvent):
            facts.temp_files += 1
            facts.temp_bytes += event.size_bytes
        elif isinstance(event, SessionEndEvent):
            self.detector.end_session(event.session_key)

    # -- reading in parallel (queryaudit.logs.parallel) -----------------------------------
    def merge(self, other: LogDigest) -> None:
        """Add what `other` read from the next piece of the logs (its runs finished)."""
        for key, agg in other.stats.items():
            mine = self.stats.get(key)
            if mine is None:
                if len(self.stats) < MAX_STATEMENTS:
                    self.stats[key] = agg
                else:
                    self._unfollowed[0] += agg.count
                    self._unfollowed[1] += agg.total
                continue
            mine.count += agg.count
            mine.total += agg.total
            mine.min, mine.max = min(mine.min, agg.min), max(mine.max, agg.max)
            mine.sketch.merge(agg.sketch)
            mine.params = mine.params or agg.params
            if agg.plan_ms is not None and (mine.plan_ms is None or agg.plan_ms > mine.plan_ms):
                mine.plan, mine.plan_text, mine.plan_ms = agg.plan, agg.plan_text, agg.plan_ms
        for key, pattern in other.patterns.items():
            mine = self.patterns.get(key)
            if mine is None and key[1] is None:  # a loop cut from its parent by the piece's start
                mine = next((p for k, p in self.patterns.items() if k[0] == key[0]), None)
            if mine is None:
                if len(self.patterns) < 1000:
                    self.patterns[key] = pattern
                continue
            mine.runs += pattern.runs
            mine.executions += pattern.executions
            mine.total_ms += pattern.total_ms
            mine.max_run = max(mine.max_run, pattern.max_run)
            mine.transactions += pattern.transactions
            mine.last_seen = pattern.last_seen or mine.last_seen
        self._unfollowed[0] += other._unfollowed[0]
        self._unfollowed[1] += other._unfollowed[1]
        facts, theirs = self.facts_, other.facts_
        for name in ("plans", "lock_events", "deadlocks", "lock_timeouts", "temp_files", "temp_bytes"):
            setattr(facts, name, getattr(facts, name) + getattr(theirs, name))
        facts.first_timestamp = facts.first_timestamp or theirs.first_timestamp
        facts.last_timestamp = theirs.last_timestamp or facts.last_timestamp

    # -- N+1 -----------------------------------------------------------------------------
    def _on_run(self, run: Run) -> None:
        rtt = self.options.round_trip_ms
        if run.count * rtt + run.total_ms < self.options.min_run_ms:
            return
        key = (run.fingerprint, run.parent_fingerprint)
        p = self.patterns.get(key)
        if p is None:
            if len(self.patterns) >= 1000:
                return
            child = self.stats.get(run.fingerprint)
            parent = self.stats.get(run.parent_fingerprint) if run.parent_fingerprint else None
            p = self.patterns[key] = LogNPlusOne(
                fingerprint=child.fingerprint if child else run.fingerprint,
                query=run.query[:MAX_QUERY_CHARS],
                queryid=run.queryid,
                parent_fingerprint=parent.fingerprint if parent else None,
                parent_query=run.parent_query[:MAX_QUERY_CHARS] if run.parent_query else None,
                parent_queryid=run.parent_queryid,
                example_session=run.session,
                example_parameters=[
                    ", ".join(parse_parameters(p))
                    if p.startswith("parameters:") or p.startswith("Parameters:")
                    else p[:200]
                    for p in run.example_parameters[:3]
                    if isinstance(p, str)
                ],
                first_seen=run.first_ts,
            )
        p.runs += 1
        p.executions += run.count
        p.total_ms += run.total_ms
        p.max_run = max(p.max_run, run.count)
        p.last_seen = run.last_ts or p.last_seen
        if run.unit != self._last_unit.get(key):  # a new transaction or request (runs come in log order)
            p.transactions += 1
            self._last_unit[key] = run.unit

    def facts(self, stats: ReadStats | None = None) -> LogFacts:
        self.detector.finish()
        facts = self.facts_
        if stats is not None:
            facts.files, facts.formats = list(stats.files), dict(stats.formats)
            facts.lines, facts.records = stats.lines, stats.records
            facts.malformed_lines, facts.truncated_fields = stats.malformed_lines, stats.truncated_fields
        facts.statement_count = len(self.stats)
        facts.executions = sum(a.count for a in self.stats.values()) + self._unfollowed[0]
        facts.total_ms = sum(a.total for a in self.stats.values()) + self._unfollowed[1]
        # By the total as reported (3 decimals), then the key: statements of equal time keep
        # one order whether the file was read in one process or in pieces (--log-jobs), where
        # the sums are added in another order and the dict filled in another order.
        top = sorted(self.stats.values(), key=lambda a: (-round(a.total, 3), a.key))[: self.options.top_statements]
        facts.statements = [
            LogStatement(
                key=a.key,
                fingerprint=a.fingerprint,
                queryid=a.queryid,
                query=a.query,
                count=a.count,
                total_ms=round(a.total, 3),
                min_ms=round(a.min if a.count else 0.0, 3),
                max_ms=round(a.max, 3),
                p50_ms=round(a.sketch.quantile(0.50), 3),
                p95_ms=round(a.sketch.quantile(0.95), 3),
                p99_ms=round(a.sketch.quantile(0.99), 3),
                example_parameters=a.params,
                plan=a.plan,
                plan_text=a.plan_text,
                plan_duration_ms=a.plan_ms,
            )
            for a in top
            if a.count or a.plan or a.plan_text
        ]
        # A loop is an N+1 when it comes back: in another transaction or request (one loop,
        # once, is as likely a report or a batch job written that way on purpose).
        repeated = [p for p in self.patterns.values() if p.transactions >= self.options.min_repeats]
        facts.n_plus_one = sorted(
            repeated,
            key=lambda p: (
                -round(p.executions * self.options.round_trip_ms + p.total_ms, 3),
                p.fingerprint,
                p.parent_fingerprint or "",
            ),
        )
        facts.total_ms = round(facts.total_ms, 3)
        return facts


def ingest(
    paths: Iterable[str | Path],
    prefix: str | None = None,
    options: DigestOptions | None = None,
    log_format: str | None = None,
    listeners=(),
    stats: ReadStats | None = None,
) -> LogFacts:
    """Read every log file once and return what the audit needs from it; `listeners` (the
    lock analysis) are fed from the same read."""
    stats = stats if stats is not None else ReadStats()
    digest = LogDigest(options, listeners)
    add_record = digest.add_record
    # Millions of short-lived records and no reference cycles among them: the cyclic
    # collector's passes would only cost time.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for record in read_records(paths, prefix, stats, log_format):
            add_record(record)
    finally:
        if collecting:
            gc.enable()
    facts = digest.facts(stats)
    facts.line_prefix = prefix
    return facts
