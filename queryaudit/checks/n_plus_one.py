"""A statement executed once per row of another: a loop of single-row lookups (N+1).

## What it detects
A child statement that looks up one table by equality on a key or a foreign key
(`SELECT ... FROM customers WHERE id = $1`), returning few rows per call, executed once
per row another statement (the parent) returned. Three sources find it:

- **pg_stat_statements**: the child's calls are a large multiple of the parent's calls
  and roughly equal to the rows the parent returned in total; parent and child are
  linked by a foreign key (or the parent returns the looked-up column). Statements with
  `toplevel = false` (14+, `pg_stat_statements.track = all`) are loops inside functions.
- **server logs** (`--log`, with `log_min_duration_statement = 0`): runs of `MIN_EXECUTIONS`
  executions of one fingerprint in a row in one session (at most 3 other statements
  between two of them) with different parameters, when
  the loop comes back in another transaction or request, and the statement that
  preceded them (the parent). What a loop costs is its round trips (each one a wait for
  the application, which the server's time leaves out) plus the server's time.
- **application capture** (`queryaudit.capture`, in tests or middleware): the ORM's own
  lazy loads (Django, SQLAlchemy sync and async), as nplusone and Bullet see them: a
  relation loaded lazily on rows of a multi-row result, from one line, at least twice in
  one unit of work (a request, a test, a `query_budget()` block), with the exact
  eager-load fix; raw driver loops are found as runs, like the logs.

## Why it matters
Each lookup is cheap for the server, but the loop pays a network round trip, a parse
and bind, and an executor start-up per row: a page that shows 40 orders sends 41
statements. Latency grows with the page size and the round-trip time (a replica in
another zone multiplies it), and the per-statement overhead dominates the database's
own time for these statements.

## How to fix
Fetch the children in one statement per parent: `WHERE id = ANY($1)` with the list of
keys the parent returned, or a join with the parent. With SQLAlchemy, load the
relationship eagerly: `selectinload(Order.customer)` (collections) or
`joinedload(Order.customer)` (many-to-one). Inside a PL/pgSQL function, replace the
`FOR ... LOOP` of lookups by one set-based statement. The finding's evidence carries
the batched statement and the join, generated from the two statements' syntax trees;
the audit times the batch (`= ANY($1)` with real keys) against the N single lookups.

## Example
```sql
-- before: once per order
SELECT id, email, city FROM customers WHERE id = $1;
-- after: once per page
SELECT id, email, city FROM customers WHERE id = ANY($1);
```

## Thresholds
pg_stat_statements: child calls >= `MIN_CHILD_CALLS` (20), calls per parent call >=
`MIN_CALLS_PER_PARENT` (5), child calls within `ROWS_TOLERANCE` (50%) of the parent's
rows, at most `MAX_ROWS_PER_CALL` (10) rows per child call. Logs: a run of
`MIN_EXECUTIONS` (5) executions in a row, in at least `MIN_REPEATS` (2) transactions or
requests (`--n-plus-one-min-executions`; `--n-plus-one-min-ms` drops loops that cost
less). Severity follows the one scale of predicted saving (high from 10 % of database
time, medium from 2 %), medium at least from `MEDIUM_ROUND_TRIPS` round trips saved; for
logs also the latency a loop adds to its request: round trips x `--round-trip-ms`
(default `ROUND_TRIP_MS`, 0.5 ms) plus the server's time, high from `HIGH_LOOP_MS` (100 ms), medium from
`MEDIUM_LOOP_MS` (10 ms). A cheap loop stays low, and is still reported. Capture:
`MIN_LAZY_LOADS` (2) lazy loads of one relation from one line, or a run of
`MIN_EXECUTIONS` raw statements.

## Known false positives
Two unrelated statements whose call counts happen to line up; the foreign-key link
between them makes that unlikely, and confidence is lower without one. A loop that
is bounded by design (a handful of rows, always) costs little: the severity stays low.
"""

from __future__ import annotations

import math

from queryaudit.checks import declare
from queryaudit.findings import Finding, Saving, saving_from_share, severity_from_saving
from queryaudit.n_plus_one import MIN_EXECUTIONS, MIN_LAZY_LOADS, MIN_REPEATS, ROUND_TRIP_MS  # noqa: F401 (declared below)
from queryaudit.n_plus_one.shape import Lookup, batched_rewrite, join_rewrite, lookup_shape, output_columns
from queryaudit.snapshot import Snapshot, Statement
from queryaudit.sql import fingerprint, resolve_tables

ID = "n-plus-one"
TITLE = "N+1 query loop"

