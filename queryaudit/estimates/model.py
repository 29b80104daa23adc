"""What a row-estimate experiment stores in the snapshot: plain dataclasses with a JSON round trip."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PredicateCount:
    """One predicate of a misestimated scan (or their conjunction), as the planner
    estimates it alone and as counted."""

    sql: str  # the condition as run: ((city)::text = 'paris'::text)
    columns: list[str] = field(default_factory=list)  # the table's columns it reads
    plain_column: bool = True  # compares a bare column (not an expression of it)
    estimated_rows: float | None = None  # EXPLAIN of SELECT ... WHERE <this alone>
    actual_rows: int | None = None  # count(*) WHERE <this alone>; None when cut off
    problem: str | None = None  # why a figure is missing

    @property
    def q_error(self) -> float | None:
        if self.estimated_rows is None or self.actual_rows is None:
            return None
        est, act = max(1.0, self.estimated_rows), max(1.0, float(self.actual_rows))
        return max(est / act, act / est)

    @property
    def underestimated(self) -> bool:
        return (
            self.actual_rows is not None
            and self.estimated_rows is not None
            and max(1.0, self.actual_rows) > max(1.0, self.estimated_rows)
        )


@dataclass
class EstimateExperiment:
    """The experiment on one misestimated scan of one captured plan."""

    queryid: str
    node_id: str  # PlanNode.path of the scan in the captured plan
    table: str  # schema-qualified
    table_rows: float | None = None  # the planner's estimate of the whole table (reltuples scaled to its size)
    predicates: list[PredicateCount] = field(default_factory=list)  # each alone
    combined: PredicateCount | None = None  # all of them together
    untested: list[str] = field(default_factory=list)  # conditions that cannot run alone (join keys, subplans)
    duration_ms: float = 0.0
    problem: str | None = None  # why no experiment ran
