"""The captured plans of a snapshot as models, each with its statement: what the plan
checks and the stages after plan capture (estimate experiments) read. Pure."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from queryaudit import names
from queryaudit.findings import Saving, saving_from_share
from queryaudit.plans import model as plan_model
from queryaudit.plans.model import Plan, PlanNode
from queryaudit.snapshot import PlanCapture, Snapshot, Statement, Table


@dataclass
class CapturedPlan:
    statement: Statement
    capture: PlanCapture
    plan: Plan

    @property
    def queryid(self) -> str:
        return self.statement.queryid

    def statement_share(self, snapshot: Snapshot) -> float:
        total = snapshot.total_exec_time_ms
        return min(1.0, self.statement.total_exec_time_ms / total) if total > 0 else 0.0

    def saving(self, snapshot: Snapshot, fraction_of_statement: float) -> Saving:
        return saving_from_share(
            self.statement.total_exec_time_ms, fraction_of_statement, snapshot.total_exec_time_ms, self.statement.calls
        )


def captured_plans(snapshot: Snapshot) -> list[CapturedPlan]:
    """Every captured plan with its statement, built once per snapshot (checks share it)."""
    cache = snapshot.__dict__.get("_plan_models")
    if cache is not None and cache[0] == len(snapshot.plans):
        return cache[1]
    out = []
    for capture in snapshot.plans:
        if not capture.plan:
            continue
        statement = snapshot.statement(capture.queryid)
        if statement is None:
            continue
        try:
            out.append(CapturedPlan(statement, capture, plan_model.build(capture.plan)))
        except (ValueError, KeyError, TypeError):
            continue  # a plan we cannot read is no evidence of anything
    snapshot.__dict__["_plan_models"] = (len(snapshot.plans), out)
    return out


def analyzed_plans(snapshot: Snapshot) -> Iterator[CapturedPlan]:
    return (c for c in captured_plans(snapshot) if c.plan.analyzed)


def table_for(snapshot: Snapshot, node: PlanNode) -> Table | None:
    """The catalog table a node reads: its relation (schema-qualified with VERBOSE, else
    looked up by name on the search_path, queryaudit.names), or the table of the index a Bitmap Index Scan reads."""
    name = node.raw.get("Relation Name")
    schema = node.raw.get("Schema")
    if not name and node.index_name:
        index = next(
            (i for i in snapshot.indexes if i.name == node.index_name and (not schema or i.schema == schema)), None
        )
        return snapshot.table(index.table) if index else None
    if not name:
        return None
    relation = names.catalog_for(snapshot).find(schema, name)
    return snapshot.table(relation.qualified_name) if relation else None