MIN_CHILD_CALLS = 20
MIN_CALLS_PER_PARENT = 5.0
ROWS_TOLERANCE = 0.5
MAX_ROWS_PER_CALL = 10.0
# Of a child's own execution time, what batching removes when each call is a cheap
# index probe (per-call executor overhead); a scan per call is removed almost entirely.
PROBE_OVERHEAD_SHARE = 0.5
MEDIUM_ROUND_TRIPS = 10_000
# Logs: latency one loop adds to its request (round trips x round-trip time + server time saved).
HIGH_LOOP_MS, MEDIUM_LOOP_MS = 100.0, 10.0
CHECK = declare(
    ID,
    TITLE,
    family="workload",
    fix="rewrite",
    thresholds=(
        "MIN_CHILD_CALLS",
        "MIN_CALLS_PER_PARENT",
        "ROWS_TOLERANCE",
        "MAX_ROWS_PER_CALL",
        "PROBE_OVERHEAD_SHARE",
        "MEDIUM_ROUND_TRIPS",
        "HIGH_LOOP_MS",
        "MEDIUM_LOOP_MS",
        "MIN_EXECUTIONS",
        "MIN_REPEATS",
        "ROUND_TRIP_MS",
        "MIN_LAZY_LOADS",
    ),
)


def _key_kind(snapshot: Snapshot, table: str, columns: list[str]) -> str | None:
    cols = set(columns)
    for index in snapshot.indexes_of(table):
        if (
            index.is_unique
            and index.is_valid
            and index.predicate is None
            and index.columns
            and set(index.columns) <= cols
        ):
            return "primary key" if index.is_primary else "unique key"
    for fk in snapshot.foreign_keys:
        if fk.table == table and set(fk.columns) == cols:
            return "foreign key"
    return None


def _link(snapshot: Snapshot, parent: Statement, table: str, shape: Lookup) -> tuple[str, str] | None:
    """(parent output column, child lookup column) when the parent returns the key the child
    looks up: through a foreign key either way, or by the same column name."""
    outputs = output_columns(parent.query)
    parent_tables = resolve_tables(parent.query, snapshot.tables)
    if len(shape.columns) != 1 or not outputs:
        return None
    column = shape.columns[0]
    for fk in snapshot.foreign_keys:
        if len(fk.columns) != 1:
            continue
        # parent row -> its referenced child (orders.customer_id -> customers.id)
        if (
            fk.ref_table == table
            and fk.ref_columns == [column]
            and fk.table in parent_tables
            and fk.columns[0] in outputs
        ):
            return fk.columns[0], column
        # parent row -> the children referencing it (authors.id <- books.author_id)
        if (
            fk.table == table
            and fk.columns == [column]
            and fk.ref_table in parent_tables
            and fk.ref_columns[0] in outputs
        ):
            return fk.ref_columns[0], column
    if column in outputs and table not in parent_tables:
        return column, column
    return None


def _best_parent(snapshot: Snapshot, child: Statement, table: str, shape: Lookup):
    best, best_score = None, None
    for parent in snapshot.statements:
        if parent is child or parent.calls <= 0:
            continue
        if child.toplevel is not None and parent.toplevel is not None and parent.toplevel != child.toplevel:
            continue
        if child.calls / parent.calls < MIN_CALLS_PER_PARENT:
            continue
        link = _link(snapshot, parent, table, shape)
        if parent.rows == 0 and parent.toplevel is False:
            # A PL/pgSQL FOR loop reads its query through a cursor: pg_stat_statements counts
            # no rows for it, so only the key link can pair them.
            if link is None:
                continue
            closeness = 1 + ROWS_TOLERANCE
        elif parent.rows <= 0:
            continue
        else:
            closeness = child.calls / parent.rows
        if not (1 / (1 + ROWS_TOLERANCE) <= closeness <= 1 + ROWS_TOLERANCE):
            continue
        score = (link is not None, -abs(math.log(closeness)), parent.total_exec_time_ms)
        if best_score is None or score > best_score:
            best, best_score = (parent, link), score
    return best


def _fraction_removed(child: Statement, parent_calls: int) -> float:
    remaining = parent_calls / child.calls if child.calls else 1.0
    blocks_per_call = (child.shared_blks_hit + child.shared_blks_read) / child.calls if child.calls else 0
    rows_per_call = child.rows / child.calls if child.calls else 0
    scan_per_call = blocks_per_call > 10 * max(1.0, rows_per_call) + 5
    return (1 - remaining) if scan_per_call else (1 - remaining) * PROBE_OVERHEAD_SHARE


