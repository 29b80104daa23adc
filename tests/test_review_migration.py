"""queryaudit review-migration end to end: locations, suppression, outputs (SARIF validated
against the official 2.1.0 schema), exit codes, and the measured run on a scratch database."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

import jsonschema
import pytest

from conftest import run_cli
from queryaudit.migrations import Settings
from queryaudit.migrations.review import lint_sql
from queryaudit.migrations.source import LineIndex, parse_migration, read_sources

DATA = Path(__file__).parent / "data"


def test_locations_with_multibyte_crlf_and_cr():
    sql = "SELECT 'é👨‍👩‍👧';\r\n-- comment\r\nDROP INDEX i;\rSELECT 1; /* x */ CREATE INDEX j ON t (c);"
    mig = parse_migration("m.sql", sql)
    assert [(s.line, s.column) for s in mig.statements] == [(1, 1), (3, 1), (4, 1), (4, 19)]
    found = {f.rule: (f.line, f.column) for f in lint_sql(sql)}
    assert found["require-concurrent-index-deletion"] == (3, 1)
    assert found["require-concurrent-index-creation"] == (4, 19)
    assert LineIndex("a\r\nb\rc\nd").starts == [0, 3, 5, 7]


def test_column_of_a_node_after_multibyte_text():
    sql = "ALTER TABLE tèst ADD COLUMN c int DEFAULT random();"
    f = next(f for f in lint_sql(sql) if f.rule == "adding-field-with-default")
    assert (f.line, f.column) == (1, sql.index("random") + 1)


def test_inline_suppression_needs_the_rule_and_keeps_the_reason():
    sql = (
        "SET lock_timeout = '1s'; SET statement_timeout = '1min';\n"
        "-- queryaudit: ignore ban-drop-column column unused since release 42\n"
        "ALTER TABLE t DROP COLUMN c;\n"
        "-- queryaudit: ignore renaming-table wrong rule\n"
        "ALTER TABLE t DROP COLUMN d;\n"
    )
    from queryaudit.migrations.review import lint, select_rules

    # the tool's transaction (as most runners do): prefer-robust-stmts stays quiet
    found, suppressed = lint(parse_migration("m.sql", sql, True), Settings(assume_in_transaction=True), select_rules())
    assert [(f.rule, f.line) for f in found] == [("ban-drop-column", 5)]
    assert suppressed[0].suppressed == "column unused since release 42"


def test_directory_is_read_in_natural_order(tmp_path):
    for name in ("10_c.sql", "2_b.sql", "1_a.sql"):
        (tmp_path / name).write_text("SELECT 1;")
    assert [Path(p).name for p, _ in read_sources([str(tmp_path)])] == ["1_a.sql", "2_b.sql", "10_c.sql"]


def test_static_rewrite_judgement_int_to_bigint_vs_varchar_growth():
    sql = (
        "CREATE TABLE t (id int, note varchar(10));\nALTER TABLE t ALTER COLUMN id TYPE bigint;\n"
        "ALTER TABLE t ALTER COLUMN note TYPE varchar(20);\nALTER TABLE t ALTER COLUMN note TYPE text;\n"
    )
    found = [f for f in lint_sql(sql, only=["changing-column-type"])]
    assert [(f.line, f.rewrite, f.severity) for f in found] == [(2, True, "high"), (3, False, "low"), (4, False, "low")]


def test_version_aware_rules():
    add_default = "ALTER TABLE t ADD COLUMN n int DEFAULT 10;"
    assert lint_sql(add_default, Settings((10, 0)), only=["adding-field-with-default"])
    assert not lint_sql(add_default, Settings((15, 0)), only=["adding-field-with-default"])
    vacuum = "VACUUM FULL t;"
    assert [f.rule for f in lint_sql(vacuum, Settings((15, 0)), only=["ban-vacuum-full", "prefer-repack"])] == [
        "ban-vacuum-full"
    ]
    assert [f.rule for f in lint_sql(vacuum, Settings((19, 0)), only=["ban-vacuum-full", "prefer-repack"])] == [
        "prefer-repack"
    ]


def _write(tmp_path, sql: str) -> Path:
    path = tmp_path / "0001_migration.sql"
    path.write_text(sql)
    return path


def test_outputs_sarif_junit_markdown_json_and_exit_code(tmp_path):
    path = _write(
        tmp_path,
        "SET lock_timeout = '1s';\nSET statement_timeout = '1min';\n"
        "CREATE INDEX orders_customer_idx ON orders (customer_id);\n"
        "-- queryaudit: ignore ban-drop-column unused\nALTER TABLE t DROP COLUMN c;\n",
    )
    out = {k: tmp_path / f"out.{k}" for k in ("sarif", "junit", "markdown", "json")}
    proc = run_cli(
        "review-migration",
        str(path),
        *[a for k, p in out.items() for a in (f"--{k}", str(p))],
        env={"GITHUB_ACTIONS": "true"},
    )
    assert proc.returncode == 1, proc.stderr
    assert "::error file=" in proc.stdout and ",line=3,col=1," in proc.stdout

    sarif = json.loads(out["sarif"].read_text())
    schema = json.loads((DATA / "sarif-schema-2.1.0.json").read_text())
    jsonschema.Draft4Validator(schema).validate(sarif)
    run = sarif["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] == "queryaudit" and driver["version"] and driver["informationUri"]
    rule_ids = {r["id"] for r in driver["rules"]}
    for r in driver["rules"]:
        assert r["shortDescription"]["text"] and r["fullDescription"]["text"]
        assert r["help"]["text"] and r["help"]["markdown"] and r["properties"]["tags"]
    results = {r["ruleId"]: r for r in run["results"]}
    created = results["require-concurrent-index-creation"]
    assert created["ruleId"] in rule_ids and created["level"] == "error"
    loc = created["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"].endswith("0001_migration.sql")
    assert loc["region"]["startLine"] == 3 and loc["region"]["startColumn"] == 1
    assert created["partialFingerprints"]
    assert results["ban-drop-column"]["suppressions"][0]["justification"] == "unused"

    junit = ET.parse(out["junit"]).getroot()
    assert junit.tag == "testsuites" and int(junit.get("failures")) == 1
    md = out["markdown"].read_text()
    assert "require-concurrent-index-creation" in md and "CREATE INDEX CONCURRENTLY IF NOT EXISTS" in md
    report = json.loads(out["json"].read_text())
    assert report["summary"]["failed"] is True and report["suppressed"][0]["rule"] == "ban-drop-column"

    passing = run_cli("review-migration", str(path), "--fail-on", "critical")
    assert passing.returncode == 0, passing.stderr


def test_unparseable_sql_is_one_line_with_its_location(tmp_path):
    path = _write(tmp_path, "SELECT 1;\nALTER TABLE t ADD COLUMN;\n")
    proc = run_cli("review-migration", str(path))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert f"{path}:2:25: syntax error" in proc.stderr


def test_stdin_and_unknown_rule():
    proc = run_cli("review-migration", "-", input="DROP TABLE t;\n")
    assert proc.returncode == 1 and "<stdin>:1:1" in proc.stdout and "ban-drop-table" in proc.stdout
    bad = run_cli("review-migration", "-", "--rule", "no-such-rule", input="SELECT 1;")
    assert bad.returncode == 2 and "unknown rule" in bad.stderr


SCHEMA = """
CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL, note varchar(10), total numeric);
INSERT INTO orders SELECT g, g % 2000, 'n', g FROM generate_series(1, 20000) g;
CREATE INDEX orders_customer_idx ON orders (customer_id);
ANALYZE orders;
"""
MIGRATION = """SET lock_timeout = '2s';
SET statement_timeout = '1min';
DROP INDEX orders_customer_idx;
ALTER TABLE orders ALTER COLUMN id TYPE bigint;
ALTER TABLE orders ALTER COLUMN note TYPE varchar(20);
"""


def _workload(tmp_path) -> Path:
    path = tmp_path / "report.json"
    path.write_text(
        json.dumps(
            {
                "queries": [
                    {
                        "queryid": "101",
                        "query": "SELECT id, total FROM orders WHERE customer_id = $1",
                        "calls": 5000,
                        "total_exec_time_ms": 900.0,
                        "share_of_total_time": 0.6,
                    },
                    {
                        "queryid": "102",
                        "query": "SELECT count(*) FROM orders",
                        "calls": 10,
                        "total_exec_time_ms": 50.0,
                        "share_of_total_time": 0.03,
                    },
                ]
            }
        )
    )
    return path


@pytest.mark.db
def test_dynamic_review_measures_locks_rewrites_and_plan_regression(empty_db, tmp_path):
    empty_db.execute(SCHEMA)
    path, workload, out = _write(tmp_path, MIGRATION), _workload(tmp_path), tmp_path / "review.json"
    holder = None
    for mode in ("copy", "rollback"):
        if mode == "rollback":  # another session on the scratch database: no TEMPLATE copy possible
            holder = empty_db.connect()
        proc = run_cli(
            "review-migration", str(path), "--dsn", empty_db.dsn, "--workload", str(workload), "--json", str(out)
        )
        assert proc.returncode == 1, proc.stderr
        review = json.loads(out.read_text())
        assert review["dynamic"]["mode"] == mode
        statements = {s["line"]: s for s in review["dynamic"]["statements"]}
        drop = statements[3]
        assert any(
            lk["relation"] == "public.orders" and lk["strongest"] == "ACCESS EXCLUSIVE" for lk in drop["locks"]
        ), drop
        assert [r["relation"] for r in statements[4]["rewritten"]] == ["public.orders"]
        assert statements[5]["rewritten"] == []
        findings = review["findings"]
        rewrites = [f["line"] for f in findings if f["rule"] == "table-rewrite"]
        assert rewrites == [4]
        regression = next(f for f in findings if f["rule"] == "plan-regression")
        assert regression["severity"] == "high" and regression["line"] == 3
        assert "orders_customer_idx no longer used" in regression["message"]
        assert "orders_customer_idx" in regression["evidence"]["before_plan"]
        assert "Seq Scan on orders" in regression["evidence"]["after_plan"]
        static = next(f for f in findings if f["rule"] == "require-concurrent-index-deletion")
        assert static["measured"]["strongest_lock"] == "ACCESS EXCLUSIVE"
    holder.close()
    # the scratch database is as it was, and no copy is left behind
    assert empty_db.execute("SELECT to_regclass('orders_customer_idx') IS NOT NULL")[0][0]
    assert (
        empty_db.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'orders'::regclass AND attname = 'id'"
        )[0][0]
        == "integer"
    )
    assert not empty_db.execute("SELECT datname FROM pg_database WHERE datname LIKE 'queryaudit_review_%'")


@pytest.mark.db
def test_dynamic_review_reports_a_failing_migration_and_a_breaking_change(empty_db, tmp_path):
    empty_db.execute(SCHEMA)
    path = _write(tmp_path, "ALTER TABLE orders DROP COLUMN total;\nALTER TABLE orders ADD COLUMN x int NOT NULL;\n")
    proc = run_cli(
        "review-migration",
        str(path),
        "--dsn",
        empty_db.dsn,
        "--workload",
        str(_workload(tmp_path)),
        "--json",
        str(tmp_path / "r.json"),
    )
    assert proc.returncode == 1, proc.stderr
    findings = json.loads((tmp_path / "r.json").read_text())["findings"]
    failing = next(f for f in findings if f["rule"] == "migration-error")
    assert failing["line"] == 2 and "contains null values" in failing["message"]
    proc = run_cli(
        "review-migration",
        "-",
        "--dsn",
        empty_db.dsn,
        "--workload",
        str(_workload(tmp_path)),
        "--json",
        str(tmp_path / "r2.json"),
        input="ALTER TABLE orders DROP COLUMN total;\n",
    )
    findings = json.loads((tmp_path / "r2.json").read_text())["findings"]
    breaks = next(f for f in findings if f["rule"] == "statement-breaks")
    assert breaks["severity"] == "critical" and 'column "total" does not exist' in breaks["message"]
