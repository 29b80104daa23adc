"""Row-estimate experiments as a collection stage: after plan capture, in the audit's
read-only session, inside what is left of the EXPLAIN budget.

For each scan whose estimate the row-estimate-error check would report (its q-error
starts there and it matters to the statement), each condition it can test alone is
estimated by the planner (EXPLAIN, nothing runs) and counted (`SELECT count(*)`, under a
statement_timeout, in a transaction that is rolled back), and so is their conjunction.
Counts are reads of the audited table: bounded by COUNT_TIMEOUT_MS each, and by the
budget; a count cut off is recorded as such and the check falls back to the counters.
"""

from __future__ import annotations

import time

import psycopg

from queryaudit.checks import row_estimate_error
from queryaudit.estimates.model import EstimateExperiment, PredicateCount
from queryaudit.estimates.predicates import conjunction, source, testable
from queryaudit.plans.captured import analyzed_plans, table_for
from queryaudit.plans.explain import SET_LOCAL_SQL, explain_rolled_back, set_local
from queryaudit.plans.nested import nested_scalar
from queryaudit.snapshot import Snapshot

COUNT_TIMEOUT_MS = 5_000  # one count(*) of the audited table
MAX_EXPERIMENTS = 10  # misestimated scans tested per audit, worst q-error first
NOT_ESTIMATED = ("Hash Join", "Nested Loop", "Merge Join", "Aggregate", "HashAggregate", "GroupAggregate")


class _Budget:
    def __init__(self, deadline: float, statement_limit_ms: int):
        self.deadline, self.statement_limit_ms = deadline, statement_limit_ms

    def timeout_ms(self) -> int | None:
        left = (self.deadline - time.monotonic()) * 1000
        return int(min(COUNT_TIMEOUT_MS, self.statement_limit_ms, left)) if left > 50 else None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _count(conn: psycopg.Connection, query: str, timeout_ms: int) -> int:
    with conn.transaction(force_rollback=True):
        set_local(conn, "statement_timeout", f"{timeout_ms}ms")  # one pgss entry, whatever the value
        return int(nested_scalar(conn, query) or 0)  # nested: no pgss entry per condition


def _estimate(conn: psycopg.Connection, from_sql: str, where: str | None, timeout_ms: int) -> float:
    # Through plan capture's one prepared statement: the EXPLAIN text is the same for every
    # experiment, so pg_stat_statements gains no entry per condition tried.
    text = f"SELECT 1 FROM {from_sql}" + (f" WHERE {where}" if where else "")
    plan = explain_rolled_back(
        conn, text, "FORMAT JSON", setup=[(SET_LOCAL_SQL, ("statement_timeout", f"{timeout_ms}ms"))]
    )
    return float(plan["Plan"]["Plan Rows"])


def _measure(conn: psycopg.Connection, budget: _Budget, from_sql: str, predicate: PredicateCount, where: str) -> None:
    """The planner's estimate and the count of one condition (or a conjunction)."""
    timeout = budget.timeout_ms()
    if timeout is None:
        predicate.problem = "the EXPLAIN budget was used up before it was counted"
        return
    try:
        predicate.estimated_rows = _estimate(conn, from_sql, where, timeout)
        predicate.actual_rows = _count(conn, f"SELECT count(*) FROM {from_sql} WHERE {where}", timeout)
    except psycopg.errors.QueryCanceled:
        predicate.problem = f"the count was cut off by statement_timeout ({timeout} ms)"
    except psycopg.Error as exc:
        if conn.broken:
            raise
        predicate.problem = f"could not run alone: {_first_line(exc)}"


def _experiment(conn: psycopg.Connection, budget: _Budget, queryid: str, node, table) -> EstimateExperiment:
    started = time.monotonic()
    tested, untested = testable(node, table)
    experiment = EstimateExperiment(queryid=queryid, node_id=node.path, table=table.qualified_name, untested=untested)
    if not tested:
        experiment.problem = "no condition of the scan can run alone (join keys, subplan results, no condition)"
        return experiment
    from_sql = source(node, table)
    timeout = budget.timeout_ms()
    if timeout is None:
        experiment.problem = "the EXPLAIN budget was used up before the experiment"
        return experiment
    try:
        experiment.table_rows = _estimate(conn, from_sql, None, timeout)
    except psycopg.Error as exc:
        if conn.broken:
            raise
        experiment.problem = f"the table could not be read: {_first_line(exc)}"
        return experiment
    for predicate in tested:
        _measure(conn, budget, from_sql, predicate, predicate.sql)
    experiment.predicates = tested
    if len(tested) == 1:
        experiment.combined = tested[0]
    else:
        columns = list(dict.fromkeys(c for p in tested for c in p.columns))
        experiment.combined = PredicateCount(sql=conjunction(tested), columns=columns, plain_column=False)
        _measure(conn, budget, from_sql, experiment.combined, experiment.combined.sql)
    experiment.duration_ms = round((time.monotonic() - started) * 1000, 3)
    return experiment


def run_experiments(
    conn: psycopg.Connection, snapshot: Snapshot, deadline: float, statement_limit_ms: int
) -> list[EstimateExperiment]:
    """One experiment per misestimated scan the row-estimate-error check would report."""

    candidates = []
    for captured in analyzed_plans(snapshot):
        for node in row_estimate_error.origins(captured):
            if node.node_type in NOT_ESTIMATED or not row_estimate_error.matters(captured, node):
                continue
            table = table_for(snapshot, node)
            if table is not None:
                candidates.append((node.q_error or 0.0, captured.queryid, node, table))
    candidates.sort(key=lambda c: -c[0])
    budget = _Budget(deadline, statement_limit_ms)
    done: dict[tuple, EstimateExperiment] = {}
    out = []
    for _, queryid, node, table in candidates[:MAX_EXPERIMENTS]:
        key = (table.qualified_name, tuple(p.sql for p in testable(node, table)[0]))
        if key in done:  # the same conditions on the same table in another statement: same figures
            same = done[key]
            out.append(
                EstimateExperiment(
                    queryid=queryid,
                    node_id=node.path,
                    table=same.table,
                    table_rows=same.table_rows,
                    predicates=same.predicates,
                    combined=same.combined,
                    untested=same.untested,
                    problem=same.problem,
                )
            )
            continue
        done[key] = _experiment(conn, budget, queryid, node, table)
        out.append(done[key])
    return out


def budget_left(snapshot: Snapshot, budget_s: float) -> float:
    """What plan capture left of the EXPLAIN budget (its captures record their durations)."""
    used = sum((p.duration_ms or 0.0) for p in snapshot.plans) / 1000
    return max(0.0, budget_s - used)


def stage(budget_s: float, statement_limit_ms: int):
    """(name, fn(conn, snapshot)) for CollectOptions.stages; after the plans stage."""

    def run(conn: psycopg.Connection, snapshot: Snapshot) -> None:
        deadline = time.monotonic() + budget_left(snapshot, budget_s)
        snapshot.estimate_experiments = run_experiments(conn, snapshot, deadline, statement_limit_ms)

    return "estimate experiments", run
