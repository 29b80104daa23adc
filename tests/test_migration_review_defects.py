"""The defects found reviewing real-world migrations (issue 16), one test each: --fail-on never,
a file that does not parse, the view with `*` and a subquery, the foreign key on a filled new
table, and the timeout rules on files that only create new tables."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

import jsonschema
import psycopg
import pytest

from conftest import run_cli
from queryaudit.migrations.review import lint_sql

DATA = Path(__file__).parent / "data"
TIMEOUTS = ["require-lock-timeout", "require-statement-timeout"]


def test_fail_on_never_writes_every_output_and_passes(tmp_path):
    path = tmp_path / "0001.sql"
    path.write_text("DROP TABLE t;\n")
    out = {k: tmp_path / f"out.{k}" for k in ("json", "sarif", "junit", "markdown")}
    proc = run_cli(
        "review-migration", str(path), "--fail-on", "never", *[a for k, p in out.items() for a in (f"--{k}", str(p))]
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out["json"].read_text())
    assert report["settings"]["fail_on"] == "never" and report["summary"]["failed"] is False
    assert [f["rule"] for f in report["findings"]][:1] == ["ban-drop-table"]
    assert int(ET.parse(out["junit"]).getroot().get("failures")) == 0
    assert "passes (`--fail-on never`)" in out["markdown"].read_text()


def test_a_file_that_does_not_parse_is_a_finding_and_the_others_are_reviewed(tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    bad, good = folder / "1_bad.sql", folder / "2_good.sql"
    bad.write_text("SELECT 1;\nALTER TABLE t ADD COLUMN;\n")
    good.write_text("SET lock_timeout = '1s';\nSET statement_timeout = '1min';\nDROP TABLE t;\n")
    out = {k: tmp_path / f"out.{k}" for k in ("json", "sarif", "junit", "markdown")}
    proc = run_cli(
        "review-migration",
        str(folder),
        "--fail-on",
        "never",
        *[a for k, p in out.items() for a in (f"--{k}", str(p))],
        env={"GITHUB_ACTIONS": "true"},
    )
    assert proc.returncode == 2, proc.stderr  # not reviewed: fails whatever --fail-on says
    assert proc.stderr.strip() == f'queryaudit: error: {bad}:2:25: syntax error at or near ";"'
    # terminal and annotations
    assert f"{bad}:2:25" in proc.stdout and "syntax-error" in proc.stdout
    assert "::error file=" in proc.stdout and "title=syntax-error (critical)" in proc.stdout
    assert "ban-drop-table" in proc.stdout  # the other file still reviewed
    report = json.loads(out["json"].read_text())
    rules = {(Path(f["path"]).name, f["rule"]) for f in report["findings"]}
    assert ("1_bad.sql", "syntax-error") in rules and ("2_good.sql", "ban-drop-table") in rules
    syntax = next(f for f in report["findings"] if f["rule"] == "syntax-error")
    assert (syntax["line"], syntax["column"], syntax["severity"]) == (2, 25, "critical")
    assert syntax["statement"] == "ALTER TABLE t ADD COLUMN;"
    assert report["errors"] and report["summary"]["failed"] is True
    sarif = json.loads(out["sarif"].read_text())
    jsonschema.Draft4Validator(json.loads((DATA / "sarif-schema-2.1.0.json").read_text())).validate(sarif)
    run = sarif["runs"][0]
    result = next(r for r in run["results"] if r["ruleId"] == "syntax-error")
    assert result["level"] == "error" and result["locations"][0]["physicalLocation"]["region"]["startLine"] == 2
    assert "syntax-error" in {r["id"] for r in run["tool"]["driver"]["rules"]}
    invocation = run["invocations"][0]
    assert invocation["executionSuccessful"] is False
    assert invocation["toolExecutionNotifications"][0]["descriptor"]["id"] == "syntax-error"
    junit = ET.parse(out["junit"]).getroot()
    assert junit.get("errors") == "1"
    assert junit.find(".//error").get("type") == "syntax-error"
    assert "❌ fails" in out["markdown"].read_text()


VIEW_WITH_STAR = (
    "CREATE VIEW member_list AS SELECT *, (SELECT avatar FROM profiles p WHERE p.member_id = m.id) FROM members m;"
)


@pytest.mark.db
def test_star_and_an_unaliased_subquery_are_not_duplicate_columns(empty_db):
    assert not lint_sql(VIEW_WITH_STAR, only=["ban-duplicate-column-assignments"])
    duplicates = [
        "CREATE VIEW v AS SELECT 1, 2;",
        "CREATE VIEW v AS SELECT id, (SELECT id FROM profiles) FROM members;",
        "CREATE VIEW v AS SELECT 1::int, 2::integer;",
    ]
    for sql in duplicates:
        assert lint_sql(sql, only=["ban-duplicate-column-assignments"]), sql
    empty_db.execute(
        "CREATE TABLE members (id bigint, name text);\n"
        "CREATE TABLE profiles (member_id bigint, avatar text, id bigint);"
    )
    empty_db.execute(VIEW_WITH_STAR)  # PostgreSQL accepts the view we no longer flag
    for sql in duplicates:  # and rejects the ones we still flag
        with pytest.raises(psycopg.errors.DuplicateColumn):
            empty_db.execute(sql)


FILLED_FK = (
    "SET lock_timeout = '2s';\nSET statement_timeout = '1min';\n"
    "CREATE TABLE email_copy AS SELECT id, user_id FROM email;\n"
    "ALTER TABLE email_copy ADD CONSTRAINT email_copy_user_fk FOREIGN KEY (user_id) REFERENCES users (id);\n"
)


def test_foreign_key_on_a_new_but_filled_table_is_reported():
    found = lint_sql(FILLED_FK, only=["adding-foreign-key-constraint"])
    assert [(f.line, f.lock, f.table) for f in found] == [(4, "SHARE ROW EXCLUSIVE", "users")]
    assert "filled at line 3" in found[0].message
    # INSERT ... SELECT fills a table created empty; a VALUES list or an empty table does not count
    filled = (
        "CREATE TABLE c (id bigint, user_id bigint);\nINSERT INTO c SELECT id, user_id FROM email;\n"
        "ALTER TABLE c ADD FOREIGN KEY (user_id) REFERENCES users (id);"
    )
    assert [f.line for f in lint_sql(filled, only=["adding-foreign-key-constraint"])] == [3]
    for quiet in (
        "CREATE TABLE c (id bigint, user_id bigint);\nINSERT INTO c VALUES (1, 1);\n"
        "ALTER TABLE c ADD FOREIGN KEY (user_id) REFERENCES users (id);",
        "CREATE TABLE c AS SELECT * FROM email WITH NO DATA;\n"
        "ALTER TABLE c ADD FOREIGN KEY (user_id) REFERENCES users (id);",
    ):
        assert not lint_sql(quiet, only=["adding-foreign-key-constraint"]), quiet


@pytest.mark.db
def test_foreign_key_on_a_filled_table_locks_the_existing_referenced_table(empty_db, tmp_path):
    """Measured on a scratch copy: the ALTER holds SHARE ROW EXCLUSIVE on users, the existing table."""
    empty_db.execute(
        "CREATE TABLE users (id bigint PRIMARY KEY);\n"
        "CREATE TABLE email (id bigint PRIMARY KEY, user_id bigint);\n"
        "INSERT INTO users SELECT generate_series(1, 2000);\n"
        "INSERT INTO email SELECT g, g FROM generate_series(1, 2000) g;"
    )
    path = tmp_path / "0002_copy.sql"
    path.write_text(FILLED_FK)
    out = tmp_path / "r.json"
    proc = run_cli("review-migration", str(path), "--dsn", empty_db.dsn, "--json", str(out))
    assert proc.returncode == 1, proc.stderr
    review = json.loads(out.read_text())
    alter = next(s for s in review["dynamic"]["statements"] if s["line"] == 4)
    assert any(
        lk["relation"] == "public.users" and lk["strongest"] == "SHARE ROW EXCLUSIVE" for lk in alter["locks"]
    ), alter
    assert any(f["rule"] == "adding-foreign-key-constraint" and f["line"] == 4 for f in review["findings"])


def test_timeouts_are_not_required_for_files_that_only_create_new_tables():
    only_new = (
        "CREATE TABLE identities (id uuid PRIMARY KEY, traits jsonb NOT NULL);\n"
        "CREATE INDEX identities_traits_idx ON identities USING gin (traits);\n"
        "COMMENT ON TABLE identities IS 'people';\n"
        "CREATE TABLE identity_credentials (id uuid PRIMARY KEY, "
        "identity_id uuid REFERENCES identities (id));\n"
        "ALTER TABLE identity_credentials ADD COLUMN config jsonb;\n"
    )
    assert not lint_sql(only_new, only=TIMEOUTS)
    for blocking in (
        "CREATE TABLE sessions (id uuid, identity_id uuid REFERENCES identities (id));",
        "CREATE TABLE s (id uuid);\nALTER TABLE s ADD FOREIGN KEY (id) REFERENCES identities (id);",
        "CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');",
        "CREATE TABLE s (id uuid);\nCREATE INDEX identities_id ON identities (id);",
    ):
        assert sorted({f.rule for f in lint_sql(blocking, only=TIMEOUTS)}) == TIMEOUTS, blocking
