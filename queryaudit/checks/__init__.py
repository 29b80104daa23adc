"""The check registry: every module in this package is one check.

A check module defines ID (from ../shared/spec/checks.md), TITLE, its thresholds as
named constants, a docstring in the fixed sections (What it detects / Why it matters /
How to fix / Example / Thresholds / Known false positives) from which its page in
checks/ is generated, and `run(snapshot) -> list[Finding]`: pure, no I/O.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from types import ModuleType

from queryaudit.findings import Finding
from queryaudit.snapshot import Snapshot


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    module: ModuleType

    @property
    def doc(self) -> str:
        return self.module.__doc__ or ""

    def run(self, snapshot: Snapshot) -> list[Finding]:
        return self.module.run(snapshot)


def all_checks() -> list[Check]:
    checks = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "ID") and hasattr(module, "run"):
            checks.append(Check(module.ID, module.TITLE, module))
    return sorted(checks, key=lambda c: c.id)


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
    from queryaudit.verify.apply import apply_measurements

    return apply_measurements(snapshot, findings)
