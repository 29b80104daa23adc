"""Migration rules: each rule's own cases, and agreement with squawk's rule cases for every
rule that shares squawk's name (../shared/corpora/squawk-rule-cases.json)."""

from __future__ import annotations

import json
import re

import pytest

from queryaudit.migrations import ALIASES, Settings, all_rules, parse_pg_version
from queryaudit.migrations.review import lint_sql
from queryaudit.migrations.source import MigrationSyntaxError

STATIC_RULES = [r for r in all_rules() if r.check is not None]
SECTIONS = [
    "## What it detects",
    "## Why it matters",
    "## How to fix",
    "## Example",
    "## Thresholds",
    "## Known false positives",
]
# Cases whose SQL PostgreSQL's own grammar rejects (squawk's parser is more lenient): we
# report a syntax error instead of linting. `int array[]` is not valid PostgreSQL.
NOT_POSTGRESQL = {("ban-char-field", "all_the_types")}
# Cases where queryaudit differs on purpose; each rule's page says why.
# A file that only creates a new table (and alters it) blocks nobody: no timeout needed.
DELIBERATE = {("require-timeout-settings", "fix_multiple_ddl_statements")}


def settings_for(pg_version, assume_in_transaction) -> Settings:
    return Settings(parse_pg_version(pg_version) if pg_version else Settings().pg_version, bool(assume_in_transaction))


def lines_of(rule_id: str, sql: str, settings: Settings) -> list[int]:
    ids = ALIASES.get(rule_id, (rule_id,))
    return sorted({f.line for f in lint_sql(sql, settings, only=ids)})


@pytest.mark.parametrize("rule", STATIC_RULES, ids=lambda r: r.id)
def test_rule_has_id_title_doc_and_cases(rule):
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", rule.id)
    positions = [rule.doc.find(s) for s in SECTIONS]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), rule.id
    assert any(c.expect == "trigger" for c in rule.cases) and any(c.expect == "pass" for c in rule.cases), rule.id


@pytest.mark.parametrize("rule", STATIC_RULES, ids=lambda r: r.id)
def test_rule_own_cases(rule):
    for case in rule.cases:
        got = lines_of(rule.id, case.sql, settings_for(case.pg_version, case.assume_in_transaction))
        assert bool(got) == (case.expect == "trigger"), (rule.id, case)


def _corpus(shared_dir):
    return json.loads((shared_dir / "corpora" / "squawk-rule-cases.json").read_text())


def test_every_squawk_rule_is_implemented(shared_dir):
    ours = {r.id for r in all_rules()} | set(ALIASES)
    theirs = {c["rule"] for c in _corpus(shared_dir)}
    missing = sorted(theirs - ours)
    assert not missing, f"squawk rules without a queryaudit rule: {missing}"


def test_squawk_corpus_agreement(shared_dir):
    """Every case of every rule we share a name with: trigger/pass, and the 1-based lines."""
    ours = {r.id: r for r in all_rules()}
    disagreements, checked = [], 0
    for case in _corpus(shared_dir):
        rid = case["rule"]
        if rid not in ours and rid not in ALIASES:
            continue
        if rid in ours:
            assert ours[rid].squawk, f"{rid} shares squawk's name but is not marked squawk=True"
        settings = settings_for(case["pg_version"], case["assume_in_transaction"])
        if (rid, case["test"]) in NOT_POSTGRESQL:
            with pytest.raises(MigrationSyntaxError):
                lines_of(rid, case["sql"], settings)
            continue
        if (rid, case["test"]) in DELIBERATE:
            got = lines_of(rid, case["sql"], settings)
            assert bool(got) != (case["expect"] == "trigger"), (
                f"{rid} {case['test']} now agrees: drop it from DELIBERATE"
            )
            continue
        checked += 1
        got = lines_of(rid, case["sql"], settings)
        if bool(got) != (case["expect"] == "trigger"):
            disagreements.append((rid, case["test"], case["expect"], got))
        elif case.get("lines") and got != sorted(set(case["lines"])):
            disagreements.append((rid, case["test"], "lines", case["lines"], got))
    assert checked >= 340, checked
    assert not disagreements, f"{len(disagreements)}/{checked} cases disagree: {disagreements}"


def test_rule_pages_are_current():
    from pathlib import Path

    from queryaudit.migrations.docs import write_pages

    stale = write_pages(Path(__file__).resolve().parent.parent / "checks" / "migrations", dry_run=True)
    assert not stale, f"stale pages in checks/migrations/: {stale}; run `queryaudit docs`"


