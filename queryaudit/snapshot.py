"""The facts an audit works from: plain dataclasses with a JSON round trip.

Collection stages are the only code that talks to the server (collect/ says which);
everything after them reads a Snapshot, so checks and reports run the same from a live
audit or a saved file.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from queryaudit.advisor.model import IndexAdvice
from queryaudit.errors import AuditError
from queryaudit.estimates.model import EstimateExperiment
from queryaudit.locks.facts import LockFacts
from queryaudit.logs.facts import LogFacts
from queryaudit.plans.workload import ParameterSet, WorkloadMatch
from queryaudit.verify.model import FixVerification

SNAPSHOT_FORMAT = 1


@dataclass
class ServerInfo:
    version_num: int
    version: str
    database: str
    host: str | None = None
    user: str | None = None
    in_recovery: bool = False
    extensions: dict[str, str] = field(default_factory=dict)  # created in the audited database
    available_extensions: dict[str, str] = field(default_factory=dict)  # installable on the server
    settings: dict[str, str] = field(default_factory=dict)
    # pg_db_role_setting rows for this database or all: {role, database, settings: ["work_mem=64kB"]}
    role_settings: list[dict] = field(default_factory=list)
    # pg_stat_statements_info (14+): when the statistics window began and how many
    # entries were evicted since; both qualify every cumulative number we read.
    pgss_stats_reset: str | None = None
    pgss_dealloc: int | None = None
    stats_reset: str | None = None  # pg_stat_database.stats_reset: since when idx_scan & co. count
    postmaster_start: str | None = None
    # Target identity for the audit history: the port, and the cluster's system identifier
    # (pg_control_system(); None when the role may not read it).
    port: int | None = None
    system_identifier: str | None = None


@dataclass
class Statement:
    """One pg_stat_statements row, with names that do not depend on the server version."""

    queryid: str
    query: str
    calls: int
    total_exec_time_ms: float
    mean_exec_time_ms: float
    rows: int
    min_exec_time_ms: float = 0.0
    max_exec_time_ms: float = 0.0
    stddev_exec_time_ms: float = 0.0
    total_plan_time_ms: float = 0.0
    plans: int = 0
    shared_blks_hit: int = 0
    shared_blks_read: int = 0
    shared_blks_dirtied: int = 0
    shared_blks_written: int = 0
    local_blks_hit: int = 0
    local_blks_read: int = 0
    temp_blks_read: int = 0
    temp_blks_written: int = 0
    blk_read_time_ms: float = 0.0
    blk_write_time_ms: float = 0.0
    wal_records: int = 0
    wal_bytes: int = 0
    userid: int | None = None
    username: str | None = None
    toplevel: bool | None = None  # 14+
    jit_functions: int | None = None  # 15+
    jit_total_time_ms: float | None = None  # 15+: generation + inlining + optimization + emission (+ deform 17+)
    temp_blk_read_time_ms: float | None = None  # 15+
    temp_blk_write_time_ms: float | None = None
    stats_since: str | None = None  # 17+
    parallel_workers_to_launch: int | None = None  # 18+
    parallel_workers_launched: int | None = None  # 18+
    wal_buffers_full: int | None = None  # 18+

    @property
    def cache_hit_ratio(self) -> float | None:
        total = self.shared_blks_hit + self.shared_blks_read
        return self.shared_blks_hit / total if total else None


@dataclass
class Column:
    name: str
    type: str
    not_null: bool = False
    attnum: int = 0
    default: str | None = None


@dataclass
class Table:
    schema: str
    name: str
    oid: int = 0
    kind: str = "r"  # r table, p partitioned table, m materialized view
    reltuples: float = 0.0
    relpages: int = 0
    total_bytes: int = 0
    table_bytes: int = 0
    seq_scan: int = 0
    seq_tup_read: int = 0
    idx_scan: int = 0
    idx_tup_fetch: int = 0
    n_tup_ins: int = 0
    n_tup_upd: int = 0
    n_tup_del: int = 0
    n_tup_hot_upd: int = 0
    n_live_tup: int = 0
    n_dead_tup: int = 0
    n_mod_since_analyze: int = 0
    last_analyze: str | None = None
    last_autoanalyze: str | None = None
    last_vacuum: str | None = None
    last_autovacuum: str | None = None
    reloptions: list[str] = field(default_factory=list)
    columns: list[Column] = field(default_factory=list)
    partition_of: str | None = None  # schema-qualified parent when this table is a partition

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass
class View:
    """A view: what its name means to a statement (columns) and what it reads (definition)."""

    schema: str
    name: str
    definition: str = ""
    columns: list[Column] = field(default_factory=list)

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass
class Index:
    schema: str
    name: str
    table: str  # schema-qualified
    definition: str
    method: str = "btree"
    # Key columns in index order; an expression appears as its deparsed text.
    columns: list[str] = field(default_factory=list)
    include_columns: list[str] = field(default_factory=list)
    opclasses: list[str] = field(default_factory=list)
    predicate: str | None = None
    is_unique: bool = False
    is_primary: bool = False
    is_exclusion: bool = False
    is_valid: bool = True
    is_ready: bool = True
    constraint_name: str | None = None
    constraint_type: str | None = None  # p, u, x when the index backs a constraint
    bytes: int = 0
    idx_scan: int = 0
    idx_tup_read: int = 0
    idx_tup_fetch: int = 0
    last_idx_scan: str | None = None  # 16+

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass
class ForeignKey:
    name: str
    table: str  # referencing, schema-qualified
    columns: list[str]
    ref_table: str
    ref_columns: list[str]
    on_delete: str = "a"
    on_update: str = "a"
    validated: bool = True


@dataclass
class ColumnStats:
    """pg_stats for one column; the value arrays are kept as text."""

    table: str  # schema-qualified
    column: str
    null_frac: float | None = None
    n_distinct: float | None = None
    avg_width: int | None = None
    correlation: float | None = None
    most_common_vals: list[str | None] | None = None
    most_common_freqs: list[float] | None = None
    histogram_bounds: list[str | None] | None = None


@dataclass
class ExtendedStatistic:
    """pg_statistic_ext: CREATE STATISTICS objects that exist."""

    name: str
    table: str
    columns: list[str]
    kinds: list[str]


@dataclass
class PlanCapture:
    """One EXPLAIN of a statement, or why none was taken."""

    queryid: str
    method: str  # analyze | analyze-rolled-back | generic | explain | skipped
    plan: dict | None = None  # the top object of EXPLAIN (FORMAT JSON)
    query_text: str | None = None  # what was actually explained (with bound values)
    parameters: list[str] = field(default_factory=list)
    parameter_source: str | None = None
    skipped_reason: str | None = None
    duration_ms: float | None = None
    # Execution Time (ms) of each EXPLAIN ANALYZE with a different sampled row, the
    # plan above being the first: the spread says how much the values matter.
    sample_ms: list[float] = field(default_factory=list)
    # How closely the plan above reproduces the workload's per-call figures
    # (queryaudit.plans.workload); None when it was not executed.
    workload_match: WorkloadMatch | None = None
    # Every value set EXPLAIN ANALYZEd for the statement, closest to the workload first,
    # with its weight (the share of calls it stands for): the index advisor's input.
    parameter_sets: list[ParameterSet] = field(default_factory=list)
    # The first sample, kept when the search for the workload's values replaced it.
    first_sample: ParameterSet | None = None
    search_note: str | None = None  # what the search tried and how close it came


@dataclass
class StageError:
    stage: str
    message: str


@dataclass
class Snapshot:
    server: ServerInfo
    collected_at: str
    tool_version: str = ""
    format: int = SNAPSHOT_FORMAT
    statements: list[Statement] = field(default_factory=list)
    # Totals over every statement of the database, not only the ones kept: the
    # denominator of every "share of total time".
    total_exec_time_ms: float = 0.0
    total_calls: int = 0
    statement_count: int = 0
    tables: list[Table] = field(default_factory=list)
    indexes: list[Index] = field(default_factory=list)
    views: list[View] = field(default_factory=list)  # for name resolution (queryaudit.names)
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    column_stats: list[ColumnStats] = field(default_factory=list)
    extended_statistics: list[ExtendedStatistic] = field(default_factory=list)
    plans: list[PlanCapture] = field(default_factory=list)
    # Set by the index advisor stage (verified in its own session); None when it did not run.
    index_advice: IndexAdvice | None = None
    # Set by the estimate experiments stage: misestimated scans' conditions estimated and
    # counted alone and together (queryaudit.estimates); empty when it did not run.
    estimate_experiments: list[EstimateExperiment] = field(default_factory=list)
    # Set by the fix verification stage (fixes tried and timed); None when it did not run.
    fix_verification: FixVerification | None = None
    # Set by the lock sampling stage (--sample-seconds); None when it did not run.
    lock_samples: LockFacts | None = None
    # Lock waits, deadlocks and lock timeouts read from the server log; None without a log.
    lock_log: LockFacts | None = None
    # Statements, latency percentiles and N+1 loops read from server logs (--log); None without.
    logs: LogFacts | None = None
    errors: list[StageError] = field(default_factory=list)
    partial: bool = False
    # Set by optional stages (logs, lock sampling) as plain JSON-able data.
    extras: dict[str, Any] = field(default_factory=dict)

    # -- lookups used by checks -------------------------------------------------
    def table(self, qualified: str) -> Table | None:
        return self._tables_by_name().get(qualified)

    def _tables_by_name(self) -> dict[str, Table]:
        cache = self.__dict__.get("_table_cache")
        if cache is None or len(cache) != len(self.tables):
            cache = {t.qualified_name: t for t in self.tables}
            self.__dict__["_table_cache"] = cache
        return cache

    def indexes_of(self, qualified_table: str) -> list[Index]:
        return [i for i in self.indexes if i.table == qualified_table]

    def statement(self, queryid: str) -> Statement | None:
        return next((s for s in self.statements if s.queryid == queryid), None)

    def plan_for(self, queryid: str) -> PlanCapture | None:
        return next((p for p in self.plans if p.queryid == queryid and p.plan is not None), None)

    def stats_for(self, qualified_table: str, column: str) -> ColumnStats | None:
        return next((c for c in self.column_stats if c.table == qualified_table and c.column == column), None)

    def record_error(self, stage: str, message: str) -> None:
        self.errors.append(StageError(stage, message))
        self.partial = True

    # -- JSON round trip ----------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, default=str)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def from_dict(cls, data: dict) -> Snapshot:
        return _from_dict(cls, data)

    @classmethod
    def load(cls, path: str | Path) -> Snapshot:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise AuditError(f"snapshot file not found: {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise AuditError(f"{path} is not a queryaudit snapshot (invalid JSON: {exc})") from None
        if not isinstance(data, dict) or "server" not in data or "collected_at" not in data:
            raise AuditError(f"{path} is not a queryaudit snapshot (no server/collected_at)")
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError, KeyError) as exc:
            raise AuditError(f"{path} is not a valid queryaudit snapshot: {exc}") from None


def _from_dict(cls, data):
    """Rebuild a dataclass (and its nested dataclasses) from asdict() output."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: _coerce(hints[k], v) for k, v in data.items() if k in names}
    return cls(**kwargs)


def _coerce(tp, value):
    if value is None:
        return None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value) if len(inner) == 1 else value
    if dataclasses.is_dataclass(tp):
        return _from_dict(tp, value)
    if origin is list and args:
        return [_coerce(args[0], v) for v in value]
    if origin is dict and len(args) == 2:
        return {k: _coerce(args[1], v) for k, v in value.items()}
    return value
