"""collect -> facts -> checks -> findings -> prioritise -> report: the audit in one place."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from queryaudit.checks import run_checks
from queryaudit.collect import CollectOptions, collect_snapshot
from queryaudit.collect.plans import DEFAULT_STATEMENT_LIMIT_MS
from queryaudit.connect import SessionLimits, session
from queryaudit.report.model import build_report
from queryaudit.snapshot import Snapshot

if TYPE_CHECKING:
    from queryaudit.advisor.stage import AdvisorOptions
    from queryaudit.verify.stage import VerifyOptions


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
    queries_file: str | None = None
    # Server logs (--log) read before plan capture: logged values and auto_explain plans
    # are preferred to drawn ones, and the advisor sees statements found only in the log.
    logs: list | None = None
    log_line_prefix: str | None = None
    log_options: object | None = None  # queryaudit.logs.digest.DigestOptions
    # Index advisor (queryaudit.advisor), after plan capture; None = defaults, enabled=False = off.
    advisor: "AdvisorOptions | None" = None
    # Fix verification (queryaudit.verify), after plan capture, in what is left of the EXPLAIN budget.
    verify: "VerifyOptions | None" = None


def collect_live(dsn: str, options: AuditOptions, progress=None) -> Snapshot:
    options.collect.top = options.top
    if options.sample_seconds > 0 and not any(name == "lock sampling" for name, _ in options.collect.stages):
        from queryaudit.collect.locks import SampleOptions, sampling_stage

        options.collect.stages.append(("lock sampling", sampling_stage(
            SampleOptions(seconds=options.sample_seconds, rate_hz=options.sample_rate_hz))))
    if options.logs and not any(name == "logs" for name, _ in options.collect.stages):
        from queryaudit.logs.stage import attach_logs

        options.collect.stages.append(("logs", lambda conn, snapshot: attach_logs(
            snapshot, options.logs, options.log_line_prefix, options.log_options)))
    if options.explain and not any(name == "plans" for name, _ in options.collect.stages):
        from queryaudit.collect.plans import PlanOptions, plan_stage

        options.collect.stages.append(plan_stage(PlanOptions(
            top=options.top, budget_s=options.explain_budget_s, statement_limit_ms=options.explain_statement_ms,
            analyze_dml=options.analyze_dml, queries_file=options.queries_file)))
    from queryaudit.verify.stage import VerifyOptions, stage as verify_stage

    verify = options.verify or VerifyOptions()
    if options.explain and verify.enabled and not any(name == "fix verification"
                                                      for name, _ in options.collect.stages):
        options.collect.stages.append(verify_stage(verify, options.explain_budget_s, options.explain_statement_ms,
                                                   dsn, options.limits))
    from queryaudit.advisor.stage import AdvisorOptions, stage as advisor_stage

    advisor = options.advisor or AdvisorOptions()
    if advisor.enabled and not any(name == "index advisor" for name, _ in options.collect.stages):
        options.collect.stages.append(advisor_stage(dsn, options.limits, advisor))
    with session(dsn, options.limits) as conn:
        return collect_snapshot(conn, options.collect, progress)


def analyse(snapshot: Snapshot, top: int = 20) -> dict:
    """Checks and report from a snapshot: pure, no database needed."""
    findings = run_checks(snapshot)
    return build_report(snapshot, findings, top)
