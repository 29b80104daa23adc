"""The check registry: every module in this package whose name does not start with `_`
is one check, and says so in its header:

    ID = "seq-scan-large-table"
    TITLE = "Sequential scan of a large table returning few rows"
    LARGE_TABLE_ROWS = 10_000
    CHECK = declare(ID, TITLE, family="plan", fix="create-index", thresholds=("LARGE_TABLE_ROWS",))

with a docstring in the fixed sections (What it detects / Why it matters / How to fix /
Example / Thresholds / Known false positives), from which its page in checks/ is generated
(the Thresholds table from the constants the declaration names), and
`run(snapshot) -> list[Finding]`: pure, no I/O.

The groups the report uses (hygiene, locks, index drops, index creations) are derived
from the declarations (`ids`), never listed by hand. A module that declares nothing, or
declares it wrongly, stops every audit with its name: a check silently skipped is worse.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import re
from dataclasses import dataclass, field
from types import ModuleType

from queryaudit.findings import Finding
from queryaudit.snapshot import Snapshot
from queryaudit.verify.apply import apply_measurements

# What a check looks at: captured plans, the workload's statistics, the catalog's
# index hygiene, or lock waits and transactions.
FAMILIES = ("plan", "workload", "hygiene", "locks")
# What its fix does, in the DBA's words.
FIX_KINDS = ("create-index", "drop-index", "rebuild-index", "statistics", "setting", "vacuum", "rewrite", "application")


class CheckDeclarationError(Exception):
    """A check module whose declaration is missing or wrong (a bug in queryaudit, not user input)."""


@dataclass(frozen=True)
class Declaration:
    id: str
    title: str
    family: str
    fix: str
    thresholds: tuple[str, ...] = ()


def declare(id: str, title: str, *, family: str, fix: str, thresholds: tuple[str, ...] = ()) -> Declaration:
    return Declaration(id, title, family, fix, tuple(thresholds))


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    family: str
    fix: str
    module: ModuleType
    thresholds: dict[str, int | float] = field(default_factory=dict)

    @property
    def doc(self) -> str:
        return self.module.__doc__ or ""

    def run(self, snapshot: Snapshot) -> list[Finding]:
        return self.module.run(snapshot)


def load_check(module: ModuleType) -> Check:
    """The module's declaration, checked: any mistake raises, naming the module."""
    name = module.__name__.rsplit(".", 1)[-1]
    where = f"queryaudit/checks/{name}.py"
    decl = getattr(module, "CHECK", None)
    if not isinstance(decl, Declaration):
        raise CheckDeclarationError(f"{where} declares no check: add CHECK = declare(ID, TITLE, family=..., fix=...)")
    if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", decl.id) or decl.id.replace("-", "_") != name:
        raise CheckDeclarationError(f"{where}: check id {decl.id!r} must be the module name in kebab case")
    if getattr(module, "ID", decl.id) != decl.id or not decl.title.strip():
        raise CheckDeclarationError(f"{where}: ID and the declared id differ, or the title is empty")
    if decl.family not in FAMILIES:
        raise CheckDeclarationError(f"{where}: family {decl.family!r} is not one of {', '.join(FAMILIES)}")
    if decl.fix not in FIX_KINDS:
        raise CheckDeclarationError(f"{where}: fix {decl.fix!r} is not one of {', '.join(FIX_KINDS)}")
    if not callable(getattr(module, "run", None)):
        raise CheckDeclarationError(f"{where} has no run(snapshot) function")
    thresholds = {}
    for constant in decl.thresholds:
        value = getattr(module, constant, None)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CheckDeclarationError(f"{where}: threshold {constant!r} is not a numeric constant of the module")
        thresholds[constant] = value
    return Check(decl.id, decl.title, decl.family, decl.fix, module, thresholds)


@functools.cache
def _registry() -> tuple[Check, ...]:
    checks = [
        load_check(importlib.import_module(f"{__name__}.{info.name}"))
        for info in pkgutil.iter_modules(__path__)
        if not info.name.startswith("_")
    ]
    return tuple(sorted(checks, key=lambda c: c.id))


def all_checks() -> list[Check]:
    return list(_registry())


def ids(family: str | None = None, fix: str | None = None) -> tuple[str, ...]:
    """The ids of the checks of a family and/or a fix kind: the groups the report shows."""
    for value, allowed in ((family, FAMILIES), (fix, FIX_KINDS)):
        if value is not None and value not in allowed:
            raise ValueError(f"{value!r} is not one of {allowed}")
    return tuple(c.id for c in _registry() if family in (None, c.family) and fix in (None, c.fix))


def run_checks(snapshot: Snapshot, only: set[str] | None = None) -> list[Finding]:
    """Run every check; one that crashes is recorded as a stage error, not fatal."""
    findings: list[Finding] = []
    for check in all_checks():
        if only and check.id not in only:
            continue
        try:
            findings.extend(check.run(snapshot))
        except Exception as exc:  # a bug in one check must not lose the others' findings
            snapshot.record_error(f"check {check.id}", f"{type(exc).__name__}: {exc}")
    # Fixes tried on the server (queryaudit.verify) replace the checks' estimates.

    return apply_measurements(snapshot, findings)