# squawk 2.70.0 (squawk-cli on PyPI): every name `squawk --exclude` accepts (checked one by one
# against the binary) and the ones it runs only with --include (checked by linting a sample
# statement for each with and without --include).
SQUAWK_2_70 = """adding-field-with-default adding-foreign-key-constraint adding-not-nullable-field adding-required-field
adding-serial-primary-key-field ban-add-column ban-add-composite-attribute ban-add-enum-value
ban-alter-database-options ban-alter-domain-with-add-constraint ban-alter-extension ban-alter-function-options
ban-alter-generated-expression ban-alter-identity ban-alter-policy-condition ban-alter-policy-roles
ban-alter-role-options ban-alter-row-level-security ban-alter-sequence-values ban-alter-system-options
ban-alter-view-options ban-char-field ban-concurrent-index-creation-in-transaction
ban-create-domain-with-constraint ban-create-policy ban-detach-inheritance ban-disable-trigger ban-drop-column
ban-drop-constraint ban-drop-database ban-drop-default ban-drop-domain ban-drop-extension ban-drop-function
ban-drop-generated-expression ban-drop-index ban-drop-not-null ban-drop-policy ban-drop-schema ban-drop-sequence
ban-drop-table ban-drop-trigger ban-drop-type ban-drop-view ban-duplicate-column-assignments
ban-new-write-restriction ban-replace-view-function ban-replica-identity ban-revoke ban-set-default
ban-set-schema ban-truncate-cascade ban-uncommitted-transaction changing-column-type constraint-missing-not-valid
disallowed-unique-constraint identifier-too-long prefer-bigint-over-int prefer-bigint-over-smallint
prefer-identity prefer-repack prefer-robust-stmts prefer-text-field prefer-timestamp-tz prefer-timestamptz
renaming-column renaming-object renaming-table require-concurrent-index-creation
require-concurrent-index-deletion require-concurrent-partition-detach require-concurrent-reindex
require-enum-value-ordering require-lock-timeout require-statement-timeout require-table-schema
require-timeout-settings transaction-nesting""".split()
SQUAWK_2_70_OPT_IN = """ban-add-column ban-add-composite-attribute ban-add-enum-value ban-alter-database-options
ban-alter-extension ban-alter-function-options ban-alter-generated-expression ban-alter-policy-condition
ban-alter-policy-roles ban-alter-role-options ban-alter-row-level-security ban-alter-sequence-values
ban-alter-system-options ban-alter-view-options ban-create-policy ban-detach-inheritance ban-disable-trigger
ban-drop-index ban-drop-policy ban-drop-trigger ban-new-write-restriction ban-replace-view-function
ban-replica-identity ban-revoke ban-set-default require-table-schema""".split()


def test_list_rules_names_every_squawk_2_70_rule_with_squawks_default():
    from conftest import run_cli

    listed = run_cli("review-migration", "--list-rules")
    assert listed.returncode == 0, listed.stderr
    names = {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
    assert not sorted(set(SQUAWK_2_70) - names), sorted(set(SQUAWK_2_70) - names)
    rules = {r.id: r for r in all_rules()}
    for name in SQUAWK_2_70:
        for rid in ALIASES.get(name, (name,)):
            assert rules[rid].squawk, rid
            assert rules[rid].default == (name not in SQUAWK_2_70_OPT_IN), rid


def _squawk_2_70():
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    binary = shutil.which("squawk") or str(Path(sys.executable).parent / "squawk")
    try:
        version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    except OSError:
        pytest.skip("squawk-cli is not installed (pip install squawk-cli==2.70.0, in the test extra)")
    if "2.70" not in version:
        pytest.skip(f"squawk 2.70 expected, found {version.strip()}")
    return binary


def test_rule_cases_agree_with_squawk_2_70_or_say_why(tmp_path):
    """Each squawk rule's own cases, linted by the squawk 2.70 binary: the same answer, or the
    rule's page explains the difference (## Differences from squawk)."""
    import subprocess

    binary = _squawk_2_70()
    unexplained, agreed = [], 0
    for r in STATIC_RULES:
        if not r.squawk:
            continue
        for i, case in enumerate(r.cases):
            path = tmp_path / f"{r.id}-{i}.sql"
            path.write_text(case.sql + "\n")
            cmd = [binary, "--reporter", "json", "--include", r.id]
            if case.pg_version:
                cmd += ["--pg-version", case.pg_version if "." in case.pg_version else f"{case.pg_version}.0"]
            if case.assume_in_transaction:
                cmd.append("--assume-in-transaction")
            out = subprocess.run([*cmd, str(path)], capture_output=True, text=True).stdout
            theirs = any(v["rule_name"] == r.id for v in json.loads(out or "[]"))
            if theirs == (case.expect == "trigger"):
                agreed += 1
            elif "## Differences from squawk" not in r.doc:
                unexplained.append((r.id, case.expect, case.sql))
    assert agreed >= 150, agreed
    assert not unexplained, unexplained
