"""Pagination by a large OFFSET: rows read, sorted and thrown away on every page.

## What it detects
Statements with an OFFSET clause that skip many rows:
- in an EXPLAIN ANALYZE plan, a Limit node whose input produced many more rows than it
  returned;
- an OFFSET written as a number of at least `MIN_SKIPPED_ROWS`;
- OFFSET $n in pg_stat_statements (the value is not kept) when the statement reads far
  more table pages per call than the rows it returns need: the rows skipped per call
  are estimated as pages read x rows per page - rows returned (confidence low).

## Why it matters
`OFFSET n` does not jump: PostgreSQL produces the first n rows and discards them. Page
1 000 of a listing reads 1 000 pages of rows; deep pages get slower linearly, and
crawlers or exports walk all of them.

## How to fix
Keyset (seek) pagination: remember the sort key of the last row shown and ask for the
rows after it, which an index on the sort key answers by reading only the page asked
for: `WHERE (created_at, id) < ($last_created_at, $last_id) ORDER BY created_at DESC,
id DESC LIMIT 20`. The audit generates that rewrite (sqlglot), reads the real last key
of the previous page and times the rewrite against the OFFSET form.

## Example
```sql
-- before: SELECT id, status, total FROM orders ORDER BY id LIMIT 20 OFFSET 50000;
SELECT id, status, total FROM orders WHERE id > $1 /* last id of the previous page */ ORDER BY id LIMIT 20;
```

## Thresholds
At least 1 000 rows skipped per execution in a plan or a literal (`MIN_SKIPPED_ROWS`);
at least 10 000 estimated from pages read (`MIN_ESTIMATED_SKIPPED_ROWS`). Severity
follows the predicted saving (the skipped share of the rows read x the statement's
share of total time).

## Known false positives
A statement that reads many pages per call for another reason (a filter on a column
without an index) can look like deep pagination in the estimate from pages read; the
plan-based evidence is exact.
"""

from __future__ import annotations

import re

from pglast import ast

from queryaudit.checks import declare
from queryaudit.checks._plans import captured_plans, severity_for, table_for
from queryaudit.findings import Finding, saving_from_share
from queryaudit.plans.model import PlanNode
from queryaudit.snapshot import Snapshot, Statement
from queryaudit.sql import parse, quote_ident, resolve_tables

ID = "large-offset"
TITLE = "Large OFFSET pagination"
MIN_SKIPPED_ROWS = 1000
MIN_ESTIMATED_SKIPPED_ROWS = 10_000
CHECK = declare(ID, TITLE, family="plan", fix="rewrite", thresholds=("MIN_SKIPPED_ROWS", "MIN_ESTIMATED_SKIPPED_ROWS"))


_OFFSET_WORD = re.compile(r"offset", re.I)


def offset_clause(query: str) -> tuple[bool, int | None, list[str]]:
    """(has OFFSET, its value when a number, the ORDER BY keys as written)."""
    if not _OFFSET_WORD.search(query):  # no parse for the many statements without the keyword
        return False, None, []
    stmts = parse(query)
    if not stmts or not isinstance(stmts[0].stmt, ast.SelectStmt):
        return False, None, []
    select = stmts[0].stmt
    if select.limitOffset is None:
        return False, None, []
    value = None
    node = select.limitOffset
    if isinstance(node, ast.A_Const) and hasattr(node.val, "ival"):
        value = int(node.val.ival)
    keys = []
    for sort in select.sortClause or ():
        if isinstance(sort.node, ast.ColumnRef):
            name = ".".join(quote_ident(f.sval) for f in sort.node.fields if isinstance(f, ast.String))
            descending = getattr(sort.sortby_dir, "name", "") == "SORTBY_DESC"
            keys.append((name, descending))
    return True, value, keys


