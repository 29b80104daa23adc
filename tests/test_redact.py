"""--redact replaces literals in every output; passwords never appear anywhere."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import run_cli
from queryaudit.redact import redact, redact_sql, redact_text
from queryaudit.snapshot import ColumnStats, PlanCapture, ServerInfo, Snapshot, Statement

SECRET = "s3cret-value"


def test_redact_sql_replaces_every_literal_kind():
    sql = f"SELECT * FROM t WHERE a = '{SECRET}' AND b = 4242 AND c = 3.25 AND d = $1 AND e = E'x\\'y' AND f = 'Zoë'"
    out = redact_sql(sql)
    for literal in (SECRET, "4242", "3.25", "Zoë", "x\\'y"):
        assert literal not in out
    assert "$1" in out and out.startswith("SELECT * FROM t WHERE a = ?")


def test_redact_keeps_structure_and_metrics():
    report = {
        "queries": [
            {"query": f"SELECT '{SECRET}'", "calls": 12, "plan": {"Plan": {"Filter": f"(x = '{SECRET}'::text)"}}}
        ],
        "findings": [{"title": f"Filter on '{SECRET}' costs 19.3 ms", "evidence": {"parameters": [SECRET, 7]}}],
    }
    out = redact(report)
    assert SECRET not in json.dumps(out)
    assert out["queries"][0]["calls"] == 12
    assert out["findings"][0]["title"] == "Filter on ? costs 19.3 ms"
    assert out["findings"][0]["evidence"]["parameters"] == ["?", "?"]


def test_every_plan_expression_line_is_scanned_for_literals():
    # Numbers are literals too: prose redaction (quoted strings only) would keep 4242.
    plan = {
        "Run Condition": "(row_number() OVER (?) <= 4242)",
        "Order By": "(location <-> '(4242,1)'::point)",
        "Repeatable Seed": "'4242'::double precision",
        "Presorted Key": ["(a + 4242)"],
        "Cache Key": "(t.id + 4242)",
    }
    out = redact({"plan": {"Plan": plan}})["plan"]["Plan"]
    assert "4242" not in json.dumps(out)
    assert out["Cache Key"] == "(t.id + ?)"


@given(st.text())
@settings(max_examples=200, deadline=None)
def test_redaction_never_crashes(text):
    assert isinstance(redact_sql(text), str)
    assert isinstance(redact_text(text), str)


def test_cli_redact_from_snapshot(tmp_path):
    snap = Snapshot(
        server=ServerInfo(version_num=180000, version="PostgreSQL 18", database="shop"),
        collected_at="2026-11-24T00:00:00+00:00",
        statements=[
            Statement(
                queryid="1",
                query=f"SELECT * FROM users WHERE email = '{SECRET}'",
                calls=5,
                total_exec_time_ms=50.0,
                mean_exec_time_ms=10.0,
                rows=5,
            )
        ],
        column_stats=[ColumnStats(table="public.users", column="email", most_common_vals=[SECRET])],
        plans=[
            PlanCapture(
                queryid="1",
                method="analyze",
                plan={"Plan": {"Node Type": "Seq Scan", "Filter": f"(email = '{SECRET}'::text)"}},
                parameters=[SECRET],
            )
        ],
        total_exec_time_ms=50.0,
        total_calls=5,
        statement_count=1,
    )
    path = tmp_path / "snap.json"
    snap.save(path)
    out, saved = tmp_path / "r.json", tmp_path / "redacted-snap.json"
    result = run_cli("audit", "--snapshot", str(path), "--redact", "--json", str(out), "--save-snapshot", str(saved))
    assert result.returncode == 0, result.stderr
    for text in (out.read_text(), saved.read_text(), result.stdout):
        assert SECRET not in text
    report = json.loads(out.read_text())
    assert report["queries"][0]["query"] == "SELECT * FROM users WHERE email = ?"
    # Without --redact the literal is there: the test above is not vacuous.
    plain = tmp_path / "plain.json"
    assert run_cli("audit", "--snapshot", str(path), "--json", str(plain)).returncode == 0
    assert SECRET in plain.read_text()


def test_password_never_in_outputs_or_errors(shop_db, tmp_path):
    shop_db.execute("DO $$ BEGIN CREATE ROLE password_required NOLOGIN; EXCEPTION WHEN duplicate_object THEN END $$")
    role = f"pwaudit_{shop_db.name}"
    password = "Very-Secret-Pw-42"
    shop_db.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}' IN ROLE password_required")
    shop_db.execute(f"GRANT pg_monitor TO {role}")
    out = tmp_path / "r.json"
    snap = tmp_path / "s.json"
    ok = run_cli("audit", "--dsn", shop_db.dsn_as(role, password), "--json", str(out), "--save-snapshot", str(snap))
    assert ok.returncode == 0, ok.stderr
    bad = run_cli("audit", "--dsn", shop_db.dsn_as(role, password + "x"))
    assert bad.returncode == 2
    for text in (out.read_text(), snap.read_text(), ok.stdout, ok.stderr, bad.stdout, bad.stderr):
        assert password not in text
