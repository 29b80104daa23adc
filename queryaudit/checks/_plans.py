"""What every plan check shares: the captured plans as models, with their statement,
the Amdahl saving of a node, severity by impact, and relation names resolved to the
catalog. Not a check (the leading underscore keeps it out of the registry)."""

from __future__ import annotations

from queryaudit.findings import severity_from_saving
from queryaudit.plans import model as plan_model
from queryaudit.plans.captured import CapturedPlan, analyzed_plans, captured_plans, table_for  # noqa: F401
from queryaudit.plans.model import PlanNode
from queryaudit.snapshot import Snapshot, Table
from queryaudit.sql import quote_qualified
from queryaudit.work_mem import block_size, scoped_work_mem_sql, work_mem_for  # noqa: F401 (the checks' import path)

# Severity follows the predicted saving (share of the database's total execution time).


severity_for = severity_from_saving  # the one scale, under the name the plan checks use


def columns_of(table: Table | None, node: PlanNode, fields: tuple[str, ...] | None = None) -> list[str]:
    """Columns of `table` that the node's conditions (or only `fields`) reference."""
    if table is None:
        return []
    names = {c.name for c in table.columns}
    aliases = {None, node.alias, node.raw.get("Relation Name"), table.name}
    out: list[str] = []
    texts = [v for k, v in node.conditions.items() if fields is None or k in fields]
    for text in texts:
        for qualifier, column in plan_model.condition_columns(text):
            if column in names and qualifier in aliases and column not in out:
                out.append(column)
    return out


def qualified(table: Table) -> str:
    return quote_qualified(table.schema, table.name)


def node_evidence(captured: CapturedPlan, node: PlanNode, snapshot: Snapshot) -> dict:
    data = node.evidence()
    data.update(
        {
            "queryid": captured.queryid,
            "plan_method": captured.capture.method,
            "statement_share": round(captured.statement_share(snapshot), 4),
            "node_share_of_statement": round(captured.plan.share(node), 4),
        }
    )
    if captured.plan.execution_ms is not None:
        data["execution_ms"] = round(captured.plan.execution_ms, 3)
    # Which values the plan ran with, and how close it came to the workload (plans/workload.py).
    data["plan_values"] = list(captured.capture.parameters)
    match = captured.capture.workload_match
    if match is not None:
        data["workload_match"] = {
            "verdict": match.verdict,
            "rows_ratio": match.rows_ratio,
            "temp_ratio": match.temp_ratio,
            "spill_agreement": match.spill_agreement,
        }
    return data


def workload_spill_kb(snapshot: Snapshot, captured: CapturedPlan) -> float:
    """The workload's own spill per call (kB of temp blocks written), when the plan spills
    less than half of it: the sample selected less than the workload runs, and a size
    fitted to it would still spill. 0 otherwise (the plan's own figure stands)."""
    match = captured.capture.workload_match
    if match is None or not match.workload_temp_blocks or match.workload_temp_blocks <= 2 * match.plan_temp_blocks:
        return 0.0
    return match.workload_temp_blocks * block_size(snapshot) / 1024
