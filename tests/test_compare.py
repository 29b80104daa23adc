"""`queryaudit compare` on a real before/after: the index the audit asked for is created
between two audits; the comparison shows the statement faster and the finding resolved,
in every format. The first audit's HTML and Markdown are checked on the way (Chromium).
Plus prioritisation (merging) and the demo's fix filter, which are pure."""

import json

import pytest

from conftest import run_cli
from queryaudit.checks import ids
from queryaudit.demo.run import safe_fix_statements
from queryaudit.findings import Finding, merge_overlapping, prioritise, saving_from_share
from test_report_html import check_reports_of_a_real_audit

LOOKUP = "SELECT id, status, total FROM orders WHERE customer_id = $1"


@pytest.mark.browser
def test_reports_of_a_real_audit_then_compare_after_creating_the_index(shop_db, tmp_path):
    shop_db.run_workload("shop")
    before, after = tmp_path / "before.json", tmp_path / "after.json"
    html, md = tmp_path / "before.html", tmp_path / "before.md"
    result = run_cli("audit", "--dsn", shop_db.dsn, "--json", str(before), "--html", str(html), "--markdown", str(md))
    assert result.returncode == 0, result.stderr
    report = json.loads(before.read_text())
    check_reports_of_a_real_audit(shop_db, html, md, report)  # HTML in Chromium, Markdown
    fixes = [
        f
        for f in report["findings"]
        if f.get("table") == "public.orders"
        and f.get("fix_sql")
        and f["check"] in ("missing-index", "fk-without-index")
        and f["columns"][:1] == ["customer_id"]
    ]
    assert fixes, [f["id"] for f in report["findings"]]
    for statement in fixes[0]["fix_sql"].split(";"):
        if statement.strip():
            shop_db.execute(statement)
    shop_db.execute("SELECT pg_stat_statements_reset()")
    shop_db.run_workload("shop")
    result = run_cli("audit", "--dsn", shop_db.dsn, "--json", str(after))
    assert result.returncode == 0, result.stderr

    out = {fmt: tmp_path / f"compare.{fmt}" for fmt in ("json", "html", "md")}
    result = run_cli(
        "compare",
        str(before),
        str(after),
        "--json",
        str(out["json"]),
        "--html",
        str(out["html"]),
        "--markdown",
        str(out["md"]),
    )
    assert result.returncode == 0, result.stderr
    comparison = json.loads(out["json"].read_text())
    lookup = next(s for s in comparison["statements"] if s["query"] == LOOKUP)
    assert lookup["status"] == "improved" and lookup["matched_by"] == "queryid"
    assert lookup["before"]["mean_exec_time_ms"] > 3 * lookup["after"]["mean_exec_time_ms"]
    assert fixes[0]["id"] in {f["id"] for f in comparison["findings"]["resolved"]}
    verdict = next(v for v in comparison["verdicts"] if v["kind"] == "index-created")
    assert verdict["outcome"] == "improved" and "customer_id" in verdict["object"]
    # The index serves the lookup and the city/zip join, whose saved times are close: which one
    # the text names first is not the lookup by rule, but the one with the most time saved.
    assert f"statement '{LOOKUP}' mean" in verdict["text"] and verdict["text"].startswith(
        f"index {verdict['object']} created: statement '"
    )
    by_id = {s["queryid"]: s for s in comparison["statements"]}
    saved = [
        (by_id[q]["before"]["mean_exec_time_ms"] - by_id[q]["after"]["mean_exec_time_ms"]) * by_id[q]["after"]["calls"]
        for q in verdict["statements"]
    ]
    assert saved == sorted(saved, reverse=True), saved
    assert lookup["queryid"] in verdict["statements"]
    # Predicted against realized, for the applied fix and the lookup it served.
    line = next(p for p in comparison["predictions"] if p["queryid"] == lookup["queryid"])
    assert line["finding"] == fixes[0]["id"] and line["predicted_saving_ms"] > 0
    assert line["realized_saving_ms"] == round(
        lookup["before"]["mean_exec_time_ms"] - lookup["after"]["mean_exec_time_ms"], 4
    )
    factor = line["error_factor"]
    assert line["off_by_more_than_2x"] == (factor is None or not 0.5 <= factor <= 2.0)
    assert (
        "Predicted against realized" in out["html"].read_text()
        and "Predicted against realized" in out["md"].read_text()
    )
    for fmt in ("html", "md"):
        assert f"{verdict['object']} created" in out[fmt].read_text().replace("\\_", "_")
    assert verdict["object"] in result.stdout and "faster" in result.stdout


