"""What every plan check shares: the captured plans as models, with their statement,
the Amdahl saving of a node, severity by impact, and relation names resolved to the
catalog. Not a check (the leading underscore keeps it out of the registry)."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from queryaudit import names
from queryaudit.findings import Saving, saving_from_share, severity_from_saving
from queryaudit.plans import model as plan_model
from queryaudit.plans.model import Plan, PlanNode
from queryaudit.snapshot import PlanCapture, Snapshot, Statement, Table
from queryaudit.sql import quote_qualified

# Severity follows the predicted saving (share of the database's total execution time).


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
        return saving_from_share(self.statement.total_exec_time_ms, fraction_of_statement,
                                 snapshot.total_exec_time_ms, self.statement.calls)


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


severity_for = severity_from_saving  # the one scale, under the name the plan checks use


def table_for(snapshot: Snapshot, node: PlanNode) -> Table | None:
    """The catalog table a node reads: its relation (schema-qualified with VERBOSE, else
    looked up by name on the search_path, queryaudit.names), or the table of the index a Bitmap Index Scan reads."""
    name = node.raw.get("Relation Name")
    schema = node.raw.get("Schema")
    if not name and node.index_name:
        index = next((i for i in snapshot.indexes if i.name == node.index_name and (not schema or i.schema == schema)),
                     None)
        return snapshot.table(index.table) if index else None
    if not name:
        return None
    relation = names.catalog_for(snapshot).find(schema, name)
    return snapshot.table(relation.qualified_name) if relation else None


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


def work_mem_for(kilobytes: float) -> str:
    """A work_mem that holds `kilobytes` in memory, rounded up to a power-of-two MB.

    An in-memory sort or hash needs more than its on-disk size (tuple headers and
    pointers): twice the spilled size is the usual rule of thumb."""
    needed_mb = max(1.0, 2 * kilobytes / 1024)
    mb = 1
    while mb < needed_mb:
        mb *= 2
    return f"{mb}MB" if mb < 1024 else f"{mb // 1024}GB"


def scoped_work_mem_sql(value: str) -> str:
    return (f"-- for this statement only, inside its transaction:\nSET LOCAL work_mem = '{value}';\n"
            f"-- or for the role that runs it:\n-- ALTER ROLE <app_role> SET work_mem = '{value}';")


def node_evidence(captured: CapturedPlan, node: PlanNode, snapshot: Snapshot) -> dict:
    data = node.evidence()
    data.update({"queryid": captured.queryid, "plan_method": captured.capture.method,
                 "statement_share": round(captured.statement_share(snapshot), 4),
                 "node_share_of_statement": round(captured.plan.share(node), 4)})
    if captured.plan.execution_ms is not None:
        data["execution_ms"] = round(captured.plan.execution_ms, 3)
    # Which values the plan ran with, and how close it came to the workload (plans/workload.py).
    data["plan_values"] = list(captured.capture.parameters)
    match = captured.capture.workload_match
    if match is not None:
        data["workload_match"] = {"verdict": match.verdict, "rows_ratio": match.rows_ratio,
                                  "temp_ratio": match.temp_ratio, "spill_agreement": match.spill_agreement}
    return data


def workload_spill_kb(snapshot: Snapshot, captured: CapturedPlan) -> float:
    """The workload's own spill per call (kB of temp blocks written), when the plan spills
    less than half of it: the sample selected less than the workload runs, and a size
    fitted to it would still spill. 0 otherwise (the plan's own figure stands)."""
    match = captured.capture.workload_match
    if match is None or not match.workload_temp_blocks or match.workload_temp_blocks <= 2 * match.plan_temp_blocks:
        return 0.0
    return match.workload_temp_blocks * block_size(snapshot) / 1024


def block_size(snapshot: Snapshot) -> int:
    """The server's block size in bytes (temp blocks are counted in it)."""
    try:
        return int(snapshot.server.settings.get("block_size") or 8192)
    except ValueError:
        return 8192
