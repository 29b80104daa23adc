"""What the advisor stores in the snapshot: plain dataclasses with a JSON round trip."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StatementEffect:
    """One statement re-planned with one proposed index (alone)."""

    queryid: str
    cost_before: float | None = None
    cost_after: float | None = None
    ms_before: float | None = None  # --verify-real only
    ms_after: float | None = None
    fraction_removed: float = 0.0  # of the statement's time, predicted
    saving_ms: float = 0.0  # of the statement's total time in the statistics window


@dataclass
class ProposedIndex:
    table: str  # schema-qualified
    name: str  # generated, readable, free on that schema
    columns: list[str]  # key columns or expressions, in index order
    include: list[str] = field(default_factory=list)
    predicate: str | None = None
    descending: list[str] = field(default_factory=list)  # key columns stored DESC (mixed sort directions)
    method: str = "btree"
    create_sql: str = ""  # CREATE INDEX CONCURRENTLY IF NOT EXISTS ...
    reasons: list[str] = field(default_factory=list)  # equality, range, sort, join, plan-filter, ...
    size_bytes: int = 0
    size_source: str = "estimate"  # hypopg | estimate
    write_penalty_ms: float = 0.0  # index maintenance over the window, subtracted from the saving
    verification: str = "none"  # hypothetical | real | none
    statements: list[StatementEffect] = field(default_factory=list)
    saving_ms: float = 0.0  # summed over the statements it speeds up (before the write penalty)
    analyze_due: bool = False  # its table was never analyzed: the fix SQL starts with ANALYZE

    @property
    def queryids(self) -> list[str]:
        return [s.queryid for s in self.statements]


@dataclass
class Rejected:
    """SQL the server refused while the advisor worked: kept with its error, never dropped."""

    kind: str  # candidate (hypothetical or real CREATE INDEX) | statement (could not be planned)
    sql: str
    error: str
    queryid: str | None = None
    table: str | None = None


@dataclass
class IndexAdvice:
    method: str  # hypothetical | real | none
    hypopg_version: str | None = None
    install_hint: str | None = None  # how to get HypoPG when it is missing
    threshold: float = 0.05  # share of the cost of the statements a step changes that it must remove
    budget_bytes: int | None = None  # bytes; sizes are printed in MB = 10^6 bytes
    total_size_bytes: int = 0  # the whole proposed set, by HypoPG's estimate when verified
    planner_calls: int = 0  # statements planned by the search (cache misses)
    max_indexes: int = 10
    statements_considered: int = 0
    candidates_considered: int = 0
    candidates_verified: int = 0
    workload_cost_before: float | None = None  # time-weighted, over the statements considered
    workload_cost_after: float | None = None  # with the whole chosen set
    duration_ms: float = 0.0
    proposed: list[ProposedIndex] = field(default_factory=list)
    # queryid -> what its cost was computed on: representative | plan capture | generic plan | ...
    costed_on: dict[str, str] = field(default_factory=dict)
    # queryid -> why not every name of its SQL resolved (queryaudit.names): candidates may be missing
    unresolved: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    def reject(
        self, kind: str, sql: str, error: Exception | str, queryid: str | None = None, table: str | None = None
    ) -> None:
        message = (str(error).strip().splitlines() or [type(error).__name__])[0]
        if not any(r.kind == kind and r.sql == sql for r in self.rejected):
            self.rejected.append(Rejected(kind, sql, message, queryid, table))
