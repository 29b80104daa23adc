"""`queryaudit compare` on a real before/after: the index the audit asked for is created
between two audits; the comparison shows the statement faster and the finding resolved,
in every format. The first audit's HTML and Markdown are checked on the way (Chromium).
Plus prioritisation (merging) and the demo's fix filter, which are pure."""
import json

import pytest

from conftest import run_cli
from test_report_html import check_reports_of_a_real_audit
from queryaudit.demo import safe_fix_statements
from queryaudit.checks import ids
from queryaudit.findings import Finding, merge_overlapping, prioritise, saving_from_share

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
    fixes = [f for f in report["findings"] if f.get("table") == "public.orders" and f.get("fix_sql")
             and f["check"] in ("missing-index", "fk-without-index") and f["columns"][:1] == ["customer_id"]]
    assert fixes, [f["id"] for f in report["findings"]]
    for statement in fixes[0]["fix_sql"].split(";"):
        if statement.strip():
            shop_db.execute(statement)
    shop_db.execute("SELECT pg_stat_statements_reset()")
    shop_db.run_workload("shop")
    result = run_cli("audit", "--dsn", shop_db.dsn, "--json", str(after))
    assert result.returncode == 0, result.stderr

    out = {fmt: tmp_path / f"compare.{fmt}" for fmt in ("json", "html", "md")}
    result = run_cli("compare", str(before), str(after), "--json", str(out["json"]), "--html", str(out["html"]),
                     "--markdown", str(out["md"]))
    assert result.returncode == 0, result.stderr
    comparison = json.loads(out["json"].read_text())
    lookup = next(s for s in comparison["statements"] if s["query"] == LOOKUP)
    assert lookup["status"] == "improved" and lookup["matched_by"] == "queryid"
    assert lookup["before"]["mean_exec_time_ms"] > 3 * lookup["after"]["mean_exec_time_ms"]
    assert fixes[0]["id"] in {f["id"] for f in comparison["findings"]["resolved"]}
    verdict = next(v for v in comparison["verdicts"] if v["kind"] == "index-created")
    assert verdict["outcome"] == "improved" and "customer_id" in verdict["object"]
    assert f"index {verdict['object']} created: statement '{LOOKUP}' mean" in verdict["text"]
    assert lookup["queryid"] in verdict["statements"]
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
    return Finding(check=check, severity="medium", title=f"{check} on orders ({', '.join(columns)})",
                   table="public.orders", columns=columns, queryids=[queryid] if queryid else [],
                   fix_sql=f"CREATE INDEX ON public.orders ({', '.join(columns)});", effort="index",
                   predicted_saving=saving_from_share(statement_ms, 0.9, total_ms, 10) if statement_ms else None)


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
        "CREATE INDEX CONCURRENTLY i ON t (a)"]
    assert safe_fix_statements(finding("row-estimate-error",
                                       "CREATE STATISTICS s (dependencies) ON a, b FROM t; ANALYZE t;")) is not None
    assert safe_fix_statements(finding("invalid-index", "DROP INDEX CONCURRENTLY i; CREATE INDEX i ON t (a);"))
    assert safe_fix_statements(finding("unused-index", "DROP INDEX CONCURRENTLY i;")) is None
    assert safe_fix_statements(finding("disk-sort", "SET LOCAL work_mem = '16MB';")) is None
    assert safe_fix_statements(finding("x", "VACUUM FULL t;")) is None
    assert safe_fix_statements(finding("x", "ANALYZE t; DELETE FROM t;")) is None


def test_combined_saving_counts_each_statement_once():
    from queryaudit.findings import combined_saving_share

    shares = {"1": 0.5, "2": 0.2}
    index = Finding(check="missing-index", severity="high", title="i", queryids=["1"],
                    predicted_saving=saving_from_share(500, 0.9, 1000, 10))  # removes 90% of statement 1
    rewrite = Finding(check="large-offset", severity="low", title="o", queryids=["1"],
                      predicted_saving=saving_from_share(500, 0.5, 1000, 10))  # 50% of statement 1
    other = Finding(check="disk-sort", severity="low", title="s", queryids=["2"],
                    predicted_saving=saving_from_share(200, 0.5, 1000, 10))
    # 1 - (0.1 x 0.5) of statement 1's 50%, plus half of statement 2's 20%; never more than the statements hold.
    assert combined_saving_share([index, rewrite, other], shares) == round(0.5 * 0.95 + 0.1, 6)
    assert combined_saving_share([index, index, index], shares) <= 0.5
