"""A hash join or hash aggregate that did not fit in memory and ran in batches on disk.

## What it detects
Hash nodes of EXPLAIN ANALYZE plans with `Hash Batches` > 1 (the hash table of a hash
join was split into batches written to temporary files), and HashAggregate nodes
(PostgreSQL 13+) with `HashAgg Batches` > 1 or `Disk Usage` > 0.

## Why it matters
A hash join in several batches writes both of its inputs to temporary files and reads
them back once per batch; a spilled hash aggregate re-reads its spilled groups. The
time goes to temp I/O. It often comes with a row underestimate: the planner sized the
hash table for fewer rows (see row-estimate-error).

## How to fix
More memory for this statement's hashes: `SET LOCAL work_mem` in its transaction, or
`hash_mem_multiplier` (13+: hashes may use work_mem x hash_mem_multiplier) for the role.
The estimate holds the peak memory times the number of batches; the audit measures
instead (queryaudit/verify): SET LOCAL work_mem raised until the hash runs in one
batch, the value the server then reports proposed, the statement timed with and
without it.

## Example
```sql
-- Hash  Buckets: 65536  Batches: 8  Memory Usage: 4065kB
SET LOCAL work_mem = '64MB';
```

## Thresholds
Every hash in more than one batch, or with disk usage. Severity follows the predicted
saving (the hash and its join's exclusive share of the statement x the statement's
share of total time).

## Known false positives
A hash over a very large input may be cheaper in batches than with gigabytes of
memory per session.
"""

from __future__ import annotations

from queryaudit.checks import declare
from queryaudit.checks._plans import (
    analyzed_plans,
    node_evidence,
    scoped_work_mem_sql,
    severity_for,
    table_for,
    work_mem_for,
    workload_spill_kb,
)
from queryaudit.findings import Finding
from queryaudit.snapshot import Snapshot

ID = "hash-spill"
TITLE = "Hash spilled to disk"
CHECK = declare(ID, TITLE, family="plan", fix="setting")


def spill(raw: dict) -> tuple[int, float] | None:
    """(batches, memory in kB to hold it all) when the node spilled, else None."""
    if raw.get("Node Type") == "Hash":
        batches = int(raw.get("Hash Batches") or 1)
        if batches > 1:
            return batches, float(raw.get("Peak Memory Usage") or 0) * batches
    elif raw.get("Node Type") == "Aggregate" and raw.get("Strategy") in ("Hashed", "Mixed"):
        batches = int(raw.get("HashAgg Batches") or 0)
        disk = float(raw.get("Disk Usage") or 0)
        if batches > 1 or disk > 0:
            return max(batches, 1), float(raw.get("Peak Memory Usage") or 0) + disk
    return None


def run(snapshot: Snapshot) -> list[Finding]:
    findings = []
    for captured in analyzed_plans(snapshot):
        for node in captured.plan.nodes:
            spilled = spill(node.raw)
            if spilled is None:
                continue
            batches, needed_kb = spilled
            # The batching cost shows in the join above the Hash as much as in the Hash.
            costly = [node] + ([node.parent] if node.node_type == "Hash" and node.parent else [])
            fraction = sum(captured.plan.share(n) for n in costly)
            saving = captured.saving(snapshot, fraction)
            table = next((t for t in (table_for(snapshot, n) for n in node.walk()) if t), None)
            work_mem = work_mem_for(max(needed_kb / 2, workload_spill_kb(snapshot, captured)))
            findings.append(
                Finding(
                    check=ID,
                    severity=severity_for(saving),
                    title=f"{node.label} ran in {batches} batches on disk",
                    table=table.qualified_name if table else None,
                    queryids=[captured.queryid],
                    fix_sql=scoped_work_mem_sql(work_mem),
                    advice=f"give this statement work_mem = {work_mem} (or raise hash_mem_multiplier for its role); "
                    "check the row estimate of the hashed input first",
                    predicted_saving=saving,
                    confidence="medium",
                    effort="config",
                    evidence={
                        **node_evidence(captured, node, snapshot),
                        "batches": batches,
                        "original_batches": node.raw.get("Original Hash Batches"),
                        "peak_memory_kb": node.raw.get("Peak Memory Usage"),
                        "disk_kb": node.raw.get("Disk Usage"),
                        "suggested_work_mem": work_mem,
                        "temp_blocks": node.temp_blocks,
                    },
                    key=f"{ID}|{captured.queryid}|{node.path}",
                )
            )
    return findings
