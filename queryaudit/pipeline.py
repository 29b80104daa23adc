"""collect -> facts -> checks -> findings -> prioritise -> report: the audit in one place.

Every entry point (`audit`, `fleet`, `check`, the demo, `snapshot`, `advise-indexes`) builds
one AuditOptions and goes through here, so an option means the same everywhere:

- a source makes the Snapshot: a live server (`live_snapshot`, the collection stages from
  `build_stages`), a saved snapshot file, or server logs alone (`open_source` picks);
- `run_audit` adds what the logs say, runs the checks and builds the report (redacted when asked).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from queryaudit.checks import run_checks
from queryaudit.collect import CollectOptions, collect_snapshot
from queryaudit.collect.plans import DEFAULT_STATEMENT_LIMIT_MS
from queryaudit.connect import SessionLimits, session
from queryaudit.report.model import build_report
from queryaudit.snapshot import Snapshot

if TYPE_CHECKING:
    from queryaudit.advisor.stage import AdvisorOptions


@dataclass
class AuditOptions:
    top: int = 20
    limits: SessionLimits = field(default_factory=SessionLimits)
    collect: CollectOptions = field(default_factory=CollectOptions)
    # Live lock sampling (queryaudit.collect.locks): seconds of pg_stat_activity sampling; 0 = off.
    sample_seconds: float = 0.0
    sample_rate_hz: float = 10.0
    # Plan capture (queryaudit.collect.plans): EXPLAIN of the top statements.
    explain: bool = True
    explain_budget_s: float = 60.0
    explain_statement_ms: int = DEFAULT_STATEMENT_LIMIT_MS  # statement_timeout of one EXPLAIN ANALYZE
    analyze_dml: bool = False
    queries_file: str | Path | None = None
    # Index advisor (queryaudit.advisor), after plan capture; None = defaults, enabled=False = off.
    advisor: AdvisorOptions | None = None
    # Server logs read with the audit (queryaudit.logs): statements, latency, N+1 runs, lock waits.
    logs: list[str | Path] = field(default_factory=list)
    log_line_prefix: str | None = None
    n_plus_one_min_executions: int = 5
    n_plus_one_min_run_ms: float = 50.0
    # Literals replaced in the report (queryaudit.redact).
    redact: bool = False


@dataclass
class AuditRun:
    snapshot: Snapshot
    report: dict


def build_stages(options: AuditOptions, dsn: str) -> list[tuple[str, object]]:
    """The collection stages after the catalog, from the options alone (pure: nothing runs
    here). The caller's CollectOptions.stages come first and are never changed."""
    stages = list(options.collect.stages)
    names = {name for name, _ in stages}
    if options.sample_seconds > 0 and "lock sampling" not in names:
        from queryaudit.collect.locks import SampleOptions, sampling_stage

        stages.append(("lock sampling", sampling_stage(
            SampleOptions(seconds=options.sample_seconds, rate_hz=options.sample_rate_hz))))
    if options.explain and "plans" not in names:
        from queryaudit.collect.plans import PlanOptions, plan_stage

        stages.append(plan_stage(PlanOptions(
            top=options.top, budget_s=options.explain_budget_s, statement_limit_ms=options.explain_statement_ms,
            analyze_dml=options.analyze_dml, queries_file=options.queries_file)))
    from queryaudit.advisor.stage import AdvisorOptions
    from queryaudit.advisor.stage import stage as advisor_stage

    advisor = options.advisor or AdvisorOptions()
    if advisor.enabled and "index advisor" not in names:
        stages.append(advisor_stage(dsn, options.limits, advisor))
    return stages


def live_snapshot(dsn: str, options: AuditOptions, progress=None) -> Snapshot:
    """Source 1: a live server, read in one read-only session."""
    collect = dataclasses.replace(options.collect, top=options.top, stages=build_stages(options, dsn))
    with session(dsn, options.limits) as conn:
        return collect_snapshot(conn, collect, progress)


collect_live = live_snapshot  # the name the advisor command and the tests know


def logs_only_snapshot(options: AuditOptions) -> Snapshot:
    """Source 3: server logs and nothing else; a missing log is an error, not an empty report."""
    from queryaudit.logs.reader import expand_paths
    from queryaudit.logs.stage import log_only_snapshot

    expand_paths(options.logs)
    return log_only_snapshot()


def open_source(dsn: str | None, snapshot_path: str | Path | None, options: AuditOptions, progress=None) -> Snapshot:
    """The snapshot to audit: the saved file (source 2) when given, the logs alone when no
    server is named, else the live server."""
    if snapshot_path is not None:
        return Snapshot.load(snapshot_path)
    from queryaudit.logs.stage import has_server_target

    if options.logs and not has_server_target(dsn):
        return logs_only_snapshot(options)
    from queryaudit.connect import resolve_dsn

    return live_snapshot(resolve_dsn(dsn), options, progress)


def attach_log_facts(snapshot: Snapshot, options: AuditOptions) -> None:
    """The log stages: statements and N+1 runs, then the lock waits the logs recorded."""
    if not options.logs:
        return
    from queryaudit.lock_log import attach_lock_log
    from queryaudit.logs.digest import DigestOptions
    from queryaudit.logs.stage import attach_logs

    attach_logs(snapshot, options.logs, options.log_line_prefix, DigestOptions(
        min_executions=options.n_plus_one_min_executions, min_run_ms=options.n_plus_one_min_run_ms))
    attach_lock_log(snapshot, options.logs, options.log_line_prefix)


def run_audit(snapshot: Snapshot, options: AuditOptions) -> AuditRun:
    """The one audit run: log facts, checks, report, redaction."""
    attach_log_facts(snapshot, options)
    report = analyse(snapshot, options.top)
    if options.redact:
        from queryaudit.redact import redact

        report = redact(report)
    return AuditRun(snapshot, report)


def audit(dsn: str | None, options: AuditOptions, snapshot_path: str | Path | None = None,
          progress=None) -> AuditRun:
    """open_source + run_audit: what `audit`, `fleet`, `check` and the demo each run."""
    return run_audit(open_source(dsn, snapshot_path, options, progress), options)


def analyse(snapshot: Snapshot, top: int = 20) -> dict:
    """Checks and report from a snapshot: pure, no database needed."""
    findings = run_checks(snapshot)
    return build_report(snapshot, findings, top)
