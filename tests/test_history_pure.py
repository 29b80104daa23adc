"""The history's pure parts without a database: plan fingerprints, causes from evidence,
predicted against realized on the committed demo reports, the track record."""

from __future__ import annotations

import json
from pathlib import Path

from queryaudit.before_after import build_comparison
from queryaudit.history.causes import explain_change
from queryaudit.history.evidence import plan_shape
from queryaudit.history.predictions import track_record

REPORTS = Path(__file__).resolve().parent.parent / "reports"


def plan(node: str, rows: float, cost: float, index: str | None = None) -> dict:
    scan = {
        "Node Type": node,
        "Relation Name": "items",
        "Plan Rows": rows,
        "Total Cost": cost,
        "Filter" if index is None else "Index Cond": "(k = 5)",
    }
    if index:
        scan["Index Name"] = index
    return {
        "Plan": {
            "Node Type": "Aggregate",
            "Strategy": "Plain",
            "Plan Rows": 1,
            "Total Cost": cost + 1,
            "Plans": [dict(scan, **{"Parent Relationship": "Outer"})],
        }
    }


def test_the_fingerprint_keeps_the_shape_not_the_estimates():
    a, b = plan_shape(plan("Seq Scan", 6, 100.0)), plan_shape(plan("Seq Scan", 60000, 9000.0))
    c = plan_shape(plan("Index Scan", 6, 8.0, "items_k_idx"))
    assert a["fingerprint"] == b["fingerprint"] != c["fingerprint"]
    assert c["indexes"] == ["items_k_idx"] and c["relations"] == ["items"]
    assert c["filtered_columns"] == [["items", "k"]]
    assert "Index Scan using items_k_idx on items" in c["text"]


def evidence(shape: dict, reltuples: float, indexes: dict) -> dict:
    return {
        "settings": {"work_mem": "4MB"},
        "role_settings": [],
        "statements": {"1": shape},
        "tables": {
            "public.items": {
                "reltuples": reltuples,
                "relpages": 10,
                "last_analyze": "t0",
                "indexes": indexes,
                "columns": {},
            }
        },
    }


def row(mean_before: float, mean_after: float) -> dict:
    side = {"calls": 100, "rows": 600}
    return {
        "queryid": "1",
        "after_queryid": "1",
        "query": "SELECT ...",
        "tables": ["public.items"],
        "before": dict(side, mean_exec_time_ms=mean_before),
        "after": dict(side, mean_exec_time_ms=mean_after),
    }


def test_an_index_dropped_and_the_plan_it_changed_rank_first():
    index = {"public.items_k_idx": {"valid": True, "bytes": 8192, "definition": "CREATE INDEX ..."}}
    before = evidence(plan_shape(plan("Index Scan", 6, 8.0, "items_k_idx")), 30000, index)
    after = evidence(plan_shape(plan("Seq Scan", 6, 1285.0)), 30000, {})
    out = explain_change(row(0.05, 3.0), before, after)
    assert [c["kind"] for c in out["causes"]] == ["plan-changed", "index-dropped"]
    assert out["causes"][1]["evidence"]["index"] == "public.items_k_idx"
    assert all(c["explained_share"] == 1.0 for c in out["causes"])


def test_growth_with_the_same_plan_is_data_growth_only_and_nothing_is_a_reason():
    shape = plan_shape(plan("Seq Scan", 20000, 400.0))
    out = explain_change(row(2.0, 20.0), evidence(shape, 20000, {}), evidence(shape, 200000, {}))
    assert [c["kind"] for c in out["causes"]] == ["data-growth"] and out["causes"][0]["explained_share"] == 1.0
    same = explain_change(row(2.0, 20.0), evidence(shape, 20000, {}), evidence(shape, 20000, {}))
    assert same["causes"] == [] and "outside what queryaudit stores" in same["reason"]
    old = explain_change(row(2.0, 20.0), None, evidence(shape, 20000, {}))
    assert old["causes"] == [] and "earlier audit stored no evidence" in old["reason"]


def test_the_demo_compare_holds_each_applied_fix_against_its_outcome():
    before = json.loads((REPORTS / "demo.json").read_text())
    after = json.loads((REPORTS / "demo-after.json").read_text())
    # What the demo applied: every fix of the first report (each is listed, measured or not).
    applied = {f["id"] for f in before["findings"] if f.get("fix_sql")}
    lines = build_comparison(before, after, applied=applied)["predictions"]
    assert {line["finding"] for line in lines} == applied
    assert any(line.get("note") for line in lines)  # a fix whose finding predicted no figure
    lines = [line for line in lines if line["fix_kind"] == "missing-index"]
    assert lines
    for line in lines:
        realized = line["mean_before_ms"] - line["mean_after_ms"]
        assert line["realized_saving_ms"] == round(realized, 4)
        factor = line["predicted_saving_ms"] / realized
        assert line["off_by_more_than_2x"] == (not 0.5 <= factor <= 2.0)
    record = track_record(lines)["missing-index"]
    assert record["predictions"] == len(lines) and record["off_by_more_than_2x"] == sum(
        line["off_by_more_than_2x"] for line in lines
    )
