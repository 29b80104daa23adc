"""Names that need quoting, on real PostgreSQL 15 (HypoPG) and 18: a Prisma-style schema
("User", "Post"."authorId"), reserved words as columns ("order", "user"), a mixed-case
schema ("Sales"."Orders") and names with a space. The audit finds the planted problems,
every fix SQL it prints runs as written, and the findings are gone on the next audit."""

import json

import psycopg
import pytest

from conftest import run_cli
from helpers import validate_report
from queryaudit.advisor import candidates as cand
from queryaudit.advisor.costing import Hypothetical, WhatIf
from queryaudit.advisor.model import IndexAdvice
from queryaudit.connect import SessionLimits, session
from queryaudit.demo import fixtures
from queryaudit.snapshot import Snapshot
from test_fixture_problems import matches


@pytest.fixture
def quoted_db(server):
    return server.create_database("quoted")


def audit(db, tmp_path, name: str) -> dict:
    out = tmp_path / f"{name}.json"
    result = run_cli(
        "audit", "--dsn", db.dsn, "--json", str(out), "--save-snapshot", str(tmp_path / f"{name}.snap.json")
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    validate_report(report)
    return report


def statements(fix_sql: str) -> list[str]:
    """The fix as a DBA runs it in psql: statement by statement (CONCURRENTLY refuses a
    multi-statement string), comments left out."""
    return [s for s, _ in fixtures._statements(fix_sql)]


def test_every_fix_on_quoted_names_runs_as_written(quoted_db, tmp_path):
    quoted_db.run_workload("quoted")
    report = audit(quoted_db, tmp_path, "before")
    reported = [x for f in report["findings"] for x in [f, *(f.get("evidence") or {}).get("merged", [])]]
    missing = [p for p in fixtures.problems("quoted") if not any(matches(p, f) for f in reported)]
    assert not missing, f"planted problems not reported: {missing}"

    fixes = [f for f in report["findings"] if f.get("fix_sql")]
    assert {f["check"] for f in fixes} >= {"missing-index", "fk-without-index", "duplicate-index", "row-estimate-error"}
    text = "\n".join(f["fix_sql"] for f in fixes)
    assert 'public."Post" ("authorId")' in text and '"Sales"."Orders"' in text
    assert 'public.purchases ("order")' in text and 'public."Audit Log" ("user id")' in text
    assert 'CREATE STATISTICS IF NOT EXISTS "Sales"."Orders_City_Zip_stats"' in text
    with quoted_db.connect() as conn:
        for f in fixes:
            for statement in statements(f["fix_sql"]):
                try:
                    conn.execute(statement)
                except psycopg.Error as exc:
                    pytest.fail(f"{f['check']} fix does not run as written: {statement!r}: {exc}")
    indexes = {
        r[0]
        for r in quoted_db.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname IN ('public', 'Sales') AND indexdef NOT LIKE '%UNIQUE%'"
        )
    }
    assert any('"authorId"' in d and '"Post"' in d for d in indexes), indexes
    assert any('"order"' in d for d in indexes) and any('"CustomerId"' in d for d in indexes), indexes

    quoted_db.execute("SELECT pg_stat_statements_reset()")
    quoted_db.run_workload("quoted")
    after = audit(quoted_db, tmp_path, "after")
    applied = {f["fix_sql"] for f in fixes}
    assert not [f["fix_sql"] for f in after["findings"] if f.get("fix_sql") in applied]
    assert not {f["id"] for f in fixes} & {f["id"] for f in after["findings"]}
    # The objects fixed are fine now. (Without HypoPG the advisor may still estimate that an
    # INCLUDE variant of a new index helps more: a different index, not the same finding.)
    fixed = {
        (f["check"], f.get("table"), tuple(f.get("columns") or ()), f.get("index"))
        for f in fixes
        if f["check"] != "missing-index"
    }
    again = [
        f
        for f in after["findings"]
        if (f["check"], f.get("table"), tuple(f.get("columns") or ()), f.get("index")) in fixed
    ]
    assert not again, f"fixed findings reported again: {[(f['check'], f['table'], f['fix_sql']) for f in again]}"


