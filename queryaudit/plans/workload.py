"""How closely an analyzed plan reproduces what the workload runs.

pg_stat_statements holds the workload's own figures per call: rows, shared blocks hit +
read, temp blocks written, mean time. One EXPLAIN ANALYZE with drawn values is one
execution with values that may be nothing like them (a histogram middle that selects a
tenth of the rows the workload selects, a common value where the workload asks for a
rare one). This module compares the two, plan / workload per call, and says whether the
plan stands for the workload: rows and shared blocks within a factor of 2, and the plan
spills (temp blocks written) exactly when the workload does. Time is shown, never
judged: one run on a busy machine is noise.

Pure: plain dataclasses stored in the snapshot (PlanCapture.workload_match and
PlanCapture.parameter_sets) and functions of a plan and a pg_stat_statements row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

FACTOR = 2.0  # a plan within this factor of the workload per call stands for it
SPILL_MISMATCH = 3.0  # distance added when one spills and the other does not (as far as a 20x row error)
BLOCKS_WEIGHT = 0.5  # rows decide first: blocks also move with caching of the index pages read


@dataclass
class WorkloadMatch:
    """One analyzed plan against the workload's per-call figures (ratio = plan / workload)."""

    verdict: str  # representative | unlike | unknown (no calls to compare with)
    rows_ratio: float | None = None
    blocks_ratio: float | None = None  # shared blocks hit + read
    temp_ratio: float | None = None  # temp blocks written (None when neither writes any)
    time_ratio: float | None = None  # execution time against mean_exec_time: shown, never judged
    plan_rows: float = 0.0
    workload_rows: float = 0.0  # per call
    plan_blocks: float = 0.0
    workload_blocks: float = 0.0
    plan_temp_blocks: float = 0.0
    workload_temp_blocks: float = 0.0
    plan_ms: float | None = None
    workload_ms: float | None = None
    workload_min_ms: float | None = None
    workload_max_ms: float | None = None
    plan_spills: bool = False
    workload_spills: bool = False
    spill_agreement: bool = True
    distance: float = 0.0  # what the search minimises: |log rows| + 0.5 |log blocks| + spill mismatch
    reasons: list[str] = field(default_factory=list)  # why unlike, in the DBA's words


@dataclass
class ParameterSet:
    """One set of values EXPLAIN ANALYZEd for a statement, and how well it reproduced the
    workload. The index advisor and fix verification take the sets with weight > 0."""

    values: list[str | None]
    sources: list[str] = field(default_factory=list)  # per value, where it came from
    # The share of the statement's calls the set stands for, as far as the audit can tell:
    # the sets within FACTOR of the workload share 1.0 equally, the others weigh 0.
    weight: float = 0.0
    match: WorkloadMatch | None = None
    chosen: bool = False  # the set the stored plan, the checks and the fixes use


def _blocks(raw: dict, *keys: str) -> float:
    return float(sum(float(raw.get(k) or 0) for k in keys))


def plan_figures(plan: dict) -> dict:
    """Rows, shared blocks, temp blocks written and time of one EXPLAIN ANALYZE (the top
    node's buffers include every node below and the parallel workers)."""
    root = plan.get("Plan") or {}
    counted = root
    if root.get("Node Type") == "ModifyTable" and root.get("Plans"):
        counted = root["Plans"][0]  # pg_stat_statements counts the rows written, not returned
    return {
        "rows": float(counted.get("Actual Rows") or 0) * float(counted.get("Actual Loops") or 1),
        "blocks": _blocks(root, "Shared Hit Blocks", "Shared Read Blocks"),
        "temp": _blocks(root, "Temp Written Blocks"),
        "ms": float(plan["Execution Time"]) if plan.get("Execution Time") is not None else None,
    }


def _ratio(plan_value: float, workload_value: float) -> float:
    """plan / workload, +1 on both sides so that 0 against 0 is a match and 0 against 3 is not infinite."""
    return round((plan_value + 1.0) / (workload_value + 1.0), 4)


def _within(ratio: float | None) -> bool:
    return ratio is None or 1 / FACTOR <= ratio <= FACTOR


