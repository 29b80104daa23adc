"""Parallel workers planned but not launched: the plan ran with fewer processes than it was costed for.

## What it detects
Gather and Gather Merge nodes of EXPLAIN ANALYZE plans with `Workers Launched` below
`Workers Planned`.

## Why it matters
The planner chose a parallel plan assuming its workers would share the work. Workers
come from a pool (`max_parallel_workers`, itself within `max_worker_processes`); when
it is exhausted by other sessions, the statement runs with fewer workers or with the
leader alone, slower than planned, and sometimes slower than a serial plan would be.

## How to fix
Raise `max_parallel_workers` (and `max_worker_processes`, which needs a restart) if the
server has idle cores; or lower `max_parallel_workers_per_gather` so concurrent
statements share the pool more evenly.

## Example
```sql
-- Gather  Workers Planned: 4  Workers Launched: 0
ALTER SYSTEM SET max_parallel_workers = 8;  -- within max_worker_processes
SELECT pg_reload_conf();
```

## Thresholds
Any Gather with fewer workers launched than planned. Severity follows the predicted
saving: the part of the Gather's time the missing workers would have shared, x the
statement's share of total time.

## Known false positives
A single EXPLAIN ANALYZE run during a burst of parallel queries; look at
pg_stat_statements' parallel_workers_to_launch / parallel_workers_launched (18+) for the
long-run picture.
"""

from __future__ import annotations

from queryaudit.checks import declare
from queryaudit.checks._plans import analyzed_plans, node_evidence, severity_for
from queryaudit.findings import Finding
from queryaudit.snapshot import Snapshot

ID = "parallel-workers-not-launched"
TITLE = "Parallel workers planned but not launched"
CHECK = declare(ID, TITLE, family="plan", fix="setting")


def run(snapshot: Snapshot) -> list[Finding]:
    findings = []
    for captured in analyzed_plans(snapshot):
        for node in captured.plan.nodes:
            if node.node_type not in ("Gather", "Gather Merge"):
                continue
            planned = int(node.raw.get("Workers Planned") or 0)
            launched = node.raw.get("Workers Launched")
            if launched is None or int(launched) >= planned:
                continue
            launched = int(launched)
            # With the leader, planned+1 processes were to share the work; launched+1 did.
            lost = 1 - (launched + 1) / (planned + 1)
            saving = captured.saving(snapshot, captured.plan.subtree_share(node) * lost)
            settings = {
                k: captured.plan.settings.get(k) or snapshot.server.settings.get(k)
                for k in ("max_parallel_workers", "max_worker_processes", "max_parallel_workers_per_gather")
            }
            statement = captured.statement
            findings.append(
                Finding(
                    check=ID,
                    severity=severity_for(saving),
                    title=f"{node.label}: {launched} of {planned} planned parallel workers launched",
                    queryids=[captured.queryid],
                    fix_sql="ALTER SYSTEM SET max_parallel_workers = <more, within max_worker_processes>;\n"
                    "SELECT pg_reload_conf();",
                    advice="the parallel worker pool was exhausted: raise max_parallel_workers (and "
                    "max_worker_processes) or lower max_parallel_workers_per_gather",
                    predicted_saving=saving,
                    confidence="medium",
                    effort="config",
                    evidence={
                        **node_evidence(captured, node, snapshot),
                        "workers_planned": planned,
                        "workers_launched": launched,
                        "settings": settings,
                        "pgss_workers_to_launch": statement.parallel_workers_to_launch,
                        "pgss_workers_launched": statement.parallel_workers_launched,
                    },
                    key=f"{ID}|{captured.queryid}|{node.path}",
                )
            )
    return findings