def test_a_candidate_or_statement_the_server_rejects_is_recorded(quoted_db, tmp_path):
    """A definition HypoPG refuses and a statement that no longer plans end up, with the
    server's error, in the advice and the report's method section."""
    if not quoted_db.execute("SELECT 1 FROM pg_extension WHERE extname = 'hypopg'"):
        pytest.skip("HypoPG is not installed on this server (PostgreSQL 15 has it in the test setup)")
    quoted_db.execute('CREATE TABLE "Gone" (id int)')
    with quoted_db.connect() as conn:
        conn.execute('SELECT id FROM "Gone" WHERE id = %s', (1,)).fetchall()
    quoted_db.execute('DROP TABLE "Gone"')
    quoted_db.run_workload("quoted")
    report = audit(quoted_db, tmp_path, "rejected")
    snapshot = Snapshot.load(tmp_path / "rejected.snap.json")
    rejected = snapshot.index_advice.rejected
    gone = [r for r in rejected if r.kind == "statement" and '"Gone"' in r.sql]
    assert gone and 'relation "Gone" does not exist' in gone[0].error
    assert any('"Gone"' in r["sql"] for r in report["method"]["rejected"])

    # A definition the server refuses (a column that does not exist) is kept with its error.
    advice = IndexAdvice(method="hypothetical")
    bad = cand.Candidate("public.Post", ("no such column",), equality_prefix=1)
    with session(quoted_db.dsn, SessionLimits()) as conn, Hypothetical(conn) as hypo:
        assert WhatIf(hypo, {}, on_reject=advice.reject).size(bad) == -1
    assert [(r.kind, r.sql) for r in advice.rejected] == [
        ("candidate", 'CREATE INDEX ON public."Post" ("no such column")')
    ]
    assert 'column "no such column" does not exist' in advice.rejected[0].error
    snapshot.index_advice.rejected += advice.rejected
    snapshot.save(tmp_path / "with-candidate.snap.json")
    result = run_cli(
        "audit",
        "--snapshot",
        str(tmp_path / "with-candidate.snap.json"),
        "--json",
        str(tmp_path / "r.json"),
        "--html",
        str(tmp_path / "r.html"),
        "--markdown",
        str(tmp_path / "r.md"),
    )
    assert result.returncode == 0, result.stderr
    rendered = json.loads((tmp_path / "r.json").read_text())["method"]["rejected"]
    assert {
        "kind": "candidate",
        "sql": 'CREATE INDEX ON public."Post" ("no such column")',
        "error": advice.rejected[0].error,
        "queryid": None,
        "table": "public.Post",
    } in rendered
    assert (
        'the server rejected index candidate `CREATE INDEX ON public."Post" ("no such column")`'
        in (tmp_path / "r.md").read_text()
    )
    html = (tmp_path / "r.html").read_text()
    assert "Rejected by the server" in html and "CREATE INDEX ON public.&#34;Post&#34;" in html


def test_rejected_sql_renders_in_every_report_and_is_redacted(tmp_path):
    """From a saved snapshot, no database: the method section of the JSON, Markdown and HTML
    reports lists what the server rejected; --redact masks the literals in it."""
    from queryaudit.advisor.model import Rejected
    from queryaudit.snapshot import ServerInfo, Statement

    secret = "s3cret-value"
    query = f"SELECT * FROM \"Post\" WHERE title = '{secret}'"
    snap = Snapshot(
        server=ServerInfo(version_num=150000, version="PostgreSQL 15", database="app"),
        collected_at="2026-11-24T00:00:00+00:00",
        total_exec_time_ms=50.0,
        total_calls=5,
        statement_count=1,
        statements=[
            Statement(queryid="1", query=query, calls=5, total_exec_time_ms=50.0, mean_exec_time_ms=10.0, rows=5)
        ],
        index_advice=IndexAdvice(
            method="hypothetical",
            rejected=[
                Rejected("statement", query, f'invalid input syntax for type integer: "{secret}"', "1"),
                Rejected(
                    "candidate",
                    'CREATE INDEX ON public."Post" ("no such column")',
                    'column "no such column" does not exist',
                    table="public.Post",
                ),
            ],
        ),
    )
    path = tmp_path / "snap.json"
    snap.save(path)
    outputs = [tmp_path / n for n in ("r.json", "r.md", "r.html")]
    result = run_cli(
        "audit",
        "--snapshot",
        str(path),
        "--json",
        str(outputs[0]),
        "--markdown",
        str(outputs[1]),
        "--html",
        str(outputs[2]),
    )
    assert result.returncode == 0, result.stderr
    rejected = json.loads(outputs[0].read_text())["method"]["rejected"]
    assert [(r["kind"], r["error"]) for r in rejected] == [
        ("statement", f'invalid input syntax for type integer: "{secret}"'),
        ("candidate", 'column "no such column" does not exist'),
    ]
    markdown = outputs[1].read_text()
    assert "the server rejected statement" in markdown and 'column "no such column" does not exist' in markdown
    html = outputs[2].read_text()
    assert "Rejected by the server" in html and "column &#34;no such column&#34; does not exist" in html

    result = run_cli(
        "audit",
        "--snapshot",
        str(path),
        "--redact",
        "--json",
        str(outputs[0]),
        "--markdown",
        str(outputs[1]),
        "--html",
        str(outputs[2]),
    )
    assert result.returncode == 0, result.stderr
    for out in outputs:
        assert secret not in out.read_text()
    assert "no such column" in outputs[1].read_text()  # names are not literals: they stay
