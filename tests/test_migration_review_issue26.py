"""Where review-migration was wrong on more real-world migrations (issue 26), one test each:
prefer-robust-stmts misses (RENAME, a lone CREATE INDEX CONCURRENTLY under a runner's
transaction, ALTER COLUMN ... TYPE ... USING) and false alarms (ADD CONSTRAINT right after
DROP CONSTRAINT), the timeout rules on a file that only runs ANALYZE and on a timeout set to 0,
one finding for a FOREIGN KEY, and the PostgreSQL 10 wording and its safe rewrite. The SQL is
written like the kratos and supabase auth files of ../shared/corpora/migrations-realworld."""

from __future__ import annotations

import json

import psycopg
import pytest

from conftest import run_cli
from queryaudit.migrations import Settings, parse_pg_version
from queryaudit.migrations.review import lint_sql, review

ROBUST = ["prefer-robust-stmts"]
TIMEOUTS = ["require-lock-timeout", "require-statement-timeout"]
OUTSIDE = Settings()  # no BEGIN and no --assume-in-transaction: what a re-run meets
IN_TRANSACTION = Settings(assume_in_transaction=True)


@pytest.mark.parametrize(
    "sql",
    [
        'ALTER TABLE "identities" RENAME COLUMN "traits_schema_id" TO "schema_id";',
        'ALTER TABLE "selfservice_profile_management_requests" RENAME TO "selfservice_settings_requests";',
        'ALTER TABLE "identity_credentials" RENAME CONSTRAINT "identity_credentials_fk" TO "ic_identity_fk";',
        'ALTER INDEX "identities_nid_idx" RENAME TO "identities_nid_id_idx";',
        "ALTER TYPE auth.factor_type RENAME VALUE 'webauthn' TO 'passkey';",
    ],
)
def test_a_rename_cannot_be_re_run(sql):
    found = lint_sql(sql, OUTSIDE, ROBUST)
    assert [f.line for f in found] == [1]
    assert "old" in found[0].message and "gone" in found[0].message
    assert not lint_sql(sql, IN_TRANSACTION, ROBUST)  # rolled back whole on failure


def test_renaming_a_table_if_it_exists_can_be_re_run():
    assert not lint_sql('ALTER TABLE IF EXISTS "old_sessions" RENAME TO "sessions";', OUTSIDE, ROBUST)


def test_a_lone_named_create_index_concurrently_is_reported_under_a_runners_transaction():
    lone = (
        'CREATE INDEX CONCURRENTLY "courier_messages_status_created_at_idx" ON "courier_messages" ("status", '
        '"created_at" DESC);\n'
    )
    found = lint_sql(lone, IN_TRANSACTION, ROBUST)
    assert [f.line for f in found] == [1]
    assert "INVALID index" in found[0].message and "IF NOT EXISTS" in found[0].message
    # IF NOT EXISTS, or an unnamed index (a retry builds another name), is fine: squawk agrees.
    assert not lint_sql(lone.replace("CONCURRENTLY", "CONCURRENTLY IF NOT EXISTS"), IN_TRANSACTION, ROBUST)
    assert not lint_sql('CREATE INDEX CONCURRENTLY ON "courier_messages" ("status");', IN_TRANSACTION, ROBUST)
    # Not lone: the runner's transaction holds the other statements, and
    # ban-concurrent-index-creation-in-transaction reports the file.
    assert not lint_sql("SELECT 1;\n" + lone, IN_TRANSACTION, ROBUST)


def test_alter_column_type_using_changes_data_again_on_a_re_run():
    using = (
        'ALTER TABLE "sessions" ALTER COLUMN "authenticated_at" TYPE timestamp USING to_timestamp("authenticated_at");'
    )
    found = lint_sql(using, OUTSIDE, ROBUST)
    assert [f.line for f in found] == [1]
    assert "USING to_timestamp(authenticated_at)" in found[0].message
    # Without USING the same type again is a no-op: kratos' code_address_type.autocommit file.
    assert not lint_sql(
        'ALTER TABLE "identity_verification_codes" ALTER COLUMN "address_type" TYPE VARCHAR(36);', OUTSIDE, ROBUST
    )


def test_add_constraint_right_after_drop_constraint_of_that_name_is_not_reported():
    sql = (
        'ALTER TABLE "sessions" DROP CONSTRAINT "sessions_identity_id_fkey";\n'
        'ALTER TABLE "sessions" ADD CONSTRAINT "sessions_identity_id_fkey" FOREIGN KEY ("identity_id") '
        'REFERENCES "identities" ("id") ON DELETE CASCADE;\n'
    )
    # The DROP without IF EXISTS is the statement that fails on a re-run, and only it.
    assert [f.line for f in lint_sql(sql, OUTSIDE, ROBUST)] == [1]
    assert not lint_sql(sql.replace("DROP CONSTRAINT", "DROP CONSTRAINT IF EXISTS"), OUTSIDE, ROBUST)
    # A second ADD of the same name is reported (squawk's double_add_after_drop_err).
    again = sql.splitlines()[1]
    assert [f.line for f in lint_sql(sql + again + "\n", OUTSIDE, ROBUST)] == [1, 3]


