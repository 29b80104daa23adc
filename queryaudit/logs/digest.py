"""Aggregating log events into LogFacts, in one pass and bounded memory.

Per statement (queryid, else pglast fingerprint): count, total, min/max and a
`LatencySketch` for p50/p95/p99; the slowest auto_explain plan; N+1 loops through
`queryaudit.nplusone.RunDetector`. Every table here is capped, so memory stays flat
however long the log is.
"""
from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from queryaudit.log_facts import LogFacts, LogNPlusOne, LogStatement
from queryaudit.logs.events import LockEvent, PlanEvent, SessionEndEvent, StatementEvent, TempFileEvent
from queryaudit.logs.messages import to_events
from queryaudit.logs.reader import ReadStats, read_records
from queryaudit.nplusone import MIN_EXECUTIONS, MIN_RUN_MS, Run, RunDetector
from queryaudit.sql import fingerprint as pglast_fingerprint

MAX_STATEMENTS = 50_000  # distinct statements followed; beyond, new ones only count in the totals
MAX_QUERY_CHARS = 4000
TOP_STATEMENTS = 500  # kept in the snapshot, by total time
_CACHE_SIZE = 100_000


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


class Fingerprinter:
    """pglast fingerprints behind two bounded caches (raw text, then literal-free text)."""

    def __init__(self):
        self.raw: dict[str, str | None] = {}
        self.normalized: dict[str, str | None] = {}

    def __call__(self, query: str) -> str | None:
        fp = self.raw.get(query, False)
        if fp is not False:
            return fp
        key = _LITERALS.sub("?", query)
        fp = self.normalized.get(key, False)
        if fp is False:
            fp = pglast_fingerprint(query)
            if fp is None:  # does not parse (truncated): group by its literal-free text
                fp = "text:" + format(zlib.crc32(" ".join(key.split()).encode()), "08x")
            if len(self.normalized) >= _CACHE_SIZE:
                self.normalized.clear()
            self.normalized[key] = fp
        if len(self.raw) >= _CACHE_SIZE:
            self.raw.clear()
        self.raw[query] = fp
        return fp


class _Agg:
    __slots__ = ("key", "fingerprint", "queryid", "query", "count", "total", "min", "max", "sketch", "params",
                 "plan", "plan_text", "plan_ms")

    def __init__(self, key, fingerprint, queryid, query):
        self.key, self.fingerprint, self.queryid = key, fingerprint, queryid
        self.query = query[:MAX_QUERY_CHARS]
        self.count, self.total, self.min, self.max = 0, 0.0, math.inf, 0.0
        self.sketch = LatencySketch()
        self.params: list[str] = []
        self.plan = self.plan_text = self.plan_ms = None


@dataclass
class DigestOptions:
    min_executions: int = MIN_EXECUTIONS
    min_run_ms: float = MIN_RUN_MS
    top_statements: int = TOP_STATEMENTS


