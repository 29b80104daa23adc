"""Plan coverage in every report: per statement (analyzed / generic / explained / skipped,
with the parameter source and the reason) and the totals ("planned 3/3, 1 with ANALYZE")
in the JSON report, the terminal header, the HTML method section and Markdown."""

from __future__ import annotations

import io

from rich.console import Console

from helpers import validate_report
from queryaudit.report import html, markdown, terminal
from queryaudit.report.model import build_report
from queryaudit.snapshot import PlanCapture, ServerInfo, Snapshot, Statement

PLAN = {
    "Plan": {
        "Node Type": "Seq Scan",
        "Relation Name": "t",
        "Alias": "t",
        "Startup Cost": 0,
        "Total Cost": 10,
        "Plan Rows": 5,
        "Plan Width": 4,
    }
}
ANALYZED = {
    "Plan": {
        **PLAN["Plan"],
        "Actual Rows": 5,
        "Actual Loops": 1,
        "Actual Startup Time": 0.01,
        "Actual Total Time": 0.2,
    },
    "Execution Time": 0.3,
    "Planning Time": 0.1,
}


def _snapshot() -> Snapshot:
    statements = [
        Statement(str(i), q, calls=10, total_exec_time_ms=100.0 - i, mean_exec_time_ms=10.0, rows=10)
        for i, q in enumerate(
            [
                "SELECT a FROM t WHERE b = $1",
                "SELECT a FROM t WHERE c = lower($1)",
                "SELECT slow FROM t",
                "SELECT a FROM gone WHERE id = $1",
                "BEGIN",
            ],
            1,
        )
    ]
    plans = [
        PlanCapture(
            "1",
            "analyze",
            plan=ANALYZED,
            parameters=["7"],
            parameter_source="$1 public.t.b from a sampled row",
            sample_ms=[0.3, 0.9, 0.5],
        ),
        PlanCapture(
            "2",
            "generic",
            plan=PLAN,
            parameter_source="generic plan: no realistic value for $1 ($1 ?: not compared with a column)",
        ),
        PlanCapture(
            "3",
            "explain",
            plan=PLAN,
            skipped_reason="mean time 20000 ms exceeds the per-statement limit of 10000 ms: plain EXPLAIN",
        ),
        PlanCapture(
            "4",
            "skipped",
            skipped_reason="the statement no longer matches the schema (relation "
            '"gone" does not exist): dropped or renamed since it ran',
        ),
        PlanCapture("5", "skipped", skipped_reason="not a plannable statement (utility command)"),
    ]
    return Snapshot(
        server=ServerInfo(180000, "18", "shop"),
        collected_at="2026-11-30T03:00:00+00:00",
        statements=statements,
        plans=plans,
        total_exec_time_ms=500.0,
        total_calls=50,
        statement_count=5,
    )


def test_totals_and_each_statement_in_the_json_report():
    report = build_report(_snapshot(), [])
    validate_report(report)
    coverage = report["plan_coverage"]
    assert coverage["summary"] == "planned 3/4, 1 with ANALYZE, 1 generic, 1 explained, 1 skipped"
    # BEGIN is a utility statement: not listed as workload, counted apart
    assert (coverage["statements"], coverage["plannable"], coverage["utility"]) == (4, 4, 0)
    assert report["left_out"]["statements"] == 1 and report["left_out"]["examples"] == ["BEGIN"]
    by_id = {q["queryid"]: q for q in report["queries"]}
    assert "5" not in by_id
    assert [by_id[i]["plan_coverage"] for i in "1234"] == ["analyzed", "generic", "explained", "skipped"]
    assert by_id["1"]["plan_parameter_source"] == "$1 public.t.b from a sampled row"
    assert by_id["1"]["plan_sample_ms"] == {"samples": 3, "min": 0.3, "median": 0.5, "max": 0.9}
    # No silent skip: every statement without ANALYZE says why.
    for q in report["queries"]:
        if q["plan_coverage"] != "analyzed":
            assert q["plan_skipped_reason"] or "generic plan: no realistic value" in q["plan_parameter_source"]


def test_terminal_header_html_and_markdown_show_the_totals():
    report = build_report(_snapshot(), [])
    out = io.StringIO()
    terminal.render(report, Console(file=out, width=160, color_system=None))
    assert "plans planned 3/4, 1 with ANALYZE" in out.getvalue()
    page = html.render(report)
    method = page[page.index('<section id="method">') :]
    assert "<b>Coverage:</b> planned 3/4, 1 with ANALYZE, 1 generic, 1 explained, 1 skipped." in method
    assert "values: $1 public.t.b from a sampled row" in page and "3 samples: 0.30 ms / 0.50 ms / 0.90 ms" in page
    md = markdown.render(report)
    assert "- plans: planned 3/4, 1 with ANALYZE" in md and "generic plan for `2`" in md
    assert "no plan for `4`: the statement no longer matches the schema" in md
