"""collect -> facts -> checks -> findings -> prioritise -> report: the audit in one place.

Every entry point (`audit`, `fleet`, `check`, the demo, `snapshot`, `advise-indexes`) builds
one AuditOptions and goes through here, so an option means the same everywhere:

- a source makes the Snapshot: a live server (`live_snapshot`, the collection stages from
  `build_stages`; it reads the logs in its "logs" stage, before plan capture, so the plans
  can use logged values), a saved snapshot file, or server logs alone (`open_source` picks);
- `run_audit` adds what the logs say (when the source did not read them already), runs the
  checks and builds the report (redacted when asked).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from queryaudit.advisor.stage import AdvisorOptions
from queryaudit.advisor.stage import stage as advisor_stage
from queryaudit.checks import run_checks
from queryaudit.collect import CollectOptions, collect_snapshot
from queryaudit.connect import SessionLimits, resolve_dsn, session
from queryaudit.estimates.stage import stage as estimates_stage
from queryaudit.locks.sampling import SampleOptions, sampling_stage
from queryaudit.logs.digest import DigestOptions
from queryaudit.logs.reader import expand_paths
from queryaudit.logs.stage import has_server_target, log_only_snapshot, read_logs
from queryaudit.n_plus_one import MIN_EXECUTIONS, ROUND_TRIP_MS
from queryaudit.plans.limits import DEFAULT_BUDGET_S, DEFAULT_STATEMENT_LIMIT_MS
from queryaudit.plans.stage import PlanOptions, plan_stage
from queryaudit.redact import redact
from queryaudit.report.model import build_report
from queryaudit.snapshot import Snapshot
from queryaudit.verify.index_sizing import stage as sizing_stage
from queryaudit.verify.stage import VerifyOptions
from queryaudit.verify.stage import stage as verify_stage


@dataclass
class AuditOptions:
    top: int = 20
    limits: SessionLimits = field(default_factory=SessionLimits)
    collect: CollectOptions = field(default_factory=CollectOptions)
    # Live lock sampling (queryaudit.locks.sampling): seconds of pg_stat_activity sampling; 0 = off.
    sample_seconds: float = 0.0
    sample_rate_hz: float = 10.0
    # Plan capture (queryaudit.plans.stage): EXPLAIN of the top statements.
    explain: bool = True
    explain_budget_s: float = DEFAULT_BUDGET_S
    explain_statement_ms: int = DEFAULT_STATEMENT_LIMIT_MS  # statement_timeout of one EXPLAIN ANALYZE
    analyze_dml: bool = False
    queries_file: str | Path | None = None
    # Index advisor (queryaudit.advisor), after plan capture; None = defaults, enabled=False = off.
    advisor: AdvisorOptions | None = None
    # Fix verification (queryaudit.verify), after plan capture, in what is left of the EXPLAIN budget;
    # None = defaults (on), enabled=False = off.
    verify: VerifyOptions | None = None
    # Server logs read with the audit (queryaudit.logs): statements, latency, N+1 runs, lock waits.
    # A live audit reads them before plan capture: logged values and auto_explain plans are
    # preferred to drawn ones, and the advisor sees statements found only in the log.
    logs: list[str | Path] = field(default_factory=list)
    log_line_prefix: str | None = None
    n_plus_one_min_executions: int = MIN_EXECUTIONS
    n_plus_one_min_run_ms: float = 0.0  # cost of one loop (round trips x round_trip_ms + server time) to report it
    round_trip_ms: float = ROUND_TRIP_MS  # what one round trip costs the application (N+1 in logs)
    log_jobs: int = 1  # big stderr logs read in this many parallel pieces (processes)
    # unused-index: days of index statistics before an index is called unused (snapshot.extras).
    unused_index_min_days: float = 7.0
    # Literals replaced in the report (queryaudit.redact).
    redact: bool = False

    def digest_options(self) -> DigestOptions:
        return DigestOptions(
            min_executions=self.n_plus_one_min_executions,
            min_run_ms=self.n_plus_one_min_run_ms,
            round_trip_ms=self.round_trip_ms,
        )


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
        stages.append(
            (
                "lock sampling",
                sampling_stage(SampleOptions(seconds=options.sample_seconds, rate_hz=options.sample_rate_hz)),
            )
        )
    if options.logs and "logs" not in names:
        stages.append(("logs", _log_stage(options)))
    if options.explain and "plans" not in names:
        stages.append(
            plan_stage(
                PlanOptions(
                    top=options.top,
                    budget_s=options.explain_budget_s,
                    statement_limit_ms=options.explain_statement_ms,
                    analyze_dml=options.analyze_dml,
                    queries_file=options.queries_file,
                )
            )
        )
    if options.explain and "estimate experiments" not in names:
        # Before fix verification: the statistics fix it tries follows the tested cause.
        stages.append(estimates_stage(options.explain_budget_s, options.explain_statement_ms))

    verify = options.verify or VerifyOptions()
    if options.explain and verify.enabled and "fix verification" not in names:
        stages.append(verify_stage(verify, options.explain_budget_s, options.explain_statement_ms, dsn, options.limits))

    advisor = options.advisor or AdvisorOptions()
    if advisor.enabled and "index advisor" not in names:
        stages.append(advisor_stage(dsn, options.limits, advisor))
        if options.explain and "index sizing" not in names:
            stages.append(sizing_stage())  # the proposals sized on the workload's own values
    return stages


def _log_stage(options: AuditOptions):
    def read(conn, snapshot: Snapshot) -> None:
        read_logs(snapshot, options.logs, options.log_line_prefix, options.digest_options(), jobs=options.log_jobs)

    return read


def live_snapshot(dsn: str, options: AuditOptions, progress=None) -> Snapshot:
    """Source 1: a live server, read in one read-only session (its "logs" stage reads options.logs)."""
    collect = dataclasses.replace(options.collect, top=options.top, stages=build_stages(options, dsn))
    with session(dsn, options.limits) as conn:
        return collect_snapshot(conn, collect, progress)


collect_live = live_snapshot  # the name the advisor command and the tests know


def logs_only_snapshot(options: AuditOptions) -> Snapshot:
    """Source 3: server logs and nothing else; a missing log is an error, not an empty report."""

    expand_paths(options.logs)
    return log_only_snapshot()


def open_source(dsn: str | None, snapshot_path: str | Path | None, options: AuditOptions, progress=None) -> Snapshot:
    """The snapshot to audit: the saved file (source 2) when given, the logs alone when no
    server is named, else the live server."""
    if snapshot_path is not None:
        return Snapshot.load(snapshot_path)

    if options.logs and not has_server_target(dsn):
        return logs_only_snapshot(options)

    return live_snapshot(resolve_dsn(dsn), options, progress)


def is_live(dsn: str | None, snapshot_path: str | Path | None, options: AuditOptions) -> bool:
    """Whether open_source reads a live server (whose "logs" stage has read the logs already)."""
    if snapshot_path is not None:
        return False

    return not (options.logs and not has_server_target(dsn))


def attach_log_facts(snapshot: Snapshot, options: AuditOptions) -> None:
    """The log stage of a source that is not a live server: statements, N+1 runs and the lock
    waits the logs recorded, in one read of each file."""
    if not options.logs:
        return

    read_logs(snapshot, options.logs, options.log_line_prefix, options.digest_options(), jobs=options.log_jobs)


def run_audit(snapshot: Snapshot, options: AuditOptions, logs_read: bool = False) -> AuditRun:
    """The one audit run: log facts (unless the live source's "logs" stage read them:
    `logs_read`), checks, report, redaction."""
    if not logs_read:
        attach_log_facts(snapshot, options)
    snapshot.extras["unused_index_min_days"] = options.unused_index_min_days
    report = analyse(snapshot, options.top)
    if options.redact:
        report = redact(report)
    return AuditRun(snapshot, report)


def audit(dsn: str | None, options: AuditOptions, snapshot_path: str | Path | None = None, progress=None) -> AuditRun:
    """open_source + run_audit: what `audit`, `fleet`, `check` and the demo each run."""
    return run_audit(
        open_source(dsn, snapshot_path, options, progress), options, logs_read=is_live(dsn, snapshot_path, options)
    )


def analyse(snapshot: Snapshot, top: int = 20) -> dict:
    """Checks and report from a snapshot: pure, no database needed."""
    findings = run_checks(snapshot)
    return build_report(snapshot, findings, top)