def test_compare_rejects_a_file_that_is_not_a_report(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    result = run_cli("compare", str(bad), str(bad))
    assert result.returncode == 2
    assert "not a queryaudit JSON report" in result.stderr and "Traceback" not in result.stderr


def _index_finding(check, columns, queryid, statement_ms, total_ms=1000.0):
    return Finding(
        check=check,
        severity="medium",
        title=f"{check} on orders ({', '.join(columns)})",
        table="public.orders",
        columns=columns,
        queryids=[queryid] if queryid else [],
        fix_sql=f"CREATE INDEX ON public.orders ({', '.join(columns)});",
        effort="index",
        predicted_saving=saving_from_share(statement_ms, 0.9, total_ms, 10) if statement_ms else None,
    )


def test_one_index_serving_several_findings_is_one_fix():
    a = _index_finding("missing-index", ["customer_id", "status"], "1", 300)
    b = _index_finding("missing-index", ["customer_id"], "2", 100)
    fk = _index_finding("fk-without-index", ["customer_id"], None, 0)
    other = _index_finding("missing-index", ["total"], "3", 500)
    other_prefix = _index_finding("missing-index", ["customer_id", "total"], "4", 10)
    merged = prioritise(merge_overlapping([b, fk, a, other, other_prefix], ids(fix="create-index")))
    assert [f.columns for f in merged] == [["total"], ["customer_id", "status"], ["customer_id", "total"]]
    one = merged[1]
    assert one.queryids == ["1", "2"]
    assert one.saving_share == round(0.27 + 0.09, 6)  # two statements' savings add up
    assert {m["id"] for m in one.evidence["merged"]} == {b.id, fk.id}
    assert "also fk-without-index" in one.title and "serves 2 statements" in one.title
    assert merge_overlapping([a], ids(fix="create-index"))[0] is a  # nothing to merge: the finding as the check made it


def test_the_demo_applies_only_index_and_statistics_fixes():
    def finding(check, sql):
        return {"check": check, "fix_sql": sql, "id": "x"}

    assert safe_fix_statements(finding("missing-index", "CREATE INDEX CONCURRENTLY i ON t (a);")) == [
        "CREATE INDEX CONCURRENTLY i ON t (a)"
    ]
    assert (
        safe_fix_statements(
            finding("row-estimate-error", "CREATE STATISTICS s (dependencies) ON a, b FROM t; ANALYZE t;")
        )
        is not None
    )
    assert safe_fix_statements(finding("invalid-index", "DROP INDEX CONCURRENTLY i; CREATE INDEX i ON t (a);"))
    assert safe_fix_statements(finding("unused-index", "DROP INDEX CONCURRENTLY i;")) is None
    assert safe_fix_statements(finding("disk-sort", "SET LOCAL work_mem = '16MB';")) is None
    assert safe_fix_statements(finding("x", "VACUUM FULL t;")) is None
    assert safe_fix_statements(finding("x", "ANALYZE t; DELETE FROM t;")) is None


def test_combined_saving_counts_each_statement_once():
    from queryaudit.findings import combined_saving_share

    shares = {"1": 0.5, "2": 0.2}
    index = Finding(
        check="missing-index",
        severity="high",
        title="i",
        queryids=["1"],
        predicted_saving=saving_from_share(500, 0.9, 1000, 10),
    )  # removes 90% of statement 1
    rewrite = Finding(
        check="large-offset",
        severity="low",
        title="o",
        queryids=["1"],
        predicted_saving=saving_from_share(500, 0.5, 1000, 10),
    )  # 50% of statement 1
    other = Finding(
        check="disk-sort",
        severity="low",
        title="s",
        queryids=["2"],
        predicted_saving=saving_from_share(200, 0.5, 1000, 10),
    )
    # 1 - (0.1 x 0.5) of statement 1's 50%, plus half of statement 2's 20%; never more than the statements hold.
    assert combined_saving_share([index, rewrite, other], shares) == round(0.5 * 0.95 + 0.1, 6)
    assert combined_saving_share([index, index, index], shares) <= 0.5


def _audit(db, path) -> dict:
    result = run_cli("audit", "--dsn", db.dsn, "--no-explain", "--json", str(path))
    assert result.returncode == 0, result.stderr
    return json.loads(path.read_text())


def test_the_same_workload_twice_is_no_significant_change(shop_db, tmp_path):
    """Two runs of one workload on one database differ only by noise: Welch's test on
    pg_stat_statements' spread calls nothing improved or regressed, and says so with the interval."""
    shop_db.run_workload("shop")  # warm the caches: both measured runs start alike
    _audit(shop_db, tmp_path / "warm-up.json")  # and each measured run follows an audit
    reports = []
    for name in ("first", "second"):
        # The workload updates orders and the test cluster runs no autovacuum: without this,
        # each run starts on the dead rows and unset hint bits the one before left.
        shop_db.execute("VACUUM")
        shop_db.execute("SELECT pg_stat_statements_reset()")
        # Three rounds: a statement's calls then lie seconds apart, as a real window's do. In one
        # round the three report sorts run within a second, and a burst of load over that second
        # moved their mean and fastest call 3.7x together.
        shop_db.run_workload("shop", rounds=3)
        reports.append(tmp_path / f"{name}.json")
        _audit(shop_db, reports[-1])
    out = tmp_path / "compare.json"
    result = run_cli("compare", str(reports[0]), str(reports[1]), "--json", str(out))
    assert result.returncode == 0, result.stderr
    comparison = json.loads(out.read_text())
    moved = [
        (s["status"], s["query"][:60], s["mean_change_text"], s["before"], s["after"])
        for s in comparison["statements"]
        if s["status"] in ("improved", "regressed")
    ]
    assert not moved, moved
    tested = [s for s in comparison["statements"] if (s["significance"] or {}).get("method") == "welch"]
    assert len(tested) >= 5
    assert all(
        s["mean_change_text"].startswith("no significant change") and "interval" in s["mean_change_text"]
        for s in tested
    )


def test_an_index_fix_is_improved_with_its_measured_change(empty_db, tmp_path):
    empty_db.execute("CREATE TABLE items (id int PRIMARY KEY, k int NOT NULL, pad text)")
    empty_db.execute("INSERT INTO items SELECT g, g % 5000, repeat('x', 50) FROM generate_series(1, 50000) g")
    empty_db.execute("ANALYZE items")

    def lookups():
        with empty_db.connect() as conn:
            for i in range(60):
                conn.execute("SELECT id, pad FROM items WHERE k = %s", (i * 7 % 5000,)).fetchall()

    empty_db.execute("SELECT pg_stat_statements_reset()")
    lookups()
    before = tmp_path / "before.json"
    _audit(empty_db, before)
    empty_db.execute("CREATE INDEX items_k_idx ON items (k)")
    empty_db.execute("SELECT pg_stat_statements_reset()")
    lookups()
    after = tmp_path / "after.json"
    _audit(empty_db, after)
    result = run_cli("compare", str(before), str(after), "--json", str(tmp_path / "c.json"))
    assert result.returncode == 0, result.stderr
    comparison = json.loads((tmp_path / "c.json").read_text())
    lookup = next(s for s in comparison["statements"] if s["query"].startswith("SELECT id, pad FROM items WHERE k"))
    assert lookup["status"] == "improved", lookup
    sig = lookup["significance"]
    assert sig["method"] == "welch" and sig["significant"] and sig["material"] and sig["interval_ms"][1] < 0
    verdict = next(v for v in comparison["verdicts"] if v["kind"] == "index-created")
    assert verdict["outcome"] == "improved" and verdict["object"] == "public.items_k_idx"
    assert "faster (p < 0.001; 95 % interval" in verdict["text"] and "60 calls after" in verdict["text"]


def test_welch_matches_the_t_distribution():
    """Reference values of Student's t (as scipy.stats.t gives them)."""
    from queryaudit.significance import t_critical, t_two_sided_p, welch

    assert t_two_sided_p(2.0, 10) == pytest.approx(0.0733880, abs=1e-6)
    assert t_critical(0.05, 10) == pytest.approx(2.228139, abs=1e-5)
    assert t_critical(0.05, 3) == pytest.approx(3.182446, abs=1e-5)
    assert t_critical(0.01, 1000) == pytest.approx(2.580755, abs=1e-5)
    # pg_stat_statements' deviations are population ones: sample variances are n/(n-1) larger.
    test = welch(10.0, 2.0, 20, 12.0, 3.0, 25)
    assert test.difference == 2.0 and test.low < 2.0 < test.high and 0.001 < test.p_value < 0.05
    assert welch(10.0, 2.0, 1, 12.0, 3.0, 25) is None  # one call has no spread


def _report(queries: list[dict]) -> dict:
    return {
        "queries": [
            {
                "queryid": str(i),
                "query": f"SELECT {i}",
                "rows": 1,
                "share_of_total_time": 0.1,
                "total_exec_time_ms": q["mean_exec_time_ms"] * q["calls"],
                **q,
            }
            for i, q in enumerate(queries)
        ]
    }


def test_p95_change_is_shown_where_both_reports_have_log_percentiles():
    from queryaudit.before_after import match_statements

    before = _report(
        [
            {"calls": 200, "mean_exec_time_ms": 10.0, "stddev_exec_time_ms": 2.0, "p95_ms": 14.0},
            {"calls": 200, "mean_exec_time_ms": 5.0, "stddev_exec_time_ms": 1.0},
        ]
    )
    after = _report(
        [
            {"calls": 200, "mean_exec_time_ms": 1.0, "stddev_exec_time_ms": 0.2, "p95_ms": 1.5},
            {"calls": 200, "mean_exec_time_ms": 5.1, "stddev_exec_time_ms": 1.0, "p95_ms": 7.0},
        ]
    )
    rows = {r["queryid"]: r for r in match_statements(before, after)}
    assert rows["0"]["status"] == "improved" and rows["0"]["p95_change_text"] == "p95 14 -> 1.5 ms (9.3x faster)"
    assert rows["1"]["status"] == "unchanged" and rows["1"]["p95_change_text"] is None  # only one side has it
    assert rows["1"]["mean_change_text"].startswith("no significant change (95 % interval")


def test_a_verdict_quotes_first_the_statement_the_fix_served_most():
    """Two statements an index sped up: the one with more time saved over the calls after
    comes first, whatever the order the rows arrive in (by total time before)."""
    from queryaudit.before_after import _statement_verdict

    def row(queryid, query, before_ms, after_ms, calls):
        stats = lambda ms: {"mean_exec_time_ms": ms, "calls": calls, "total_exec_time_ms": ms * calls}  # noqa: E731
        return {
            "queryid": queryid,
            "query": query,
            "before": stats(before_ms),
            "after": stats(after_ms),
            "status": "improved",
            "mean_change_text": "faster",
            "p95_change_text": None,
        }

    join = row("2", "SELECT c.id FROM customers c JOIN orders o ON o.customer_id = c.id", 10.0, 0.03, 20)
    lookup = row("1", LOOKUP, 3.3, 0.01, 60)  # 197.4 ms saved against 199.4 ms: the join first
    for rows in ([join, lookup], [lookup, join]):
        verdict = _statement_verdict("index x created", rows)
        assert verdict["statements"] == ["2", "1"]
        assert verdict["text"].startswith("index x created: statement 'SELECT c.id")
    lookup["before"]["mean_exec_time_ms"] = 4.0  # now 239.4 ms saved: the lookup first
    assert _statement_verdict("index x created", [join, lookup])["statements"] == ["1", "2"]


def _calls(mean_ms: float, blocks: int, rows: int = 20, calls: int = 20) -> dict:
    """One statement's record: `blocks` and `rows` per call."""
    return {
        "calls": calls,
        "mean_exec_time_ms": mean_ms,
        "total_exec_time_ms": mean_ms * calls,
        "stddev_exec_time_ms": mean_ms * 0.05,
        "shared_blks_hit": blocks * calls,
        "shared_blks_read": 0,
        "temp_blks_written": 0,
        "rows": rows * calls,
    }


def test_a_time_change_with_the_same_work_per_call_is_the_machine_not_the_statement():
    """Calls of one statement run close together: a busy spell slows them all at once, and
    neither their spread nor the other statements show it (CI saw 1.9x on an unchanged
    workload). With the same blocks and rows per call only a TIME_ONLY_FACTOR change counts;
    the same time change with more work per call is a regression."""
    from queryaudit.before_after import TIME_ONLY_FACTOR, judge

    before = _calls(40.0, 5000)
    slower = judge(before, _calls(76.0, 5000))
    assert slower["status"] == "unchanged" and slower["test"]["same_work_per_call"], slower
    assert slower["test"]["significant"]
    assert slower["text"].startswith("no significant change: 1.9x slower in time alone")
    assert judge(before, _calls(76.0, 9000))["status"] == "regressed"  # its calls read more blocks
    assert judge(before, _calls(76.0, 5000, rows=40))["status"] == "regressed"  # and returned more rows
    assert judge(before, _calls(40.0 * (TIME_ONLY_FACTOR + 0.5), 5000))["status"] == "regressed"
    assert judge(before, _calls(10.0, 5000))["status"] == "improved"  # 4x faster: beyond the machine
    # CI saw 5.5x on an unchanged workload: a burst slowed most calls, not the fastest one.
    burst = judge({**before, "min_exec_time_ms": 38.0}, {**_calls(220.0, 5000), "min_exec_time_ms": 41.0})
    assert burst["status"] == "unchanged", burst
    assert "5.5x slower in time alone, its fastest call 1.1x slower" in burst["text"]
    # Every call 5.5x slower with the same work (JIT switched on, a slower function): a regression.
    every = judge({**before, "min_exec_time_ms": 38.0}, {**_calls(220.0, 5000), "min_exec_time_ms": 200.0})
    assert every["status"] == "regressed", every
    # A report without the counters (written before they were kept): time alone decides, as before.
    bare = {k: v for k, v in before.items() if not k.startswith(("shared", "temp"))}
    assert judge(bare, {**bare, "mean_exec_time_ms": 76.0})["status"] == "regressed"


def test_a_budget_holds_a_time_change_the_machine_explains():
    """A CI budget gate reads compare's verdict: 1.9x in time alone, with the same work per
    call, is a note within the noise, not a broken budget; with more blocks per call it breaks."""
    from queryaudit.before_after import match_statements
    from queryaudit.history.budgets import Config, evaluate

    def report(record: dict) -> dict:
        return {"queries": [{"queryid": "7", "query": "SELECT v FROM t WHERE k = $1", **record}]}

    config = Config(thresholds={"mean-time-regression-pct": 50})
    before = report(_calls(40.0, 5000))
    machine = evaluate(config, {"before": {}, "statements": match_statements(before, report(_calls(76.0, 5000)))})
    assert machine.ok and any("within the noise" in n for n in machine.notes), (machine.violations, machine.notes)
    reads_more = evaluate(config, {"before": {}, "statements": match_statements(before, report(_calls(76.0, 9000)))})
    assert [v.budget for v in reads_more.violations] == ["mean-time-regression-pct"]
