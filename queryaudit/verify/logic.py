"""Pure arithmetic of fix verification: reading spills and memory from a plan, stepping
work_mem up, bounding it, and the verdict on before/after timings."""

from __future__ import annotations

import math
from statistics import median

from queryaudit.checks.disk_sort import disk_kilobytes
from queryaudit.checks.hash_spill import spill as hash_spill
from queryaudit.findings import Outcome

MAX_WORK_MEM_KB = 1024 * 1024  # never propose more than 1GB for one sort or hash
MIN_CAP_KB = 64 * 1024  # a quarter of a small shared_buffers is too tight a bound to be useful
STEP = 1.5  # work_mem grows by half while the statement still spills
MAX_STEPS = 8
HEADROOM = 1.1  # over the in-memory size the server reported: memory accounting is not exact
# A fix is "faster" when the median time drops by at least this much and every run with
# it beats every run without it (runs are interleaved, so drift hits both sides alike).
MATERIAL = 0.10

UNITS_KB = {"B": 1 / 1024, "kB": 1, "8kB": 8, "MB": 1024, "GB": 1024 * 1024, "TB": 1024**3}


def to_kb(value: str | float, unit: str | None) -> float:
    """A pg_settings memory value (setting, unit) in kB."""
    return float(value) * UNITS_KB.get(unit or "kB", 1)


def work_mem_cap_kb(shared_buffers_kb: float) -> float:
    """The largest work_mem we propose: a quarter of shared_buffers (each sort and hash of
    every session may take that much), at least 64MB, at most 1GB."""
    return min(MAX_WORK_MEM_KB, max(MIN_CAP_KB, shared_buffers_kb / 4))


def round_up_mb(kb: float) -> int:
    """kB to whole MB, rounded up (work_mem values people read and type)."""
    return max(1, math.ceil(kb / 1024))


def format_mb(mb: int) -> str:
    return f"{mb // 1024}GB" if mb >= 1024 and mb % 1024 == 0 else f"{mb}MB"


def nodes(plan_node: dict):
    yield plan_node
    for child in plan_node.get("Plans") or ():
        yield from nodes(child)


def spills(explain: dict, hash_mem_multiplier: float = 1.0) -> tuple[float, float]:
    """(kB written to disk by sorts and hashes, kB of work_mem the largest in-memory sort or
    hash needed) in one EXPLAIN ANALYZE. A hash may use work_mem x hash_mem_multiplier, so
    its memory counts divided by the multiplier."""
    disk = need = 0.0
    for raw in nodes(explain["Plan"]):
        kind = raw.get("Node Type")
        if kind in ("Sort", "Incremental Sort"):
            disk += disk_kilobytes(raw)
            for part in [raw, *(raw.get("Workers") or [])]:
                if part.get("Sort Space Type") == "Memory":
                    need = max(need, float(part.get("Sort Space Used") or 0))
        spilled = hash_spill(raw)
        if spilled:
            disk += max(spilled[1] - float(raw.get("Peak Memory Usage") or 0), 1.0)
        elif kind == "Hash" or (kind == "Aggregate" and raw.get("Strategy") in ("Hashed", "Mixed")):
            need = max(need, float(raw.get("Peak Memory Usage") or 0) / max(hash_mem_multiplier, 1e-9))
    return disk, need


def first_work_mem_kb(reported_need_kb: float, current_kb: float, cap_kb: float) -> float:
    """Where stepping starts: the need the spill reports (an in-memory sort needs at least
    its disk size), and always above the current value."""
    return min(cap_kb, round_up_mb(max(reported_need_kb, current_kb * 1.25)) * 1024)


def next_work_mem_kb(value_kb: float, cap_kb: float) -> float | None:
    """The next value to try after `value_kb` still spilled; None when the bound is reached."""
    if value_kb >= cap_kb:
        return None
    return min(cap_kb, round_up_mb(value_kb * STEP) * 1024)


def proposed_work_mem_kb(in_memory_kb: float, fitted_kb: float) -> float:
    """The smallest round value that holds what the server reported once the work fitted."""
    return min(fitted_kb, round_up_mb(in_memory_kb * HEADROOM) * 1024)


def hash_mem_multiplier_for(hash_kb: float, work_mem_kb: float) -> float | None:
    """The hash_mem_multiplier (13+, hashes may use work_mem x it) that holds `hash_kb` at the
    current work_mem, in steps of 0.5; None when it would exceed PostgreSQL's limit of 1000."""
    if work_mem_kb <= 0:
        return None
    multiplier = math.ceil(hash_kb * HEADROOM / work_mem_kb * 2) / 2
    return max(1.0, multiplier) if multiplier <= 1000 else None


def verdict(before_ms: list[float], after_ms: list[float]) -> tuple[str, float | None]:
    """(faster | not-faster | inconclusive, reduction of the median time)."""
    if not before_ms or not after_ms:
        return Outcome.INCONCLUSIVE, None
    b, a = median(before_ms), median(after_ms)
    reduction = round(1 - a / b, 4) if b > 0 else None
    if len(before_ms) < 2 or len(after_ms) < 2 or reduction is None:
        return Outcome.INCONCLUSIVE, reduction
    if reduction >= MATERIAL and max(after_ms) < min(before_ms):
        return Outcome.FASTER, reduction
    return Outcome.NOT_FASTER, reduction


def buffers(explain: dict) -> dict[str, float]:
    """The statement's buffer counts (the top node's include everything below it)."""
    top = explain["Plan"]
    names = {
        "Shared Hit Blocks": "shared_hit",
        "Shared Read Blocks": "shared_read",
        "Temp Read Blocks": "temp_read",
        "Temp Written Blocks": "temp_written",
    }
    return {short: float(top.get(long) or 0) for long, short in names.items()}


def execution_ms(explain: dict, with_planning: bool = False) -> float:
    ms = float(explain.get("Execution Time") or 0.0)
    return ms + float(explain.get("Planning Time") or 0.0) if with_planning else ms
