"""Golden cases, database-free: each check on small snapshots carved from real audits (or
with a plan pasted as psql printed it) makes exactly the findings its case expects; every
check has a case that finds and a near miss that does not (tests/golden/cases.py)."""

import json
import sys
from pathlib import Path

import pytest

from queryaudit.checks import all_checks

sys.path.insert(0, str(Path(__file__).resolve().parent / "golden"))
from cases import GOLDEN, case_snapshot, run_check  # noqa: E402

CASES = sorted(GOLDEN.glob("*/*.json"))


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_golden_case(path: Path):
    case = json.loads(path.read_text())
    assert run_check(path.parent.name, case_snapshot(path)) == case["expect"], case["about"]


def test_every_check_has_a_positive_and_a_negative_case():
    for check in all_checks():
        expects = [json.loads(p.read_text())["expect"] for p in (GOLDEN / check.id).glob("*.json")]
        assert any(expects), f"{check.id}: no golden case with a finding"
        assert any(not e for e in expects), f"{check.id}: no golden near miss (a case without a finding)"
