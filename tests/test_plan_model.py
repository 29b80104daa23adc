"""The plan model: time accounting, q-error, conditions; on hand-made plans and on every
plan of the pev2 corpus (text plans through queryaudit.plans.text)."""

from __future__ import annotations

import pytest

from queryaudit.plans import model as plan_model


def node(node_type, total=None, loops=1, rows=None, plan_rows=1, children=(), **extra):
    raw = {"Node Type": node_type, "Plan Rows": plan_rows, **extra}
    if total is not None:
        raw.update({"Actual Total Time": total, "Actual Loops": loops, "Actual Rows": rows if rows is not None else 1})
    if children:
        raw["Plans"] = list(children)
    return raw


def test_loops_multiply_and_exclusive_subtracts_children():
    plan = plan_model.build(
        {
            "Plan": node(
                "Nested Loop",
                10.0,
                children=[
                    node("Seq Scan", 2.0, rows=100, **{"Relation Name": "a", "Parent Relationship": "Outer"}),
                    node(
                        "Index Scan",
                        0.05,
                        loops=100,
                        **{"Relation Name": "b", "Index Name": "b_pkey", "Parent Relationship": "Inner"},
                    ),
                ],
            ),
            "Execution Time": 10.2,
        }
    )
    root, outer, inner = plan.nodes
    assert inner.inclusive_ms == pytest.approx(5.0)
    assert root.exclusive_ms == pytest.approx(3.0)
    assert plan.most_costly() is inner
    assert inner.label == "Index Scan using b_pkey on b"
    assert inner.path == "0.1" and inner.path_labels == "Nested Loop > Index Scan using b_pkey on b"
    assert plan.share(inner) == pytest.approx(5.0 / 10.2)


def test_parallel_workers_share_the_time_below_a_gather():
    plan = plan_model.build(
        {
            "Plan": node(
                "Gather",
                100.0,
                **{"Workers Planned": 2, "Workers Launched": 2},
                children=[
                    node(
                        "Seq Scan",
                        90.0,
                        loops=3,
                        rows=1000,
                        plan_rows=1000,
                        **{"Parallel Aware": True, "Relation Name": "t"},
                    )
                ],
            )
        }
    )
    gather, scan = plan.nodes
    assert scan.parallel_processes == 3 and scan.inclusive_ms == pytest.approx(90.0)
    assert gather.exclusive_ms == pytest.approx(10.0)
    assert scan.label == "Parallel Seq Scan on t"


def test_cte_time_is_taken_off_the_cte_scan_not_the_holder():
    plan = plan_model.build(
        {
            "Plan": node(
                "Hash Join",
                30.0,
                children=[
                    node(
                        "Seq Scan",
                        10.0,
                        **{"Parent Relationship": "InitPlan", "Subplan Name": "CTE x", "Relation Name": "t"},
                    ),
                    node("CTE Scan", 12.0, **{"CTE Name": "x", "Parent Relationship": "Outer"}),
                    node("Hash", 5.0, **{"Parent Relationship": "Inner"}),
                ],
            )
        }
    )
    join, cte_plan, cte_scan, hash_ = plan.nodes
    assert cte_scan.exclusive_ms == pytest.approx(2.0)
    assert join.exclusive_ms == pytest.approx(13.0)
    assert sum(n.exclusive_ms for n in plan.nodes) == pytest.approx(join.inclusive_ms)


def test_q_error_never_executed_and_fractional_rows():
    plan = plan_model.build(
        {
            "Plan": node(
                "Append",
                1.0,
                rows=2.5,
                plan_rows=100,
                children=[
                    node("Seq Scan", 0.0, loops=0, rows=0, plan_rows=50, **{"Relation Name": "p1"}),
                    node("Seq Scan", 0.5, loops=4, rows=0.25, plan_rows=1, **{"Relation Name": "p2"}),
                ],
            )
        }
    )
    append, never, fractional = plan.nodes
    assert append.q_error == pytest.approx(40.0) and not append.underestimated
    assert never.never_executed and never.q_error is None and never.inclusive_ms == 0
    assert fractional.q_error == 1.0 and fractional.total_actual_rows == pytest.approx(1.0)


def test_rows_removed_by_filter_counts_every_loop():
    scan = plan_model.build(
        {
            "Plan": node(
                "Index Scan", 1.0, loops=10, rows=2, **{"Rows Removed by Filter": 30, "Filter": "(status = 'x'::text)"}
            )
        }
    ).root
    assert scan.rows_removed_by_filter == 300
    assert scan.condition_columns() == [(None, "status")]


def test_condition_columns():
    cols = plan_model.condition_columns
    assert cols("((c.city = 'a'::text) AND (zip = 'b'::text))") == [("c", "city"), (None, "zip")]
    assert cols("(lower(email) = 'x'::text)") == [(None, "email")]
    assert cols("(id = ANY ('{1,2}'::integer[]))") == [(None, "id")]
    # Text plans hold what does not parse as SQL: identifiers are still found.
    assert cols("((a.id = $0) OR (hashed SubPlan 1))") == [("a", "id")]


def test_plan_without_analyze_has_no_times():
    plan = plan_model.build([{"Plan": node("Seq Scan", **{"Relation Name": "t", "Total Cost": 10.0})}])
    assert not plan.analyzed and plan.root.inclusive_ms is None and plan.root.q_error is None
    assert plan.most_costly() is plan.root


def test_every_corpus_plan_builds_with_consistent_times(shared_dir):
    plan_text = pytest.importorskip("queryaudit.plans.text", reason="queryaudit/plans/text.py not written yet")
    files = sorted(p for p in (shared_dir / "corpora" / "plans").iterdir() if p.name != "index.json")
    assert len(files) == 59
    for path in files:
        plan = plan_model.build(plan_text.load_plan(path.read_text()))
        assert plan.nodes, path.name
        for n in plan.nodes:
            assert n.exclusive_ms is None or n.exclusive_ms >= 0, (path.name, n.path)
            assert n.q_error is None or n.q_error >= 1
        if plan.analyzed and plan.root.inclusive_ms:
            total = sum(n.exclusive_ms for n in plan.nodes)
            expected = plan.root.inclusive_ms + plan.outside_root_ms
            # Printed times are rounded and parallel times are per-process averages
            # that need not add up exactly: within 10 %.
            assert total == pytest.approx(expected, rel=0.10, abs=0.05), path.name
