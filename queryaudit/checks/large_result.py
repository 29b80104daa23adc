"""A statement that sends the application a large result on every call.

## What it detects
Reading statements (SELECT, VALUES, WITH without writes) that return at least
`MIN_ROWS_PER_CALL` rows per call on average (pg_stat_statements' rows / calls). The
bytes per call are the captured plan's top-node row width (`Plan Width`, the planner's
average bytes of one output row) times the rows per call; without a plan they are not
given. A statement with a LIMIT is still reported when its rows per call reach the
threshold (the LIMIT is larger than any screen).

## Why it matters
Every row is produced, formatted, sent over the network and parsed by the driver;
with a default client cursor the whole result is also held in the application's memory
before the first row is used. The time shows in pg_stat_statements as the statement's
own, and no index makes it smaller: the work is proportional to the rows asked for.
A report that sorts 200,000 rows to show the first screen, or an export read in one
piece, can be the largest item of the database's time with nothing to tune in the plan.

## How to fix
Change what the application asks for:
- **paginate** what a person reads: keyset pagination, `WHERE (price, id) < ($1, $2)
  ORDER BY price DESC, id DESC LIMIT 50`, with an index on the sort key;
- **stream** what a program processes row by row: a server-side cursor (psycopg
  `conn.cursor(name="export")`, JDBC `setFetchSize`, SQLAlchemy `yield_per`), so memory
  stays flat and the first rows arrive at once; or `COPY (SELECT ...) TO STDOUT`;
- **aggregate in SQL** what the application reduces (counts, sums, the latest row per
  group): `GROUP BY`, window functions, `DISTINCT ON`, so a few rows come back.

## Example
```sql
-- before: every order line, sorted, on every call (200,000 rows, ~5 MB)
SELECT order_id, product_id, quantity, price FROM order_items ORDER BY price DESC, quantity, order_id;
-- a page at a time, by key
SELECT order_id, product_id, quantity, price FROM order_items
WHERE (price, order_id) < ($1, $2) ORDER BY price DESC, order_id DESC LIMIT 50;
-- or the figure the application computes from it
SELECT product_id, sum(quantity) AS quantity, sum(price * quantity) AS revenue FROM order_items GROUP BY product_id;
```

## Thresholds
At least `MIN_ROWS_PER_CALL` rows per call. Severity follows the statement's share of
total database time (the time at stake, not a predicted saving: how much a change of the
application saves depends on what it does with the rows): high from 10 %, medium from
2 %, low below. No saving is predicted, so the finding is listed among the notes, and the
report's first screen names the statement as one no fix covers.

## Known false positives
A batch job or an export that must read every row once is expected to be large; stream
it (server-side cursor, COPY) rather than page it. A statement whose result is small
per row but returned in many rows for a legitimate bulk API can be fine if it is rare:
the share of time decides its severity.
"""

from __future__ import annotations

from queryaudit.checks import declare
from queryaudit.checks._plans import captured_plans
from queryaudit.findings import Finding, Saving, severity_from_saving, size_text
from queryaudit.snapshot import Snapshot, Statement
from queryaudit.sql import resolve_tables, statement_kind

ID = "large-result"
TITLE = "Large result per call"
MIN_ROWS_PER_CALL = 10_000
CHECK = declare(ID, TITLE, family="workload", fix="application", thresholds=("MIN_ROWS_PER_CALL",))


def _row_width(snapshot: Snapshot, statement: Statement) -> int | None:
    for captured in captured_plans(snapshot):
        if captured.queryid == statement.queryid:
            width = captured.plan.root.raw.get("Plan Width")
            return int(width) if width is not None else None
    return None


def run(snapshot: Snapshot) -> list[Finding]:
    total = snapshot.total_exec_time_ms
    findings = []
    for s in snapshot.statements:
        if not s.calls or s.rows / s.calls < MIN_ROWS_PER_CALL or statement_kind(s.query) != "read":
            continue
        rows_per_call = s.rows / s.calls
        width = _row_width(snapshot, s)
        bytes_per_call = int(rows_per_call * width) if width is not None else None
        share = min(1.0, s.total_exec_time_ms / total) if total > 0 else 0.0
        tables = resolve_tables(s.query, snapshot.tables)
        size = f" (~{size_text(bytes_per_call)})" if bytes_per_call is not None else ""
        findings.append(
            Finding(
                check=ID,
                # The time at stake sets the severity; the finding predicts no saving.
                severity=severity_from_saving(Saving(share_of_total_time=share)),
                title=f"{rows_per_call:,.0f} rows{size} returned per call"
                + (f" from {', '.join(tables)}" if tables else "")
                + f": {share:.1%} of database time",
                table=tables[0] if len(tables) == 1 else None,
                queryids=[s.queryid],
                confidence="high",
                effort="application",
                advice=(
                    f"The application receives {rows_per_call:,.0f} rows{size} on each of {s.calls:,} calls. "
                    "Ask for less: paginate what a person reads (keyset: WHERE sort key < last seen ORDER BY "
                    "... LIMIT n), stream what a program processes (a server-side cursor, COPY ... TO STDOUT), "
                    "or aggregate in SQL what it reduces (GROUP BY, window functions) so that a few rows "
                    "come back."
                ),
                evidence={
                    "rows_per_call": round(rows_per_call, 1),
                    "calls": s.calls,
                    "row_width_bytes": width,
                    "bytes_per_call": bytes_per_call,
                    "share_of_total_time": round(share, 6),
                    "mean_exec_time_ms": round(s.mean_exec_time_ms, 3),
                    "query": s.query[:300],
                },
            )
        )
    return findings
