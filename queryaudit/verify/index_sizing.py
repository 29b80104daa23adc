"""Each proposed index sized on the values the workload runs, after the index advisor.

The advisor compares generic plans: `status = $1` is planned for an average value,
`at >= $1` for a third of the table. The workload runs particular values: a rare
`failed` that an index on status serves almost entirely, or a range that keeps 98 % of
the table and that no index can serve. For each proposed index and each of its
statements whose plan capture kept a value set close to the workload
(PlanCapture.workload_match, queryaudit.plans.workload), the statement with those values
is planned with and without the index (HypoPG, hypothetical: nothing is written, it
works in the read-only session); the planner cost removed, and whether the plan uses the
index at all, go into `snapshot.extras["index_sizing"][index name]`. The missing-index
check sizes the finding on them and drops a proposal no statement can use with its own
values.
"""

from __future__ import annotations

import re

import psycopg

from queryaudit.advisor.candidates import Candidate
from queryaudit.advisor.costing import Hypothetical
from queryaudit.plans.explain import explain_rolled_back, parameter_count, plan_cost
from queryaudit.snapshot import Snapshot


def _candidate(proposed, snapshot: Snapshot) -> Candidate:
    table = snapshot.table(proposed.table)
    names = {c.name for c in table.columns} if table else set()
    return Candidate(
        table=proposed.table,
        columns=tuple(proposed.columns),
        include=tuple(proposed.include),
        predicate=proposed.predicate,
        descending=tuple(proposed.descending),
        expressions=tuple(c for c in proposed.columns if c not in names),
    )


def _uses(plan: dict, oid: int) -> bool:
    """HypoPG names its indexes `<oid><method>_<table>_<columns>`."""
    text = str(plan)
    return re.search(rf"'Index Name': '<{oid}>", text) is not None


def size_on_workload(conn: psycopg.Connection, snapshot: Snapshot) -> None:
    advice = snapshot.index_advice
    if advice is None or not advice.proposed or "hypopg" not in snapshot.server.extensions:
        return
    sizing: dict[str, list[dict]] = {}
    with Hypothetical(conn) as hypo:
        for proposed in advice.proposed:
            captures = [(e, snapshot.plan_for(e.queryid)) for e in proposed.statements]
            captures = [
                (e, c)
                for e, c in captures
                if c is not None
                and c.workload_match is not None
                and c.workload_match.verdict != "unknown"
                and c.query_text
                and c.parameters
                and parameter_count(c.query_text) == 0
            ]
            if not captures:
                continue
            try:
                oid = None
                rows = []
                for effect, capture in captures:
                    before = explain_rolled_back(conn, capture.query_text, "FORMAT JSON")
                    if oid is None:
                        oid = hypo.create(_candidate(proposed, snapshot))[0]
                    after = explain_rolled_back(conn, capture.query_text, "FORMAT JSON")
                    cost_before, cost_after = plan_cost(before), plan_cost(after)
                    rows.append(
                        {
                            "queryid": effect.queryid,
                            "values": list(capture.parameters),
                            "verdict": capture.workload_match.verdict,
                            "rows_ratio": capture.workload_match.rows_ratio,
                            "cost_before": round(cost_before, 2),
                            "cost_after": round(cost_after, 2),
                            "uses_index": _uses(after, oid),
                            "fraction_removed": round(max(0.0, 1 - cost_after / cost_before), 4)
                            if cost_before
                            else 0.0,
                            "generic_fraction_removed": effect.fraction_removed,
                        }
                    )
                    hypo.drop(oid)
                    oid = None
            except psycopg.Error:
                if conn.broken:
                    raise
                continue  # HypoPG refused it: the advisor's generic sizing stands
            sizing[proposed.name] = rows
    snapshot.extras["index_sizing"] = sizing


def stage():
    """(name, fn(conn, snapshot)) for CollectOptions.stages; after the index advisor."""
    return "index sizing", size_on_workload