class LogDigest:
    """Feed events (`add`), then `facts()`. Lock and temp-file events are counted here;
    the lock-contention code reads the events themselves (queryaudit.logs.iter_events)."""

    def __init__(self, options: DigestOptions | None = None):
        self.options = options or DigestOptions()
        self.fingerprint = Fingerprinter()
        self.stats: dict[str, _Agg] = {}
        self.patterns: dict[tuple, LogNPlusOne] = {}
        self.detector = RunDetector(self._on_run, min_executions=self.options.min_executions,
                                    min_total_ms=self.options.min_run_ms)
        self.facts_ = LogFacts(thresholds={"min_executions": self.options.min_executions,
                                           "min_run_ms": self.options.min_run_ms})

    def _key(self, queryid: str | None, query: str) -> tuple[str, str | None]:
        fp = self.fingerprint(query)
        return (queryid or f"fp:{fp}"), fp

    def add(self, event) -> None:
        facts = self.facts_
        if isinstance(event, StatementEvent):
            if event.phase in ("parse", "bind"):
                return
            if event.timestamp:
                if facts.first_timestamp is None:
                    facts.first_timestamp = event.timestamp
                facts.last_timestamp = event.timestamp
            key, fp = self._key(event.queryid, event.query)
            agg = self.stats.get(key)
            if agg is None:
                if len(self.stats) >= MAX_STATEMENTS:
                    agg = None
                else:
                    agg = self.stats[key] = _Agg(key, fp, event.queryid, event.query)
            duration = event.duration_ms
            if duration is not None:
                facts.executions += 1
                facts.total_ms += duration
                if agg is not None:
                    agg.count += 1
                    agg.total += duration
                    if duration < agg.min:
                        agg.min = duration
                    if duration > agg.max:
                        agg.max = duration
                    agg.sketch.add(duration)
            if agg is not None and not agg.params and event.parameters:
                agg.params = event.parameters[:20]
            params = tuple(event.parameters) if event.parameters else event.query
            self.detector.feed(event.session_key, fp, event.query, params, duration, event.timestamp,
                               queryid=event.queryid)
        elif isinstance(event, PlanEvent):
            facts.plans += 1
            if not event.query:
                return
            key, fp = self._key(event.queryid, event.query)
            agg = self.stats.get(key)
            if agg is None and len(self.stats) < MAX_STATEMENTS:
                # auto_explain logs the plan before the statement's own duration line.
                agg = self.stats[key] = _Agg(key, fp, event.queryid, event.query)
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

    def _on_run(self, run: Run) -> None:
        key = (run.fingerprint, run.parent_fingerprint)
        p = self.patterns.get(key)
        if p is None:
            if len(self.patterns) >= 1000:
                return
            p = self.patterns[key] = LogNPlusOne(
                fingerprint=run.fingerprint, query=run.query[:MAX_QUERY_CHARS], queryid=run.queryid,
                parent_fingerprint=run.parent_fingerprint,
                parent_query=run.parent_query[:MAX_QUERY_CHARS] if run.parent_query else None,
                parent_queryid=run.parent_queryid, example_session=run.session,
                example_parameters=[", ".join(p) if isinstance(p, tuple) else str(p)[:200]
                                    for p in run.example_parameters[:3]],
                first_seen=run.first_ts)
        p.runs += 1
        p.executions += run.count
        p.total_ms += run.total_ms
        p.max_run = max(p.max_run, run.count)
        p.last_seen = run.last_ts or p.last_seen

    def facts(self, stats: ReadStats | None = None) -> LogFacts:
        self.detector.finish()
        facts = self.facts_
        if stats is not None:
            facts.files, facts.formats = list(stats.files), dict(stats.formats)
            facts.lines, facts.records = stats.lines, stats.records
            facts.malformed_lines, facts.truncated_fields = stats.malformed_lines, stats.truncated_fields
        facts.statement_count = len(self.stats)
        top = sorted(self.stats.values(), key=lambda a: a.total, reverse=True)[: self.options.top_statements]
        facts.statements = [LogStatement(
            key=a.key, fingerprint=a.fingerprint, queryid=a.queryid, query=a.query, count=a.count,
            total_ms=round(a.total, 3), min_ms=round(a.min if a.count else 0.0, 3), max_ms=round(a.max, 3),
            p50_ms=round(a.sketch.quantile(0.50), 3), p95_ms=round(a.sketch.quantile(0.95), 3),
            p99_ms=round(a.sketch.quantile(0.99), 3), example_parameters=a.params, plan=a.plan,
            plan_text=a.plan_text, plan_duration_ms=a.plan_ms) for a in top]
        facts.n_plus_one = sorted(self.patterns.values(), key=lambda p: p.total_ms, reverse=True)
        facts.total_ms = round(facts.total_ms, 3)
        return facts


def ingest(paths: Iterable[str | Path], prefix: str | None = None, options: DigestOptions | None = None,
           log_format: str | None = None) -> LogFacts:
    """Read every log file once and return what the audit needs from it."""
    stats = ReadStats()
    digest = LogDigest(options)
    add = digest.add
    for record in read_records(paths, prefix, stats, log_format):
        for event in to_events(record):
            add(event)
    facts = digest.facts(stats)
    facts.line_prefix = prefix
    return facts