def _severity(share: float, round_trips: int) -> str:
    # Round trips cost the application latency the database time does not show: medium at least.
    return severity_from_saving(Saving(share), floor="medium" if round_trips >= MEDIUM_ROUND_TRIPS else "low")


def _log_severity(share: float, saved_per_run_ms: float) -> str:
    """A loop in the log: by the database time it takes (the one scale), or by the latency one
    loop adds to its request (round trips included), whichever is higher."""
    floor = "high" if saved_per_run_ms >= HIGH_LOOP_MS else "medium" if saved_per_run_ms >= MEDIUM_LOOP_MS else "low"
    return severity_from_saving(Saving(share), floor=floor)


def _statement_evidence(s: Statement) -> dict:
    return {
        "queryid": s.queryid,
        "query": s.query,
        "calls": s.calls,
        "rows": s.rows,
        "total_exec_time_ms": round(s.total_exec_time_ms, 3),
        "mean_exec_time_ms": round(s.mean_exec_time_ms, 4),
        "toplevel": s.toplevel,
    }


def rewrites(
    child_query: str, shape: Lookup, table: str, parent_query: str | None, link: tuple[str, str] | None
) -> dict:
    out = {}
    if len(shape.columns) == 1:
        batched = batched_rewrite(child_query, shape.columns[0])
        if batched:
            out["batched_query"] = batched
    if parent_query and link:
        joined = join_rewrite(parent_query, link[0], shape, table, link[1])
        if joined:
            out["join_query"] = joined
    return out


def _advice(shape: Lookup, in_function: bool, rewritten: dict) -> str:
    if in_function:
        return (
            "The lookups run in a loop inside a function (toplevel = false): replace the FOR ... LOOP by one "
            "set-based statement joining the two tables."
        )
    how = (
        f"`WHERE {shape.columns[0]} = ANY($1)` with the keys the parent returned"
        if len(shape.columns) == 1
        else "a join with the parent"
    )
    return (
        f"Fetch the rows of {shape.table} once per parent statement: {how} (evidence.batched_query"
        f"{', evidence.join_query' if 'join_query' in rewritten else ''}); with an ORM, load the relationship "
        "eagerly (SQLAlchemy selectinload / joinedload)."
    )


