"""The per-statement entry saying how closely its plan reproduced the workload
(queryaudit.plans.workload), as every format shows it."""

from __future__ import annotations

import dataclasses


def _match(match) -> dict:
    data = dataclasses.asdict(match)
    return {
        k: data[k]
        for k in (
            "verdict",
            "rows_ratio",
            "blocks_ratio",
            "temp_ratio",
            "time_ratio",
            "plan_rows",
            "workload_rows",
            "plan_blocks",
            "workload_blocks",
            "plan_temp_blocks",
            "workload_temp_blocks",
            "plan_ms",
            "workload_ms",
            "workload_min_ms",
            "workload_max_ms",
            "plan_spills",
            "workload_spills",
            "spill_agreement",
            "distance",
            "reasons",
        )
    }


def workload_match_entry(capture) -> dict | None:
    """None when the statement has no executed plan to compare."""
    if capture is None or capture.workload_match is None:
        return None
    entry = _match(capture.workload_match)
    entry["parameters"] = list(capture.parameters)
    chosen = next((s for s in capture.parameter_sets if s.chosen), None)
    entry["parameter_sources"] = list(chosen.sources) if chosen else []
    entry["first_sample"] = (
        {
            **_match(capture.first_sample.match),
            "parameters": capture.first_sample.values,
            "parameter_sources": capture.first_sample.sources,
        }
        if capture.first_sample is not None and capture.first_sample.match
        else None
    )
    entry["search"] = capture.search_note
    entry["parameter_sets"] = [
        {
            "values": s.values,
            "weight": s.weight,
            "chosen": s.chosen,
            "verdict": s.match.verdict if s.match else None,
            "rows_ratio": s.match.rows_ratio if s.match else None,
            "distance": s.match.distance if s.match else None,
        }
        for s in capture.parameter_sets
    ]
    return entry


def workload_summary(queries: list[dict]) -> dict:
    """How many analyzed plans reproduce the workload, and how many only after a search."""
    matches = [q["workload_match"] for q in queries if q.get("workload_match")]
    return {
        "compared": len(matches),
        "representative": sum(m["verdict"] == "representative" for m in matches),
        "unlike": sum(m["verdict"] == "unlike" for m in matches),
        "found_by_search": sum(m["first_sample"] is not None and m["verdict"] == "representative" for m in matches),
    }
