"""Each check is documented: its page in checks/ is generated from its docstring and current."""

import re
from pathlib import Path

from queryaudit.checks import all_checks
from queryaudit.docs import write_pages

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = [
    "## What it detects",
    "## Why it matters",
    "## How to fix",
    "## Example",
    "## Thresholds",
    "## Known false positives",
]


def test_check_ids_are_kebab_case_and_unique():
    ids = [c.id for c in all_checks()]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", i) for i in ids)


def test_check_ids_follow_the_shared_contract():
    from conftest import SHARED  # QUERYAUDIT_SHARED for a git worktree

    contract = SHARED / "spec" / "checks.md"
    if not contract.exists():
        import pytest

        pytest.skip("../shared/spec/checks.md is absent (a user's clone)")
    listed = set(re.findall(r"^\| ([a-z0-9-]+) \|", contract.read_text(), re.M)) - {"id"}
    for check in all_checks():
        # New ids are allowed, but never a near-miss spelling of a contract id.
        if check.id not in listed:
            assert not any(check.id.replace("-", "") == i.replace("-", "") for i in listed), check.id


def test_every_check_docstring_has_the_fixed_sections():
    for check in all_checks():
        positions = [check.doc.find(s) for s in SECTIONS]
        assert all(p >= 0 for p in positions), (
            check.id,
            [s for s, p in zip(SECTIONS, positions, strict=True) if p < 0],
        )
        assert positions == sorted(positions), check.id


def test_check_pages_are_current():
    stale = write_pages(ROOT / "checks", dry_run=True)
    assert not stale, f"stale pages in checks/: {stale}; run `queryaudit docs`"
