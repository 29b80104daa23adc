"""collect -> facts -> checks -> findings -> prioritise -> report: the audit in one place."""
from __future__ import annotations

from dataclasses import dataclass, field

from queryaudit.checks import run_checks
from queryaudit.collect import CollectOptions, collect_snapshot
from queryaudit.connect import SessionLimits, session
from queryaudit.report.model import build_report
from queryaudit.snapshot import Snapshot


@dataclass
class AuditOptions:
    top: int = 20
    limits: SessionLimits = field(default_factory=SessionLimits)
    collect: CollectOptions = field(default_factory=CollectOptions)


def collect_live(dsn: str, options: AuditOptions, progress=None) -> Snapshot:
    options.collect.top = options.top
    with session(dsn, options.limits) as conn:
        return collect_snapshot(conn, options.collect, progress)


def analyse(snapshot: Snapshot, top: int = 20) -> dict:
    """Checks and report from a snapshot: pure, no database needed."""
    findings = run_checks(snapshot)
    return build_report(snapshot, findings, top)
