"""The check registry is derived from each module's declaration: groups, the severity
scale and the pages' thresholds follow the code, and a wrong declaration fails loudly."""

import types

import pytest

from queryaudit import checks
from queryaudit.checks import CheckDeclarationError, all_checks, declare, ids, load_check
from queryaudit.docs import page
from queryaudit.findings import Saving, severity_from_saving


def _module(name: str, **attrs) -> types.ModuleType:
    module = types.ModuleType(f"queryaudit.checks.{name}")
    module.run = lambda snapshot: []
    for key, value in attrs.items():
        setattr(module, key, value)
    return module


def test_every_module_declares_its_check():
    found = {c.id for c in all_checks()}
    assert len(found) >= 21 and "seq-scan-large-table" in found
    for check in all_checks():
        assert check.module.ID == check.id and check.family in checks.FAMILIES and check.fix in checks.FIX_KINDS


@pytest.mark.parametrize(
    "attrs, fragment",
    [
        ({"Id": "my-check", "TITLE": "t"}, "declares no check"),  # misspelled: no CHECK at all
        ({"CHECK": declare("my-chek", "t", family="plan", fix="setting")}, "module name in kebab case"),
        ({"CHECK": declare("my-check", "t", family="plans", fix="setting")}, "family 'plans'"),
        ({"CHECK": declare("my-check", "t", family="plan", fix="index")}, "fix 'index'"),
        (
            {"CHECK": declare("my-check", "t", family="plan", fix="setting", thresholds=("MIN_ROWS",)), "MIN_ROW": 5},
            "threshold 'MIN_ROWS'",
        ),
        ({"ID": "other", "CHECK": declare("my-check", "t", family="plan", fix="setting")}, "ID and the declared id"),
    ],
)
def test_a_wrong_declaration_fails_naming_the_module(attrs, fragment):
    with pytest.raises(CheckDeclarationError, match="queryaudit/checks/my_check.py") as info:
        load_check(_module("my_check", **attrs))
    assert fragment in str(info.value)


def test_groups_come_from_the_declarations():
    assert set(ids(family="locks")) == {"lock-contention", "long-transaction", "idle-in-transaction"}
    assert set(ids(fix="drop-index")) == {"unused-index", "duplicate-index", "redundant-index"}
    assert {"missing-index", "fk-without-index", "seq-scan-large-table"} <= set(ids(fix="create-index"))
    assert set(ids()) == {c.id for c in all_checks()}
    with pytest.raises(ValueError):
        ids(family="lock")


def test_one_severity_scale_from_predicted_saving():
    assert [severity_from_saving(Saving(s)) for s in (0.0, 0.019, 0.02, 0.099, 0.10, 0.5)] == [
        "low",
        "low",
        "medium",
        "medium",
        "high",
        "high",
    ]
    assert severity_from_saving(None, floor="medium") == "medium"
    from queryaudit.checks import _plans, n_plus_one

    assert _plans.severity_for is severity_from_saving
    assert n_plus_one._severity(0.03, 0) == "medium" and n_plus_one._severity(0.06, 0) == "medium"
    assert n_plus_one._severity(0.001, n_plus_one.MEDIUM_ROUND_TRIPS) == "medium"


def test_thresholds_section_shows_the_constants():
    check = next(c for c in all_checks() if c.id == "seq-scan-large-table")
    text = page(check)
    section = text.split("## Thresholds", 1)[1].split("## Known false positives")[0]
    assert f"| `LARGE_TABLE_ROWS` | {check.module.LARGE_TABLE_ROWS:,} |".replace(",", " ") in section
    assert f"| `MAX_KEPT_SHARE` | {check.module.MAX_KEPT_SHARE:g} |" in section
