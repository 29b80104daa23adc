"""review-migration on real migrations (../shared/corpora/migrations-realworld: ory/kratos and
supabase/auth, their README gives licences and runner behaviour): every file parses and is
reviewed without error, one file per review as their runners apply them, and as one directory."""

from __future__ import annotations

import json

from conftest import run_cli
from queryaudit.migrations import Settings
from queryaudit.migrations.review import review


def _files(shared_dir):
    corpus = shared_dir / "corpora" / "migrations-realworld"
    files = sorted(corpus.rglob("*.sql"))
    assert len(files) > 400, len(files)  # kratos 346 + supabase-auth 70 when this was written
    return corpus, files


def test_every_real_world_migration_is_reviewed_without_error(shared_dir):
    _, files = _files(shared_dir)
    rules_seen = set()
    for f in files:
        # popx and pop run one transaction per file, except kratos' .autocommit. files
        settings = Settings(assume_in_transaction=".autocommit." not in f.name)
        result = review([(str(f), f.read_text())], settings)
        assert not result.errors, result.errors
        assert all(finding.rule != "syntax-error" for finding in result.findings), f
        rules_seen.update(finding.rule for finding in result.findings)
    # the corpus exercises the lock rules, not only style ones
    assert {"require-concurrent-index-creation", "changing-column-type", "adding-foreign-key-constraint"} <= rules_seen


def test_the_whole_corpus_in_one_run(shared_dir, tmp_path):
    corpus, files = _files(shared_dir)
    out = tmp_path / "review.json"
    proc = run_cli(
        "review-migration",
        str(corpus / "supabase-auth"),
        str(corpus / "kratos"),
        "--assume-in-transaction",
        "--fail-on",
        "never",
        "--json",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert len(report["files"]) == len(files) and report["errors"] == []


def test_new_tables_and_their_indexes_need_no_timeouts(shared_dir):
    """kratos creates a table and its indexes in one file: nobody can be waiting on a new table."""
    corpus, _ = _files(shared_dir)
    f = corpus / "kratos" / "20230405000000000001_create_session_token_exchanges.up.sql"
    result = review([(str(f), f.read_text())], Settings(assume_in_transaction=True))
    assert not [x for x in result.findings if x.rule.startswith("require-") and x.rule.endswith("-timeout")]
