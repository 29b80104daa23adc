"""Candidate value sets for a statement whose first sample is unlike the workload.

The first values (a sampled row, the histogram's middle) say nothing about what the
workload runs. The candidates here are what the statistics know of the values it could
run: every most common value with its frequency (a rare one too: `status = 'failed'`
at 0.25 % of 400,000 rows is the 1,000 rows per call pg_stat_statements shows),
histogram quantiles for ranges (`at >= $1` at the 2nd percentile keeps 98 % of the
table), the constants pg_qualstats saw the statement run, windows of several widths for
a pair of bounds on one column, and the values of other sampled rows. Each set differs
from the first in one placeholder (or one pair of bounds): the plan capture
(queryaudit.plans.stage) ranks them by the planner's row estimate against the
workload's rows per call, EXPLAIN ANALYZEs the closest within the budget, and keeps the
set whose plan comes closest (queryaudit.plans.workload).

Pure: reads the binding and the snapshot's pg_stats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from queryaudit.plans.params import Binding, ParameterSlot
from queryaudit.snapshot import ColumnStats, Snapshot

EQUALITY = {"=", "in", "like"}
RANGES = {"<", "<=", ">", ">=", "between-low", "between-high"}
QUANTILES = (0.0, 0.02, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.98, 1.0)
WIDTHS = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
MAX_SETS = 80  # plain EXPLAINs (planning only) spent ranking the candidates


@dataclass
class CandidateSet:
    values: list[str | None]
    sources: list[str]
    changed: list[int] = field(default_factory=list)  # placeholder numbers that differ from the first set


def _quantile(bounds: list[str], position: float) -> str:
    return bounds[min(len(bounds) - 1, max(0, round(position * (len(bounds) - 1))))]


def _bounds(stats: ColumnStats) -> list[str]:
    return [b for b in (stats.histogram_bounds or []) if b is not None]


def _equality_candidates(stats: ColumnStats, reltuples: float) -> list[tuple[str, str]]:
    out = []
    for value, freq in zip(stats.most_common_vals or [], stats.most_common_freqs or [], strict=False):
        if value is not None:
            out.append((value, f"most_common_vals (frequency {freq:.4g}: ~{freq * reltuples:,.0f} rows)"))
    bounds = _bounds(stats)
    for position in (0.0, 0.5, 1.0):
        if bounds:
            out.append((_quantile(bounds, position), f"a value outside the common ones (histogram {position:.0%})"))
    return out


def _range_candidates(stats: ColumnStats, operator: str) -> list[tuple[str, str]]:
    bounds = _bounds(stats)
    out = []
    for position in QUANTILES:
        if bounds:
            kept = position if operator in ("<", "<=") else 1 - position
            out.append(
                (_quantile(bounds, position), f"histogram quantile {position:.0%} (keeps ~{kept:.0%} of the rows)")
            )
    return out


def candidate_sets(
    binding: Binding,
    snapshot: Snapshot,
    bind=None,
    sampled: list[list[str | None]] = (),
    observed: dict[tuple[str, str], list[tuple[str, str]]] | None = None,
) -> list[CandidateSet]:
    """The sets to try, the first set's values changed one placeholder (or one pair of
    bounds) at a time; `bind(number, value)` shapes a value as the text binds it
    (an interval's unit), `sampled` are the value lists of other sampled rows, `observed`
    the (value, source) pairs the workload was seen to run per (table, column): pg_qualstats."""
    first = [s.value for s in binding.slots]
    first_sources = [s.source or "" for s in binding.slots]
    sets: list[CandidateSet] = []
    seen = {tuple(first)}

    def add(changes: dict[int, tuple[str, str]]) -> None:
        values, sources = list(first), list(first_sources)
        for number, (value, source) in changes.items():
            values[number - 1] = bind(number, value) if bind else value
            sources[number - 1] = source
        if tuple(values) not in seen:
            seen.add(tuple(values))
            sets.append(CandidateSet(values, sources, sorted(changes)))

    for row in sampled:
        if len(row) == len(first):
            add({n: (v, "another sampled row") for n, v in enumerate(row, 1) if v is not None and v != first[n - 1]})
    pairs = _range_pairs(binding.slots)
    paired = {n for pair in pairs for n in pair}
    for low, high in pairs:
        stats = snapshot.stats_for(binding.slots[low - 1].table, binding.slots[low - 1].column)
        bounds = _bounds(stats) if stats else []
        if not bounds:
            continue
        for width in WIDTHS:
            for start in (0.0, max(0.0, 0.5 - width / 2), max(0.0, 1.0 - width)):
                add(
                    {
                        low: (
                            _quantile(bounds, start),
                            f"histogram window {start:.0%}-{start + width:.0%} (low bound)",
                        ),
                        high: (
                            _quantile(bounds, start + width),
                            f"histogram window {start:.0%}-{start + width:.0%} (high bound)",
                        ),
                    }
                )
    for slot in binding.slots:
        if slot.number in paired or slot.select_list_only or not (slot.table and slot.column):
            continue
        stats = snapshot.stats_for(slot.table, slot.column)
        if stats is None:
            stats = ColumnStats(slot.table, slot.column)  # no statistics: what the workload was seen to run
        table = snapshot.table(slot.table)
        reltuples = max(table.reltuples, 0.0) if table else 0.0
        seen_run = list((observed or {}).get((slot.table, slot.column), []))
        if slot.operator in EQUALITY:
            found = seen_run + _equality_candidates(stats, reltuples)
        elif slot.operator in RANGES:
            found = seen_run + _range_candidates(stats, slot.operator)
        else:
            continue
        for value, source in found:
            add({slot.number: (value, source)})
    return sets[:MAX_SETS]


def _range_pairs(slots: list[ParameterSlot]) -> list[tuple[int, int]]:
    """(low, high) placeholder numbers bounding the same column."""
    lows = {(s.table, s.column): s.number for s in slots if s.column and s.operator in (">", ">=", "between-low")}
    highs = {(s.table, s.column): s.number for s in slots if s.column and s.operator in ("<", "<=", "between-high")}
    return [(lows[k], highs[k]) for k in lows if k in highs]


def estimate_distance(estimated_rows: float, workload_rows: float) -> float:
    """How far the planner's row estimate of a set is from the workload's rows per call."""
    return abs(math.log((estimated_rows + 1.0) / (workload_rows + 1.0)))