def from_statements(snapshot: Snapshot) -> list[Finding]:
    findings = []
    for child in snapshot.statements:
        if child.calls < MIN_CHILD_CALLS or child.rows / child.calls > MAX_ROWS_PER_CALL:
            continue
        shape = lookup_shape(child.query)
        if shape is None:
            continue
        tables = resolve_tables(child.query, snapshot.tables)
        if len(tables) != 1:
            continue
        table = tables[0]
        key_kind = _key_kind(snapshot, table, shape.columns)
        if key_kind is None:
            continue
        best = _best_parent(snapshot, child, table, shape)
        in_function = child.toplevel is False
        if best is None and not in_function:
            continue
        parent, link = best if best else (None, None)
        parent_calls = parent.calls if parent else max(1, child.calls // 100)
        fraction = _fraction_removed(child, parent_calls)
        saving = saving_from_share(child.total_exec_time_ms, fraction, snapshot.total_exec_time_ms, child.calls)
        round_trips = child.calls - parent_calls
        rewritten = rewrites(child.query, shape, table, parent.query if parent else None, link)
        per_parent = child.calls / parent.calls if parent else None
        where = " inside a function" if in_function else ""
        title = f"N+1{where}: {child.calls} lookups of {table} by {', '.join(shape.columns)} ({key_kind})" + (
            f", {per_parent:.0f} per execution of another statement" if per_parent else ""
        )
        evidence = {
            "source": ["pg_stat_statements"],
            "key_kind": key_kind,
            "child": _statement_evidence(child),
            "parent": _statement_evidence(parent) if parent else None,
            "calls_per_parent_call": round(per_parent, 2) if per_parent else None,
            "child_calls_per_parent_row": round(child.calls / parent.rows, 3) if parent and parent.rows else None,
            "linked_by": ({"parent_column": link[0], "child_column": link[1]} if link else None),
            "round_trips_saved": round_trips,
            "fraction_of_child_time_removed": round(fraction, 3),
            **rewritten,
        }
        findings.append(
            Finding(
                check=ID,
                severity=_severity(saving.share_of_total_time, round_trips),
                title=title,
                table=table,
                columns=list(shape.columns),
                queryids=[child.queryid] + ([parent.queryid] if parent else []),
                advice=_advice(shape, in_function, rewritten),
                predicted_saving=saving,
                confidence="high" if link else ("medium" if parent else "low"),
                effort="application",
                evidence=evidence,
                key=f"{table}|{fingerprint(child.query) or child.queryid}",
            )
        )
    return findings


def _log_table(snapshot: Snapshot, query: str, shape: Lookup) -> str:
    tables = resolve_tables(query, snapshot.tables) if snapshot.tables else []
    return tables[0] if len(tables) == 1 else f"{shape.schema or 'public'}.{shape.table}"


def _same_child(finding: Finding, pattern) -> bool:
    child = finding.evidence.get("child") or {}
    if pattern.queryid and child.get("queryid") == pattern.queryid:
        return True
    return fingerprint(child.get("query") or "") == pattern.fingerprint


def from_logs(snapshot: Snapshot, findings: list[Finding]) -> list[Finding]:
    logs = snapshot.logs
    if logs is None:
        return []
    out = []
    for pattern in logs.n_plus_one:
        shape = lookup_shape(pattern.query)
        evidence = {
            "runs": pattern.runs,
            "executions": pattern.executions,
            "total_ms": round(pattern.total_ms, 3),
            "longest_run": pattern.max_run,
            "example_session": pattern.example_session,
            "example_parameters": pattern.example_parameters,
            "first_seen": pattern.first_seen,
            "last_seen": pattern.last_seen,
            "parent_query": pattern.parent_query,
        }
        # The same loop already found in pg_stat_statements: add the log's evidence to it.
        same = next((f for f in findings if _same_child(f, pattern)), None)
        if same is not None:
            same.evidence["source"].append("log")
            same.evidence["log"] = evidence
            continue
        child_id = pattern.queryid or f"fp:{pattern.fingerprint}"
        parent_id = pattern.parent_queryid or (
            f"fp:{pattern.parent_fingerprint}" if pattern.parent_fingerprint else None
        )
        table = _log_table(snapshot, pattern.query, shape) if shape else None
        rewritten = rewrites(pattern.query, shape, table, pattern.parent_query, None) if shape else {}
        mean = pattern.total_ms / pattern.executions if pattern.executions else 0.0
        round_trips = pattern.executions - pattern.runs
        # Batching leaves one execution per run; the per-call overhead of the others goes.
        fraction = (1 - pattern.runs / pattern.executions) * PROBE_OVERHEAD_SHARE if pattern.executions else 0
        total = snapshot.total_exec_time_ms or logs.total_ms
        saving = saving_from_share(pattern.total_ms, fraction, total, pattern.executions)
        # What the application waits for: a round trip per execution, which the server's own
        # time leaves out, plus that time. Batching keeps one round trip per loop.
        rtt = logs.thresholds.get("round_trip_ms", ROUND_TRIP_MS)
        runs = max(1, pattern.runs)
        per_run = pattern.executions / runs
        latency_per_run = (pattern.executions * rtt + pattern.total_ms) / runs
        saved_per_run = (round_trips * rtt + pattern.total_ms * fraction) / runs
        evidence.update(
            executions_per_run=round(per_run, 1),
            transactions=pattern.transactions,
            round_trip_ms=rtt,
            server_ms_per_run=round(pattern.total_ms / runs, 3),
            latency_per_run_ms=round(latency_per_run, 3),
            saved_per_run_ms=round(saved_per_run, 3),
        )
        out.append(
            Finding(
                check=ID,
                severity=_log_severity(saving.share_of_total_time, saved_per_run),
                title=(
                    f"N+1 in the log: {pattern.runs} loop(s) of {per_run:.0f} "
                    f"{'lookups of ' + table if table else 'executions of one statement'} in "
                    f"{pattern.transactions} transactions ({mean:.3f} ms each on the server, ~{latency_per_run:.1f} ms "
                    f"per loop with {rtt:g} ms round trips)"
                ),
                table=table,
                columns=list(shape.columns) if shape else [],
                queryids=[child_id] + ([parent_id] if parent_id else []),
                advice=_advice(shape, False, rewritten)
                if shape
                else "Fetch the rows for every key at once (ANY($1) or a join with the parent statement).",
                predicted_saving=saving,
                confidence="medium" if pattern.parent_fingerprint else "low",
                effort="application",
                evidence={
                    "source": ["log"],
                    "child": {"query": pattern.query, "queryid": pattern.queryid, "fingerprint": pattern.fingerprint},
                    "log": evidence,
                    "round_trips_saved": round_trips,
                    **rewritten,
                },
                key=f"{table or ''}|{pattern.fingerprint}",
            )
        )
    return out


def run(snapshot: Snapshot) -> list[Finding]:
    findings = from_statements(snapshot)
    return findings + from_logs(snapshot, findings)