def per_call(statement) -> dict | None:
    calls = statement.calls or 0
    if calls <= 0:
        return None
    return {
        "rows": statement.rows / calls,
        "blocks": (statement.shared_blks_hit + statement.shared_blks_read) / calls,
        "temp": statement.temp_blks_written / calls,
        "ms": statement.mean_exec_time_ms,
    }


def compare(plan: dict, statement) -> WorkloadMatch:
    """The match of one analyzed plan (EXPLAIN ANALYZE, BUFFERS JSON) with the statement's
    pg_stat_statements row."""
    workload = per_call(statement)
    figures = plan_figures(plan)
    if workload is None or "Execution Time" not in plan:
        return WorkloadMatch(
            verdict="unknown",
            plan_rows=figures["rows"],
            plan_blocks=figures["blocks"],
            plan_temp_blocks=figures["temp"],
            plan_ms=figures["ms"],
            reasons=[
                "no calls in pg_stat_statements to compare with"
                if workload is None
                else "the plan was not executed (no EXPLAIN ANALYZE)"
            ],
        )
    match = WorkloadMatch(
        verdict="representative",
        rows_ratio=_ratio(figures["rows"], workload["rows"]),
        blocks_ratio=_ratio(figures["blocks"], workload["blocks"]) if workload["blocks"] or figures["blocks"] else None,
        temp_ratio=_ratio(figures["temp"], workload["temp"]) if workload["temp"] or figures["temp"] else None,
        time_ratio=round(figures["ms"] / workload["ms"], 4) if figures["ms"] is not None and workload["ms"] else None,
        plan_rows=figures["rows"],
        workload_rows=round(workload["rows"], 2),
        plan_blocks=figures["blocks"],
        workload_blocks=round(workload["blocks"], 2),
        plan_temp_blocks=figures["temp"],
        workload_temp_blocks=round(workload["temp"], 2),
        plan_ms=figures["ms"],
        workload_ms=workload["ms"],
        workload_min_ms=statement.min_exec_time_ms or None,
        workload_max_ms=statement.max_exec_time_ms or None,
        plan_spills=figures["temp"] > 0,
        workload_spills=workload["temp"] > 0,
    )
    match.spill_agreement = match.plan_spills == match.workload_spills
    if not _within(match.rows_ratio):
        match.reasons.append(f"returns {figures['rows']:,.0f} rows, the workload {workload['rows']:,.0f} per call")
    if not _within(match.blocks_ratio):
        match.reasons.append(
            f"reads {figures['blocks']:,.0f} shared blocks, the workload {workload['blocks']:,.0f} per call"
        )
    if not match.spill_agreement:
        match.reasons.append(
            f"writes {figures['temp']:,.0f} temp blocks, the workload "
            f"{workload['temp']:,.1f} per call" + (" (a spill it does not reproduce)" if match.workload_spills else "")
        )
    match.verdict = "unlike" if match.reasons else "representative"
    match.distance = distance(match)
    return match


def distance(match: WorkloadMatch) -> float:
    """How far a plan is from the workload: 0 is the workload itself."""
    if match.verdict == "unknown":
        return math.inf
    out = abs(math.log(match.rows_ratio or 1.0))
    out += BLOCKS_WEIGHT * abs(math.log(match.blocks_ratio or 1.0))
    if not match.spill_agreement:
        out += SPILL_MISMATCH
    elif match.temp_ratio is not None:
        out += BLOCKS_WEIGHT * abs(math.log(match.temp_ratio))
    return round(out, 4)


def weigh(sets: list[ParameterSet]) -> None:
    """The sets within FACTOR of the workload share its calls equally; the others weigh 0
    (the closest still weighs 1 when none is within: it is the best stand-in there is)."""
    good = [s for s in sets if s.match is not None and s.match.verdict == "representative"]
    if not good:
        good = [s for s in sets if s.chosen]
    for s in sets:
        s.weight = round(1.0 / len(good), 4) if s in good else 0.0


def temp_kb_per_call(statement, block_size: int = 8192) -> float:
    """The workload's own spill: temp blocks written per call, in kB."""
    if not statement.calls:
        return 0.0
    return statement.temp_blks_written / statement.calls * block_size / 1024
