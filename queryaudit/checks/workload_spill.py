"""A statement that writes temporary files on its calls, proven by pg_stat_statements,
which no analyzed plan of it reproduces.

## What it detects
Statements whose pg_stat_statements counters show temp blocks written, at least
`MIN_TEMP_KB_PER_CALL` per call on average, while the plan the audit analyzed for
them shows no spill (or there is no analyzed plan: a generic plan, a plan skipped, a
statement outside `--top`, `--no-explain`). When the analyzed plan spills too,
`disk-sort` and `hash-spill` report the node instead.

## Why it matters
Temp blocks written are a sort, a hash or a materialisation that did not fit in
`work_mem` and went to disk: the server's own counters prove it happened in the
workload, whatever values the audit could try. The values the audit drew (a histogram
quantile, a common value) may select far fewer rows than the workload does, and a
sample that does not spill would hide it.

## How to fix
Give the statement more memory, sized on the workload's own spill: the temp blocks it
writes per call (x block size) x `MEMORY_FACTOR` (an in-memory sort or hash of narrow
rows needs up to four times its size on disk), rounded up to a power-of-two MB, scoped
with `SET LOCAL work_mem` or per role. Reproduce the values with `--log` (logged bind
values) or `--queries` so the audit can find the node and measure the fix.

## Example
```sql
-- pg_stat_statements: calls 5, temp_blks_written 7,290 (1,458 blocks, 11.4 MB per call)
SET LOCAL work_mem = '64MB';
```

## Thresholds
At least `MIN_TEMP_KB_PER_CALL` kB of temp blocks written per call. Confidence medium:
the counters prove the spill, but the node, and whether every call spills or a few
spill a lot, stay unknown. The saving is the temp I/O time's share of the statement
(`temp_blk_read_time` + `temp_blk_write_time`, 15+ with `track_io_timing`), else the
temp blocks' share of all the blocks the statement touched.

## Known false positives
Utility statements (CREATE INDEX, CLUSTER) are left out: they sort in
`maintenance_work_mem`. A few calls with a huge spill and many without look the same on average; temp blocks of
a materialised CTE or a cursor are not always a matter of `work_mem`.
"""

from __future__ import annotations

from queryaudit.checks import declare
from queryaudit.checks._plans import analyzed_plans, block_size, scoped_work_mem_sql, work_mem_for
from queryaudit.findings import Finding, saving_from_share, severity_from_saving
from queryaudit.plans.workload import temp_kb_per_call
from queryaudit.snapshot import Snapshot
from queryaudit.sql import statement_kind

ID = "workload-spill"
TITLE = "Temp files written by the workload (pg_stat_statements)"
MIN_TEMP_KB_PER_CALL = 256
MEMORY_FACTOR = 4
CHECK = declare(ID, TITLE, family="workload", fix="setting", thresholds=("MIN_TEMP_KB_PER_CALL", "MEMORY_FACTOR"))


def run(snapshot: Snapshot) -> list[Finding]:
    spilling_plans = {
        c.queryid
        for c in analyzed_plans(snapshot)
        if float((c.capture.plan.get("Plan") or {}).get("Temp Written Blocks") or 0) > 0
    }
    size = block_size(snapshot)
    findings = []
    for statement in snapshot.statements:
        kb = temp_kb_per_call(statement, size)
        if (
            kb < MIN_TEMP_KB_PER_CALL
            or statement.queryid in spilling_plans
            or statement_kind(statement.query) not in ("read", "dml")
        ):
            continue  # CREATE INDEX, CLUSTER, VACUUM sort in maintenance_work_mem, not work_mem
        capture = snapshot.plan_for(statement.queryid)
        timed = (statement.temp_blk_read_time_ms or 0.0) + (statement.temp_blk_write_time_ms or 0.0)
        if timed > 0 and statement.total_exec_time_ms > 0:
            share, share_source = min(1.0, timed / statement.total_exec_time_ms), "temp I/O time"
        else:
            temp = statement.temp_blks_written + statement.temp_blks_read
            touched = statement.shared_blks_hit + statement.shared_blks_read + temp
            share, share_source = (temp / touched if touched else 0.0), "temp blocks' share of the blocks touched"
        saving = saving_from_share(statement.total_exec_time_ms, share, snapshot.total_exec_time_ms, statement.calls)
        work_mem = work_mem_for(kb * MEMORY_FACTOR / 2)  # work_mem_for doubles
        why = _unreproduced(capture)
        findings.append(
            Finding(
                check=ID,
                severity=severity_from_saving(saving),
                title=f"Writes {kb:,.0f} kB of temp files per call (pg_stat_statements), {why}",
                queryids=[statement.queryid],
                fix_sql=scoped_work_mem_sql(work_mem),
                advice=(
                    f"give this statement work_mem = {work_mem}, sized on the workload's own spill "
                    f"({kb:,.0f} kB per call x {MEMORY_FACTOR}); to find the node and measure the fix, give the "
                    "audit the values the workload runs (--log with bind values, or --queries)"
                ),
                predicted_saving=saving,
                confidence="medium",
                effort="config",
                evidence={
                    "source": "pg_stat_statements",
                    "calls": statement.calls,
                    "temp_blks_written": statement.temp_blks_written,
                    "temp_blks_read": statement.temp_blks_read,
                    "temp_kb_per_call": round(kb, 1),
                    "block_size": size,
                    "suggested_work_mem": work_mem,
                    "saving_share_of_statement": round(share, 4),
                    "saving_from": share_source,
                    "plan_method": capture.method if capture else None,
                    "plan_parameters": capture.parameters if capture else None,
                    "confidence_reason": "the counters prove temp blocks written in the workload "
                    f"({statement.temp_blks_written:,} over {statement.calls:,} calls); "
                    f"{why}, so the spilling node and the saving are not measured",
                },
                key=f"{ID}|{statement.queryid}",
            )
        )
    return findings


def _unreproduced(capture) -> str:
    if capture is None:
        return "no plan of it was captured"
    if capture.method not in ("analyze", "analyze-rolled-back"):
        return f"its plan was not executed ({capture.method})"
    if capture.search_note:
        return "no value set tried reproduced the spill"
    return "the analyzed plan does not spill"