def keyset_rewrite(keys: list[tuple[str, bool]]) -> str | None:
    if not keys or len({d for _, d in keys}) != 1:
        return None
    names = [k for k, _ in keys]
    op = "<" if keys[0][1] else ">"
    last = [f"$last_{n.split('.')[-1].strip(chr(34))}" for n in names]
    if len(names) == 1:
        return f"WHERE {names[0]} {op} {last[0]} ORDER BY {names[0]}{' DESC' if keys[0][1] else ''} LIMIT <page size>"
    return (
        f"WHERE ({', '.join(names)}) {op} ({', '.join(last)}) ORDER BY "
        f"{', '.join(n + (' DESC' if d else '') for n, d in keys)} LIMIT <page size>"
    )


def _limit_skips(node: PlanNode) -> float | None:
    if node.node_type != "Limit" or not node.children or node.actual_rows is None:
        return None
    produced = node.children[0].total_actual_rows or 0
    return max(0.0, produced - (node.total_actual_rows or 0)) / max(1.0, node.loops or 1)


def _scanned_table(snapshot: Snapshot, statement: Statement, nodes: list[PlanNode]):
    for node in nodes:
        table = table_for(snapshot, node)
        if table:
            return table
    names = resolve_tables(statement.query, snapshot.tables)
    return snapshot.table(names[0]) if len(names) == 1 else None


def run(snapshot: Snapshot) -> list[Finding]:
    findings = []
    plans = {c.queryid: c for c in captured_plans(snapshot)}
    for statement in snapshot.statements:
        has_offset, literal, keys = offset_clause(statement.query)
        if not has_offset:
            continue
        captured = plans.get(statement.queryid)
        evidence: dict = {"order_by": [k for k, _ in keys], "offset": literal}
        skipped = rows_read = None
        nodes: list[PlanNode] = []
        confidence = "high"
        if captured and captured.plan.analyzed:
            limits = [n for n in captured.plan.nodes if _limit_skips(n)]
            if limits:
                limit = max(limits, key=_limit_skips)
                skipped = _limit_skips(limit)
                rows_read = skipped + (limit.actual_rows or 0)
                nodes = list(limit.walk())
                evidence.update(
                    {
                        "source": "plan",
                        **limit.evidence(),
                        "rows_produced_below_limit": limit.children[0].total_actual_rows,
                    }
                )
        if skipped is None and literal is not None:
            skipped, rows_read = float(literal), float(literal) + statement.rows / max(1, statement.calls)
            evidence["source"] = "literal"
            confidence = "medium"
        if skipped is None and captured is not None:
            nodes = list(captured.plan.nodes)
        table = _scanned_table(snapshot, statement, nodes)
        if skipped is None and table is not None and statement.calls and table.relpages > 0:
            rows_per_page = max(1.0, table.reltuples / table.relpages)
            pages = (statement.shared_blks_hit + statement.shared_blks_read) / statement.calls
            returned = statement.rows / statement.calls
            estimate = pages * rows_per_page - returned
            if estimate >= MIN_ESTIMATED_SKIPPED_ROWS:
                skipped, rows_read = estimate, estimate + returned
                confidence = "low"
                evidence.update(
                    {
                        "source": "pg_stat_statements",
                        "pages_read_per_call": round(pages, 1),
                        "rows_per_page": round(rows_per_page, 1),
                        "rows_returned_per_call": round(returned, 1),
                    }
                )
        if skipped is None or skipped < MIN_SKIPPED_ROWS:
            continue
        fraction = skipped / rows_read if rows_read else 0.0
        saving = saving_from_share(statement.total_exec_time_ms, fraction, snapshot.total_exec_time_ms, statement.calls)
        rewrite = keyset_rewrite(keys)
        evidence.update(
            {"rows_skipped_per_call": round(skipped), "skipped_share": round(fraction, 4), "keyset_rewrite": rewrite}
        )
        findings.append(
            Finding(
                check=ID,
                severity=severity_for(saving),
                title=f"OFFSET pagination skips ~{skipped:,.0f} rows per call"
                + (f" on {table.qualified_name}" if table else ""),
                table=table.qualified_name if table else None,
                queryids=[statement.queryid],
                advice="paginate by key (keyset): " + (rewrite or "remember the last row's sort key and seek past it"),
                predicted_saving=saving,
                confidence=confidence,
                effort="application",
                evidence=evidence,
                key=f"{ID}|{statement.queryid}",
            )
        )
    return findings