def test_a_file_that_only_runs_analyze_needs_no_timeouts():
    assert not lint_sql('ANALYZE "identities";\nANALYZE "identity_credentials";\n', IN_TRANSACTION, TIMEOUTS)
    # VACUUM still counts, and so does DDL after the ANALYZE.
    assert len(lint_sql('VACUUM "identities";\n', IN_TRANSACTION, TIMEOUTS)) == 2
    assert [
        f.line
        for f in lint_sql(
            'ANALYZE "identities";\nALTER TABLE "identities" ADD COLUMN "x" text;\n', IN_TRANSACTION, TIMEOUTS
        )
    ] == [2, 2]


def test_a_timeout_set_to_zero_is_said_to_disable_it():
    sql = (
        "SET LOCAL statement_timeout = 0;\nSET LOCAL lock_timeout = '0';\n"
        "ALTER TABLE users ALTER COLUMN id TYPE bigint;\n"
    )
    found = {f.rule: f for f in lint_sql(sql, IN_TRANSACTION, TIMEOUTS)}
    assert found["require-statement-timeout"].message.startswith(
        "statement_timeout = 0 (line 1) disables the timeout for the first DDL"
    )
    assert found["require-lock-timeout"].message.startswith("lock_timeout = 0 (line 2) disables the timeout")
    assert all("no " not in f.message.split(":")[0] for f in found.values())
    # A non-zero value set after the 0 is a timeout again.
    assert not lint_sql(
        "SET statement_timeout = 0;\nSET statement_timeout = '5min';\nALTER TABLE users ALTER COLUMN id TYPE bigint;\n",
        IN_TRANSACTION,
        ["require-statement-timeout"],
    )


FOREIGN_KEY = (
    "SET lock_timeout = '2s';\nSET statement_timeout = '1min';\n"
    'ALTER TABLE "mfa_amr_claims" ADD CONSTRAINT "mfa_amr_claims_session_id_fkey" FOREIGN KEY '
    '("session_id") REFERENCES "sessions" ("id") ON DELETE CASCADE;\n'
)


def test_one_foreign_key_statement_is_one_finding_naming_both_rules(tmp_path):
    result = review([("0001.sql", FOREIGN_KEY)], IN_TRANSACTION)
    high = [f for f in result.findings if f.severity == "high"]
    assert len(high) == 1, [(f.rule, f.message) for f in high]
    assert high[0].rule == "adding-foreign-key-constraint"
    assert high[0].evidence["also"] == ["constraint-missing-not-valid"]
    # Each rule alone still reports it (squawk's cases hold rule by rule).
    assert len(lint_sql(FOREIGN_KEY, IN_TRANSACTION, ["constraint-missing-not-valid"])) == 1
    path = tmp_path / "0001.sql"
    path.write_text(FOREIGN_KEY)
    proc = run_cli("review-migration", "--assume-in-transaction", str(path))
    assert proc.stdout.count(" high ") == 1 and "also constraint-missing-not-valid" in proc.stdout


def test_postgresql_10_wording_and_its_rewrite_keeps_not_null():
    sql = 'ALTER TABLE "identities" ADD COLUMN "state" VARCHAR(255) NOT NULL DEFAULT \'active\';\n'
    (found,) = lint_sql(sql, Settings(pg_version=parse_pg_version("10")), ["adding-field-with-default"])
    assert "a any" not in found.message
    assert found.message.startswith("ADD COLUMN state with a default ('active') on PostgreSQL 10 rewrites")
    assert 'CHECK ("state" IS NOT NULL) NOT VALID' in found.safe_sql or "CHECK (state IS NOT NULL)" in found.safe_sql
    assert "SET NOT NULL" not in found.safe_sql.replace("-- PostgreSQL 10: SET NOT NULL", "")


@pytest.mark.parametrize("pg_version", ["10", "16"])
def test_the_safe_rewrite_runs_as_written_and_keeps_nulls_out(empty_db, pg_version):
    empty_db.execute("CREATE TABLE identities (id bigint PRIMARY KEY)")
    empty_db.execute("INSERT INTO identities SELECT generate_series(1, 500)")
    sql = "ALTER TABLE identities ADD COLUMN state varchar(255) NOT NULL DEFAULT md5(random()::text);\n"
    (found,) = lint_sql(sql, Settings(pg_version=parse_pg_version(pg_version)), ["adding-field-with-default"])
    with psycopg.connect(empty_db.dsn, autocommit=True) as conn:
        conn.execute(found.safe_sql)
        assert conn.execute("SELECT count(*) FROM identities WHERE state IS NULL").fetchone()[0] == 0
        with pytest.raises(psycopg.errors.IntegrityError):  # NOT NULL or the validated CHECK
            conn.execute("UPDATE identities SET state = NULL WHERE id = 1")
        not_null = conn.execute(
            "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'identities'::regclass AND attname = 'state'"
        ).fetchone()[0]
    assert not_null == (pg_version == "16")


def test_the_json_review_keeps_the_merged_rule(tmp_path):
    path = tmp_path / "0001.sql"
    path.write_text(FOREIGN_KEY)
    out = tmp_path / "r.json"
    run_cli("review-migration", "--assume-in-transaction", str(path), "--json", str(out))
    findings = json.loads(out.read_text())["findings"]
    assert [f["evidence"].get("also") for f in findings if f["rule"] == "adding-foreign-key-constraint"] == [
        ["constraint-missing-not-valid"]
    ]
