"""Log facts: what the server log told us, as plain JSON-able dataclasses for the snapshot.

Built by `queryaudit.logs.digest` (streaming ingest of stderr, csvlog or jsonlog files);
read by the n-plus-one check and by the report (latency percentiles per statement).
Statements are keyed by the queryid when the log carries one (`%Q`, csvlog/jsonlog 14+),
else by `fp:<pglast fingerprint>`, which is what pg_stat_statements' normalized text
fingerprints to as well, so the two sources can be joined either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LogStatement:
    """One statement's executions in the log, with latency percentiles."""

    key: str
    fingerprint: str | None
    queryid: str | None
    query: str  # the first text seen (may carry literal values)
    count: int = 0
    total_ms: float = 0.0
    min_ms: float = 0.0
    max_ms: float = 0.0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    example_parameters: list[str] = field(default_factory=list)
    plan: dict | None = None  # the slowest auto_explain plan in JSON, when logged so
    plan_text: str | None = None  # ... or in text format
    plan_duration_ms: float | None = None


@dataclass
class LogNPlusOne:
    """Loops of one statement in one session (see queryaudit.n_plus_one.runs.RunDetector), summed
    over every run with the same child and parent."""

    fingerprint: str
    query: str
    queryid: str | None = None
    parent_fingerprint: str | None = None
    parent_query: str | None = None
    parent_queryid: str | None = None
    runs: int = 0
    executions: int = 0
    total_ms: float = 0.0
    max_run: int = 0
    transactions: int = 0  # distinct transactions (or requests, in autocommit) the runs were in
    example_session: str | None = None
    example_parameters: list[str] = field(default_factory=list)
    first_seen: str | None = None
    last_seen: str | None = None


@dataclass
class LogFacts:
    files: list[str] = field(default_factory=list)
    formats: dict[str, str] = field(default_factory=dict)
    line_prefix: str | None = None
    lines: int = 0
    records: int = 0
    malformed_lines: int = 0
    truncated_fields: int = 0
    executions: int = 0  # statements with a duration
    total_ms: float = 0.0
    first_timestamp: str | None = None
    last_timestamp: str | None = None
    statements: list[LogStatement] = field(default_factory=list)  # the top ones by total time
    statement_count: int = 0  # distinct statements seen
    n_plus_one: list[LogNPlusOne] = field(default_factory=list)
    lock_events: int = 0
    deadlocks: int = 0
    lock_timeouts: int = 0
    temp_files: int = 0
    temp_bytes: int = 0
    plans: int = 0
    thresholds: dict[str, float] = field(default_factory=dict)

    def statement_for(self, queryid: str | None = None, fingerprint: str | None = None) -> LogStatement | None:
        for s in self.statements:
            if queryid and s.queryid == queryid:
                return s
        if fingerprint:
            return next((s for s in self.statements if s.fingerprint == fingerprint), None)
        return None
