"""Fix verification as a collection stage: after plan capture, in the audit's read-only
session, inside what is left of the EXPLAIN budget.

The checks that propose a fix one can try without writing (disk-sort, hash-spill,
jit-overhead, large-offset, n-plus-one) run on the snapshot as collected so far; each
fix is then tried on the statement with the captured plan's own values, most promising
first, and the result stored as a FixMeasurement. Statistics fixes (CREATE STATISTICS,
ANALYZE) write the catalog: they are tried only with --verify-real, on a writable scratch
copy, inside a transaction that is rolled back; otherwise they are recorded unverified.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg

from queryaudit.checks import (
    disk_sort,
    hash_spill,
    jit_overhead,
    large_offset,
    n_plus_one,
    row_estimate_error,
)
from queryaudit.connect import SessionLimits, session
from queryaudit.findings import Finding
from queryaudit.snapshot import Snapshot
from queryaudit.verify.fixes import RUNS, Verifier, first_line
from queryaudit.verify.measure import BudgetExhausted, Runner
from queryaudit.verify.model import FixMeasurement, FixVerification


@dataclass
class VerifyOptions:
    enabled: bool = True
    verify_real: bool = False  # scratch/staging only: statistics fixes applied in a rolled-back transaction
    runs: int = RUNS


def _spill_findings(snapshot: Snapshot) -> dict[str, list[Finding]]:
    by_statement: dict[str, list[Finding]] = {}
    for f in disk_sort.run(snapshot) + hash_spill.run(snapshot):
        by_statement.setdefault(f.queryids[0], []).append(f)
    return by_statement


def _statistics_fix(f: Finding) -> bool:
    return (
        bool(f.fix_sql)
        and f.evidence.get("cause") in ("stale-statistics", "out-of-range", "correlated-columns", "expression")
        and "CONCURRENTLY" not in f.fix_sql
    )


def verify_fixes(runner: Runner, snapshot: Snapshot, options: VerifyOptions, real_conn=None) -> FixVerification:
    started = time.monotonic()
    result = FixVerification(budget_s=round(runner.remaining_ms() / 1000, 3), verify_real=real_conn is not None)
    verifier = Verifier(runner, snapshot, options, real_conn)
    # (heuristic saving, what it measures, job): most promising first.
    work: list[tuple[float, tuple[str, str, str, str], object]] = []
    seen_jit: set[str] = set()
    for queryid, found in _spill_findings(snapshot).items():
        lead = max(found, key=lambda f: f.saving_share)
        work.append(
            (
                lead.saving_share,
                (lead.id, lead.check, queryid, "work_mem"),
                lambda q=queryid, fs=found: verifier.work_mem(q, fs),
            )
        )
    for f in jit_overhead.run(snapshot):
        if f.queryids[0] not in seen_jit:  # from the plan, or from pg_stat_statements with a plan captured
            seen_jit.add(f.queryids[0])
            work.append(
                (f.saving_share, (f.id, f.check, f.queryids[0], "jit"), lambda f=f: verifier.jit(f.queryids[0], f))
            )
    for f in large_offset.run(snapshot):
        work.append(
            (f.saving_share, (f.id, f.check, f.queryids[0], "keyset"), lambda f=f: verifier.offset(f.queryids[0], f))
        )
    for f in n_plus_one.from_statements(snapshot):
        work.append((f.saving_share, (f.id, f.check, f.queryids[0], "batch"), lambda f=f: verifier.batch(f)))
    for f in row_estimate_error.run(snapshot):
        if _statistics_fix(f):
            work.append(
                (
                    f.saving_share,
                    (f.id, f.check, f.queryids[0], "statistics"),
                    lambda f=f: verifier.statistics(f.queryids[0], f),
                )
            )
    work.sort(key=lambda w: -w[0])

    def unmeasured(item, detail: str) -> FixMeasurement:
        finding_id, check, queryid, kind = item
        return FixMeasurement(
            finding_id=finding_id, check=check, queryid=queryid, kind=kind, method="none", detail=detail
        )

    for n, (_, what, job) in enumerate(work):
        try:
            result.measurements.append(job())
        except (BudgetExhausted, psycopg.Error) as exc:
            if isinstance(exc, psycopg.Error) and (runner.conn.broken or runner.conn.closed):
                raise
            # A cancel at the budget's deadline can surface as the next statement's error in
            # the transaction it aborted: with no budget left, any error is the budget's.
            if isinstance(exc, psycopg.Error) and runner.remaining_ms() > 100:
                if isinstance(exc, psycopg.errors.QueryCanceled):  # its own per-statement limit
                    detail = f"not measured: a run hit the per-statement limit ({first_line(exc)})"
                else:  # kept, unmeasured: the fix stays in the report with its heuristic saving and why
                    result.notes.append(f"a measurement failed: {first_line(exc)}")
                    detail = f"not measured: {first_line(exc)}"
                result.measurements.append(unmeasured(what, detail))
                continue
            result.notes.append(
                "the EXPLAIN budget ran out: the remaining fixes are not measured (raise --explain-budget)"
            )
            result.measurements += [
                unmeasured(item, "not measured: the EXPLAIN budget ran out before it (raise --explain-budget)")
                for _, item, _ in work[n:]
            ]
            break
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            # A shape this code did not foresee: that fix stays unmeasured, the others go on.
            result.notes.append(f"a measurement failed: {type(exc).__name__}: {exc}")
    result.duration_ms = round((time.monotonic() - started) * 1000, 1)
    return result


def _budget_left(snapshot: Snapshot, budget_s: float) -> float:
    """What plan capture and the estimate experiments left of the EXPLAIN budget (both record durations)."""
    used = (
        sum((p.duration_ms or 0.0) for p in snapshot.plans) + sum(e.duration_ms for e in snapshot.estimate_experiments)
    ) / 1000
    return max(0.0, budget_s - used)


def run_stage(
    conn: psycopg.Connection,
    snapshot: Snapshot,
    options: VerifyOptions,
    budget_s: float,
    statement_limit_ms: int,
    dsn: str | None = None,
    limits: SessionLimits | None = None,
) -> None:
    runner = Runner(conn, time.monotonic() + _budget_left(snapshot, budget_s), statement_limit_ms)
    if options.verify_real and dsn is not None and not snapshot.server.in_recovery:
        with session(dsn, limits or SessionLimits(), read_only=False) as real_conn:
            snapshot.fix_verification = verify_fixes(runner, snapshot, options, real_conn)
    else:
        snapshot.fix_verification = verify_fixes(runner, snapshot, options)
    done = snapshot.fix_verification
    outcomes: dict[str, int] = {}
    for m in done.measurements:
        outcomes[m.outcome] = outcomes.get(m.outcome, 0) + 1
    snapshot.extras["fix_verification"] = {
        "budget_s": done.budget_s,
        "duration_ms": done.duration_ms,
        "verify_real": done.verify_real,
        "outcomes": outcomes,
        "notes": done.notes,
    }


def stage(
    options: VerifyOptions,
    budget_s: float,
    statement_limit_ms: int,
    dsn: str | None = None,
    limits: SessionLimits | None = None,
):
    """(name, fn(conn, snapshot)) for CollectOptions.stages; after the plans stage."""
    return "fix verification", lambda conn, snapshot: run_stage(
        conn, snapshot, options, budget_s, statement_limit_ms, dsn, limits
    )
