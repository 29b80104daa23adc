"""Every problem a fixture plants is found by the audit, once its check exists; the clean
fixture yields nothing of severity medium or above. This grows with every new check."""

import json

import pytest

from conftest import run_cli
from helpers import validate_report
from queryaudit.checks import all_checks
from queryaudit.demo import fixtures

IMPLEMENTED = {c.id for c in all_checks()}


def matches(problem: dict, finding: dict) -> bool:
    if finding["check"] != problem["check"]:
        return False
    if problem.get("table") and finding.get("table") != problem["table"]:
        return False
    if problem.get("index") and finding.get("index") != problem["index"]:
        return False
    if problem.get("columns") and list(finding.get("columns") or [])[: len(problem["columns"])] != problem["columns"]:
        return False
    if problem.get("cause") and (finding.get("evidence") or {}).get("cause") != problem["cause"]:
        return False
    return True


@pytest.fixture
def shop_report(shop_db, tmp_path):
    shop_db.run_workload("shop", rounds=1)
    out = tmp_path / "shop.json"
    # The fixture's cluster is seconds old: no index has a week of statistics behind it.
    result = run_cli("audit", "--dsn", shop_db.dsn, "--json", str(out), "--unused-index-min-days", "0")
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    validate_report(report)
    return report


def test_every_planted_problem_with_a_check_is_found(shop_report):
    planted = [p for p in fixtures.problems("shop") if p["check"] in IMPLEMENTED]
    assert planted, "no check for any planted problem yet"
    # A finding merged into another (one index fixes both) still counts: evidence.merged keeps it.
    reported = [x for f in shop_report["findings"] for x in [f, *(f.get("evidence") or {}).get("merged", [])]]
    missing = [p for p in planted if not any(matches(p, f) for f in reported)]
    assert not missing, f"planted problems not reported: {missing}"


def test_clean_fixture_has_no_finding_of_medium_or_above(clean_db, tmp_path):
    clean_db.run_workload("clean", rounds=1)
    out = tmp_path / "clean.json"
    result = run_cli("audit", "--dsn", clean_db.dsn, "--json", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    serious = [f for f in report["findings"] if f["severity"] in ("critical", "high", "medium")]
    assert not serious, serious
    assert report["queries"], "the clean workload should still be listed"
