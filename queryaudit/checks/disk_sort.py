"""A sort that spilled to disk (external merge) because it did not fit in work_mem.

## What it detects
Sort and Incremental Sort nodes of captured EXPLAIN ANALYZE plans whose sort method is
`external merge` / `external sort` (`Sort Space Type: Disk`), in the leader or in any
parallel worker.

## Why it matters
A sort that does not fit in `work_mem` writes runs to temporary files and merges them
back: the time goes to temp I/O instead of comparing rows, and the statement competes
for disk bandwidth with everything else. pg_stat_statements shows it as
`temp_blks_written`.

## How to fix
Give this statement more memory, scoped to it: `SET LOCAL work_mem` inside its
transaction (or `ALTER ROLE ... SET work_mem` for the role that runs it) rather than a
server-wide increase, since every sort and hash of every session may use that much.
The estimate is twice the spilled size, rounded up; an in-memory sort of narrow rows
can need three times it, so the audit measures instead (queryaudit/verify): it raises
`work_mem` with SET LOCAL from the spilled size until the sort runs in memory, proposes
the in-memory size the server then reports (plus 10 %), and times the statement with
and without it. A fix that removes the spill without making the statement faster is a
low-severity note. When the sort reads one
table and has no expressions, an index on the sort keys can give the order without
sorting (most useful with a LIMIT).

## Example
```sql
-- Sort Method: external merge  Disk: 7264kB
SET LOCAL work_mem = '16MB';
-- or: CREATE INDEX CONCURRENTLY ON public.order_items (price DESC, quantity, order_id);
```

## Thresholds
Every sort that used disk is reported. Severity follows the predicted saving (the sort
node's exclusive share of its statement x the statement's share of total time):
high from 10 % of total database time, medium from 2 %.

## Known false positives
A one-off report sorting millions of rows may be better left on disk than given
gigabytes of memory; the index suggestion costs writes on the table.
"""

from __future__ import annotations

from queryaudit.checks import declare
from queryaudit.checks._plans import (
    analyzed_plans,
    node_evidence,
    qualified,
    scoped_work_mem_sql,
    severity_for,
    table_for,
    work_mem_for,
    workload_spill_kb,
)
from queryaudit.findings import Finding
from queryaudit.snapshot import Snapshot
from queryaudit.sql import quote_ident

ID = "disk-sort"
TITLE = "Sort spilled to disk"
CHECK = declare(ID, TITLE, family="plan", fix="setting")


def disk_kilobytes(raw: dict) -> float:
    """Disk used by a sort, in kB: the node's own, the parallel workers', or the
    Incremental Sort groups' (which report it per group kind)."""
    total = 0.0
    if raw.get("Sort Space Type") == "Disk" or "external" in str(raw.get("Sort Method", "")):
        total += float(raw.get("Sort Space Used") or 0)
    for worker in raw.get("Workers") or []:
        if worker.get("Sort Space Type") == "Disk" or "external" in str(worker.get("Sort Method", "")):
            total += float(worker.get("Sort Space Used") or 0)
    for groups in ("Full-sort Groups", "Pre-sorted Groups"):
        disk = (raw.get(groups) or {}).get("Sort Space Disk") or {}
        total += float(disk.get("Peak Sort Space Used") or 0)
    return total


def _index_for_order(snapshot, node) -> tuple[str | None, list[str]]:
    """CREATE INDEX giving the sort's order, when the sort reads one plain table scan."""
    child = node.children[0] if node.children else None
    keys = node.raw.get("Sort Key") or []
    if child is None or child.node_type not in ("Seq Scan", "Parallel Seq Scan") or not keys:
        return None, []
    table = table_for(snapshot, child)
    if table is None:
        return None, []
    names = {c.name for c in table.columns}
    parts, columns = [], []
    for key in keys:
        words = key.split()
        column = words[0].split(".")[-1].strip('"')
        if column not in names or any(w not in ("DESC", "ASC", "NULLS", "FIRST", "LAST") for w in words[1:]):
            return None, []
        parts.append(" ".join([quote_ident(column), *words[1:]]))
        columns.append(column)
    return f"CREATE INDEX CONCURRENTLY ON {qualified(table)} ({', '.join(parts)});", columns


def run(snapshot: Snapshot) -> list[Finding]:
    findings = []
    for captured in analyzed_plans(snapshot):
        for node in captured.plan.nodes:
            if node.node_type not in ("Sort", "Incremental Sort"):
                continue
            spilled_kb = disk_kilobytes(node.raw)
            if spilled_kb <= 0:
                continue
            table = None
            for below in node.walk():
                table = table_for(snapshot, below)
                if table:
                    break
            index_sql, index_columns = _index_for_order(snapshot, node)
            # The workload's own temp blocks per call when this sample spilled much less.
            work_mem = work_mem_for(max(spilled_kb, workload_spill_kb(snapshot, captured)))
            saving = captured.saving(snapshot, captured.plan.share(node))
            current = captured.plan.settings.get("work_mem") or snapshot.server.settings.get("work_mem")
            advice = f"give this statement work_mem = {work_mem} (scoped: SET LOCAL in its transaction, or per role)"
            if index_sql:
                advice += f"; or an index giving the order: {index_sql}"
            findings.append(
                Finding(
                    check=ID,
                    severity=severity_for(saving),
                    title=f"Sort spilled {spilled_kb:,.0f} kB to disk"
                    + (f" sorting {table.qualified_name}" if table else ""),
                    table=table.qualified_name if table else None,
                    columns=index_columns,
                    queryids=[captured.queryid],
                    fix_sql=scoped_work_mem_sql(work_mem),
                    advice=advice,
                    predicted_saving=saving,
                    confidence="high",
                    effort="config",
                    evidence={
                        **node_evidence(captured, node, snapshot),
                        "sort_method": node.raw.get("Sort Method"),
                        "sort_key": node.raw.get("Sort Key"),
                        "disk_kb": spilled_kb,
                        "work_mem": current,
                        "suggested_work_mem": work_mem,
                        "temp_blocks": node.temp_blocks,
                        "index_sql": index_sql,
                    },
                    key=f"{ID}|{captured.queryid}|{node.path}",
                )
            )
    return findings
