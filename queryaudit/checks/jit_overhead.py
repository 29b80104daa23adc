"""JIT compilation takes a large part of a statement's execution time.

## What it detects
Statements whose EXPLAIN ANALYZE shows JIT time (generation, inlining, optimization,
emission) as a large share of the execution time, and statements whose
pg_stat_statements JIT time (15+) is a large share of their total time.

## Why it matters
PostgreSQL JIT-compiles a statement when its estimated cost exceeds `jit_above_cost`
(inlining and optimization above their own, higher, thresholds). For statements that
are costly on paper but quick in practice (often from overestimated rows), the
compilation costs more than it saves, on every execution.

## How to fix
Raise the thresholds (`jit_above_cost`, `jit_inline_above_cost`,
`jit_optimize_above_cost`) or turn JIT off for the role or database running these
statements; fix a row overestimate that inflates the cost. The audit measures it when
it has the statement's plan with values: `SET LOCAL jit = off`, timed against JIT on.

## Example
```sql
-- JIT: Functions: 12  Timing: Generation 1.2 ms, Inlining 40 ms, Optimization 60 ms, Emission 30 ms
ALTER ROLE app SET jit = off;
```

## Thresholds
JIT time >= 20 % of the execution time (`MIN_JIT_SHARE`) and >= 5 ms per execution
(`MIN_JIT_MS`). Severity follows the predicted saving (the JIT share of the statement x
the statement's share of total time).

## Known false positives
Long analytical statements can gain more from JIT than it costs, even if it shows up
large in a short test run.
"""

from __future__ import annotations

from queryaudit.checks import declare
from queryaudit.checks._plans import captured_plans, severity_for
from queryaudit.findings import Finding, saving_from_share
from queryaudit.snapshot import Snapshot

ID = "jit-overhead"
TITLE = "JIT compilation overhead"
MIN_JIT_SHARE = 0.20
MIN_JIT_MS = 5.0
FIX_SQL = (
    "-- for the role (or database) running these statements:\n"
    "ALTER ROLE <app_role> SET jit = off;\n"
    "-- or raise the threshold: ALTER ROLE <app_role> SET jit_above_cost = 1000000;"
)
CHECK = declare(ID, TITLE, family="plan", fix="setting", thresholds=("MIN_JIT_SHARE", "MIN_JIT_MS"))


def run(snapshot: Snapshot) -> list[Finding]:
    findings, seen = [], set()
    for captured in captured_plans(snapshot):
        plan = captured.plan
        jit_ms, exec_ms = plan.jit_ms, plan.execution_ms
        if not jit_ms or not exec_ms or jit_ms < MIN_JIT_MS or jit_ms < MIN_JIT_SHARE * exec_ms:
            continue
        share = min(1.0, jit_ms / exec_ms)
        saving = captured.saving(snapshot, share)
        seen.add(captured.queryid)
        findings.append(
            _finding(
                snapshot,
                captured.queryid,
                saving,
                share,
                {
                    "source": "plan",
                    "jit_ms": round(jit_ms, 3),
                    "execution_ms": round(exec_ms, 3),
                    "jit": plan.jit,
                    "total_cost": plan.root.total_cost,
                    "jit_above_cost": plan.settings.get("jit_above_cost")
                    or snapshot.server.settings.get("jit_above_cost"),
                },
            )
        )
    for statement in snapshot.statements:
        jit_total = statement.jit_total_time_ms
        if statement.queryid in seen or not jit_total or not statement.calls or not statement.total_exec_time_ms:
            continue
        per_call = jit_total / statement.calls
        share = min(1.0, jit_total / statement.total_exec_time_ms)
        if per_call < MIN_JIT_MS or share < MIN_JIT_SHARE:
            continue
        saving = saving_from_share(statement.total_exec_time_ms, share, snapshot.total_exec_time_ms, statement.calls)
        findings.append(
            _finding(
                snapshot,
                statement.queryid,
                saving,
                share,
                {
                    "source": "pg_stat_statements",
                    "jit_total_ms": round(jit_total, 3),
                    "jit_ms_per_call": round(per_call, 3),
                    "jit_functions": statement.jit_functions,
                },
            )
        )
    return findings


def _finding(snapshot, queryid, saving, share, evidence) -> Finding:
    return Finding(
        check=ID,
        severity=severity_for(saving),
        title=f"JIT compilation takes {share:.0%} of a statement's time",
        queryids=[queryid],
        fix_sql=FIX_SQL,
        advice="raise jit_above_cost (and the inline/optimize thresholds) or turn jit off for this workload",
        predicted_saving=saving,
        confidence="high" if evidence["source"] == "plan" else "medium",
        effort="config",
        evidence={**evidence, "jit_share": round(share, 4)},
        key=f"{ID}|{queryid}",
    )
