"""Sessions wait on locks held by others on one relation or its rows.

## What it detects
A relation (or a few of its rows) on which sessions spent a share of the observed
window waiting for a heavyweight lock, seen by live sampling (`queryaudit audit
--sample-seconds N`, `queryaudit locks`) or in a log written with `log_lock_waits = on`.
The evidence names the waiting statements, the statements that blocked them (the
direct blocker and the root of the chain: the session that does not wait itself),
the lock modes and types, the hot rows, the total wait, and the blocking chains as trees.

## Why it matters
Time spent waiting for a lock is counted in the waiting statement's execution time
but no index or plan change will remove it: the statements are fast, the sessions
queue. A `ALTER TABLE` that waits for an `AccessExclusiveLock` behind one long
transaction blocks every later read and write of the table while it waits, so a
harmless-looking migration can stop an application. Rows updated by every
transaction (a counter, a balance, a queue head) serialise their writers.

## How to fix
Each wait is put under one pattern (`evidence.pattern`), one finding per relation and
pattern, each with its own evidence and fix:
- `hot-row`: many waiters on few tuples of one table (`evidence.hot_rows`: the
  (page,tuple) and how many waits named it). Keep the transaction around the update
  short, update the hot row last in it (its lock is then held for the shortest time),
  batch the increments or shard the counter into several rows summed on read; for a
  queue table (`SELECT ... FOR UPDATE` without `SKIP LOCKED`) use `FOR UPDATE SKIP LOCKED`.
- `idle-blocker`: the root blocker sat idle inside its transaction for at least
  `IDLE_BLOCKER_S` while others waited, seen idle at `IDLE_BLOCKER_TICKS` consecutive
  ticks: commit before network calls and user think time; set
  `idle_in_transaction_session_timeout`. A client idle for microseconds between two
  statements is not this pattern, nor one held up once by the scheduler.
- `long-transaction`: the root blocker's transaction was open longer than the
  sampler's long-transaction threshold: shorten or split it; bound it with
  `statement_timeout` (and `transaction_timeout`, 17+) for its role.
- `ddl-queue`: DDL waited for its `ACCESS EXCLUSIVE` (or other strong) lock behind
  running transactions, and every later session queued behind it: run DDL with a short
  `lock_timeout` and retry it; end the long reads it waits for first.
- `fk-share`: a write on a child table waited for a row of the parent table: the
  foreign key check locks the parent row `FOR KEY SHARE`, which waits for transactions
  holding it `FOR UPDATE`, deleting it or changing its key. Lock parent rows with
  `FOR NO KEY UPDATE`, do not update key columns, keep those transactions short.
- `advisory`: sessions waited on `pg_advisory_lock` keys (`evidence.keys`): take them
  with `pg_try_advisory_lock` or under a `lock_timeout`, prefer the transaction-level
  `pg_advisory_xact_lock` (released at commit), keep the locked section short.
- `table-lock`: other relation lock waits (`LOCK TABLE`, `REFRESH MATERIALIZED VIEW`):
  shorten the blocking transactions; do slow work outside them.
- `deadlock` (logs): take locks in one consistent order (for example by primary key).

The predicted saving is the wait itself: the sampled wait of the pattern's waiting
statements over the database time sampled in the same window (client sessions active
at each tick). It is an upper bound: the fix removes at most the wait.

## Example
```sql
-- ddl-queue: give up after 2 s instead of blocking every reader behind the DDL, then retry
SET lock_timeout = '2s';
ALTER TABLE public.orders ADD COLUMN note text;
-- queue-table: each worker takes a different row
SELECT id FROM jobs WHERE status = 'new' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED;
```

## Thresholds
- Sampling: a relation on which some session waited in at least `MIN_WAIT_SHARE`
  (5%) of the ticks of the window, for at least `MIN_WAIT_MS` (200 ms) of summed
  session wait. High severity from `HIGH_WAIT_SHARE` (25%) of the window, or when DDL
  queued other sessions behind it.
- `idle-blocker` (sampling): the root blocker seen idle in its transaction, in one idle
  period, at `IDLE_BLOCKER_TICKS` (2) consecutive ticks of the wait, that period reaching
  `IDLE_BLOCKER_S` (1 s). One tick is not enough: a client held up between two
  statements by a busy machine's scheduler looks idle at that tick for as long as it
  was held up, in a wait that is otherwise hot rows.
- Logs: any relation with logged waits (each already lasted `deadlock_timeout`);
  medium from `LOG_MEDIUM_WAITS` (3) waits or any deadlock, high from
  `LOG_HIGH_WAIT_MS` (10 s) of summed logged wait.

## Known false positives
A sample is a short window: contention seen during a batch job or a migration may
not be the steady state (re-sample at another time). Wait time attributed by
sampling is accurate to one tick (100 ms at 10 Hz). The blocking statement of an
idle session is the last statement it ran, not necessarily the one that took the
lock. From logs, the holder's statement is joined through its session (pid) and is
only known when the holder's statements are logged (`log_statement` or
`log_min_duration_statement`). From logs no predicted saving is given: the log
has no database time to set the waits against.
"""

from __future__ import annotations

import re
from collections import defaultdict

from queryaudit.checks import declare
from queryaudit.checks._locks import (
    IDLE_BLOCKER_S,
    IDLE_BLOCKER_TICKS,
    alter_database_sql,
    classify,
    ddl_waits,
    describe,
    foreign_keys_between,
    is_ddl_wait,
    lock_facts,
    real_queryids,
    setting_is_off,
    short,
    write_target,
)
from queryaudit.findings import Finding, saving_from_share
from queryaudit.locks.facts import LockFacts, LockWait
from queryaudit.snapshot import Snapshot

ID = "lock-contention"
TITLE = "Lock contention"

MIN_WAIT_SHARE = 0.05
MIN_WAIT_MS = 200.0
HIGH_WAIT_SHARE = 0.25
LOG_MEDIUM_WAITS = 3
LOG_HIGH_WAIT_MS = 10_000.0
MAX_CHAINS = 5
MAX_STATEMENTS = 10
HOT_ROWS = 10  # rows listed in the evidence
_ = IDLE_BLOCKER_S, IDLE_BLOCKER_TICKS  # documented above; the pattern rule lives in checks/_locks.py

_FOR_UPDATE = re.compile(r"\bFOR\s+(NO\s+KEY\s+)?UPDATE\b", re.I)
_SKIP = re.compile(r"\b(SKIP\s+LOCKED|NOWAIT)\b", re.I)
_COUNTER = re.compile(r"\bSET\s+(\w+)\s*=\s*\1\s*[-+]", re.I)
LABELS = {
    "hot-row": "Hot rows",
    "idle-blocker": "Waits behind a session idle in transaction",
    "long-transaction": "Waits behind a long transaction",
    "ddl-queue": "DDL lock queue",
    "fk-share": "Foreign key checks wait on parent rows",
    "advisory": "Advisory lock waits",
    "table-lock": "Table lock waits",
    "deadlock": "Deadlocks",
}
CHECK = declare(
    ID,
    TITLE,
    family="locks",
    fix="application",
    thresholds=(
        "MIN_WAIT_SHARE",
        "MIN_WAIT_MS",
        "HIGH_WAIT_SHARE",
        "LOG_MEDIUM_WAITS",
        "LOG_HIGH_WAIT_MS",
        "HOT_ROWS",
        "IDLE_BLOCKER_S",
        "IDLE_BLOCKER_TICKS",
    ),
)


def run(snapshot: Snapshot) -> list[Finding]:
    findings = []
    for facts in lock_facts(snapshot):
        ddl = ddl_waits(facts)
        groups: dict[tuple[str, str], list[LockWait]] = defaultdict(list)
        for wait in facts.waits:
            relation = wait.relation or f"({wait.locktype} locks)"
            groups[(relation, classify(facts, wait, snapshot, ddl))].append(wait)
        deadlocks = defaultdict(list)
        for d in facts.deadlocks:
            deadlocks[d.get("relation") or "(unknown relation)"].append(d)
        for relation in deadlocks:
            groups.setdefault((relation, "deadlock"), [])
        seen: dict[str, list[str]] = defaultdict(list)
        for relation, pattern in groups:
            seen[relation].append(pattern)
        for (relation, pattern), waits in sorted(groups.items()):
            finding = _finding(
                snapshot,
                facts,
                relation,
                pattern,
                waits,
                deadlocks.get(relation, []) if pattern == "deadlock" else [],
                sorted(seen[relation]),
            )
            if finding:
                findings.append(finding)
    return findings


def _share(facts: LockFacts, relation: str) -> float:
    ticks = len(facts.timeline)
    if not ticks:
        return 0.0
    return sum(1 for t in facts.timeline if t.relations.get(relation)) / ticks


def _finding(
    snapshot: Snapshot,
    facts: LockFacts,
    relation: str,
    pattern: str,
    waits: list[LockWait],
    deadlocks: list[dict],
    patterns: list[str],
) -> Finding | None:
    wait_ms = sum(w.wait_ms for w in waits)
    share = _share(facts, relation) if facts.source == "sample" else None
    # The waits are database time too: the sampler sums the two apart, each rounded, so the
    # denominator is never less than the waits it holds.
    db_time_ms = max(facts.db_time_ms, wait_ms)
    db_share = wait_ms / db_time_ms if facts.source == "sample" and facts.db_time_ms else None
    if facts.source == "sample":
        if share < MIN_WAIT_SHARE or wait_ms < MIN_WAIT_MS:
            return None
        severity = (
            "high"
            if share >= HIGH_WAIT_SHARE or (db_share or 0) >= HIGH_WAIT_SHARE or pattern == "ddl-queue"
            else "medium"
        )
    else:
        if not waits and not deadlocks:
            return None
        count = sum(w.samples for w in waits)
        severity = (
            "high"
            if wait_ms >= LOG_HIGH_WAIT_MS
            else "medium"
            if count >= LOG_MEDIUM_WAITS or deadlocks or pattern == "ddl-queue"
            else "low"
        )

    waiting = _rank(waits, lambda w: w.waiting)
    roots = _rank(waits, lambda w: w.root or w.blocking)
    direct = _rank(waits, lambda w: w.blocking)
    chains = [e for e in facts.episodes if relation in e.relations][:MAX_CHAINS]

    def of_db_time(ms: float) -> float | None:
        return round(ms / max(facts.db_time_ms, ms), 4) if db_share is not None else None

    evidence = {
        "source": facts.source,
        "relation": relation,
        "pattern": pattern,
        "patterns": patterns,  # every pattern seen on this relation (each has its own finding)
        "window_s": facts.window_s,
        "wait_ms": round(wait_ms, 1),
        "wait_share": round(share, 4) if share is not None else None,
        "db_time_ms": round(db_time_ms, 1) if db_share is not None else None,
        "wait_share_of_db_time": round(db_share, 4) if db_share is not None else None,
        "lock_modes": {m: round(ms, 1) for m, ms in _rank(waits, lambda w: w.mode)},
        "lock_types": {t: round(ms, 1) for t, ms in _rank(waits, lambda w: w.locktype)},
        "rows": sorted({r for w in waits for r in w.rows})[:20],
        "blocking_statements": [
            {
                **describe(facts, k, snapshot),
                "wait_ms_caused": round(ms, 1),
                "holds": sorted({m for w in waits if (w.root or w.blocking) == k for m in w.blocker_modes}),
            }
            for k, ms in roots[:MAX_STATEMENTS]
        ],
        "direct_blockers": [
            {**describe(facts, k, snapshot), "wait_ms_caused": round(ms, 1)} for k, ms in direct[:MAX_STATEMENTS]
        ],
        "waiting_statements": [
            {
                **describe(facts, k, snapshot),
                "wait_ms": round(ms, 1),
                "share_of_db_time": of_db_time(ms),
                "modes": sorted({w.mode for w in waits if w.waiting == k}),
            }
            for k, ms in waiting[:MAX_STATEMENTS]
        ],
        "root_blocker_states": sorted({e.root_state for e in chains if e.root_state}),
        "max_waiters": max((e.max_waiters for e in chains), default=0),
        "chains": [
            {
                "root_pid": e.root_pid,
                "root_state": e.root_state,
                "first_ms": e.first_ms,
                "last_ms": e.last_ms,
                "wait_ms": e.wait_ms,
                "max_waiters": e.max_waiters,
                "tree": e.tree,
            }
            for e in chains
        ],
    }
    if deadlocks:
        evidence["deadlocks"] = deadlocks[:MAX_CHAINS]
        evidence["deadlock_count"] = len(deadlocks)
    if facts.source == "log":
        evidence["logged_waits"] = sum(w.samples for w in waits)
    evidence.update(_pattern_evidence(snapshot, facts, pattern, relation, waits))

    top_root = describe(facts, roots[0][0], snapshot) if roots else None
    label = LABELS[pattern]
    if facts.source == "sample":
        title = f"{label} on {relation}: {wait_ms / 1000:.1f} s waited in a {facts.window_s:g} s sample" + (
            f" ({db_share:.0%} of database time)" if db_share is not None else f" ({share:.0%} of the time)"
        )
    else:
        title = f"{label} on {relation} in the log: {evidence.get('logged_waits', 0)} waits, {wait_ms / 1000:.1f} s"
        if deadlocks:
            title += f", {len(deadlocks)} deadlock{'s' if len(deadlocks) > 1 else ''}"
    if top_root and top_root["query"]:
        title += f", behind `{short(top_root['query'], 60)}`"
    advice, fix_sql = _advice(snapshot, facts, pattern, relation, evidence)
    saving = None
    if db_share is not None:
        saving = saving_from_share(wait_ms, 1.0, db_time_ms, 0)
        evidence["saving_method"] = (
            "sampled lock wait of the waiting statements / database time sampled in the "
            "same window (active sessions per tick): the fix removes at most the wait"
        )
    table = relation if snapshot.table(relation) or "." in relation and not relation.startswith("(") else None
    return Finding(
        check=ID,
        severity=severity,
        title=title,
        table=table,
        queryids=real_queryids(facts, [k for k, _ in waiting] + [k for k, _ in roots] + [k for k, _ in direct]),
        fix_sql=fix_sql,
        advice=advice,
        confidence="high" if facts.source == "sample" else "medium",
        effort="application",
        evidence=evidence,
        key=f"{relation}|{pattern}",
        predicted_saving=saving,
    )


def _rank(waits: list[LockWait], key) -> list[tuple[str, float]]:
    totals: dict[str, float] = defaultdict(float)
    for w in waits:
        k = key(w)
        if k:
            totals[k] += w.wait_ms or 0.0
    return sorted(totals.items(), key=lambda kv: -kv[1])


def _texts(facts: LockFacts, waits: list[LockWait]) -> list[str]:
    return [facts.statement(w.waiting).query for w in waits if facts.statement(w.waiting)]


def _pattern_evidence(snapshot: Snapshot, facts: LockFacts, pattern: str, relation: str, waits: list[LockWait]) -> dict:
    if pattern == "hot-row":
        per_row: dict[str, int] = defaultdict(int)
        for w in waits:
            for row, n in (w.row_samples or {r: 1 for r in w.rows}).items():
                per_row[row] += n
        texts = _texts(facts, waits) + [facts.statement(w.blocking).query for w in waits if facts.statement(w.blocking)]
        variant = (
            "queue"
            if any(_FOR_UPDATE.search(t) and not _SKIP.search(t) for t in texts)
            else "counter"
            if any(_COUNTER.search(t) for t in texts)
            else "row"
        )
        ranked = sorted(per_row.items(), key=lambda kv: -kv[1])
        return {
            "hot_rows": [{"row": r, "waits": n} for r, n in ranked[:HOT_ROWS]],
            "distinct_rows": len(per_row),
            "row_waits": sum(per_row.values()),
            "variant": variant,
        }
    if pattern == "idle-blocker":
        return {
            "root_idle_in_transaction_s": round(max(w.root_idle_s for w in waits), 3),
            "root_idle_ticks": max(w.root_idle_ticks for w in waits),
            "idle_threshold_s": IDLE_BLOCKER_S,
            "idle_threshold_ticks": IDLE_BLOCKER_TICKS,
        }
    if pattern == "long-transaction":
        return {
            "root_transaction_age_s": round(max(w.root_xact_age_s for w in waits), 3),
            "threshold_s": facts.long_transaction_s,
        }
    if pattern == "ddl-queue":
        ddl = sorted({w.waiting for w in waits if is_ddl_wait(facts, w.waiting, w.mode)})
        return {
            "ddl_statements": [describe(facts, k, snapshot) for k in ddl],
            "queued_behind_ddl": len({w.waiting for w in waits if w.blocking in ddl} - set(ddl)),
            "ddl_waited_behind": sorted(
                {facts.statement(w.blocking).query for w in waits if w.waiting in ddl and facts.statement(w.blocking)}
            ),
        }
    if pattern == "fk-share":
        children = sorted({t for t in (write_target(q) for q in _texts(facts, waits)) if t})
        return {
            "parent_table": relation,
            "child_tables": children,
            "foreign_keys": [n for c in children for n in foreign_keys_between(snapshot, c, relation)],
            "root_idle_in_transaction_s": round(max(w.root_idle_s for w in waits), 3),
            "root_transaction_age_s": round(max(w.root_xact_age_s for w in waits), 3),
        }
    if pattern == "advisory":
        return {"keys": sorted({r for w in waits for r in w.rows})[:20]}
    return {}


def _advice(
    snapshot: Snapshot, facts: LockFacts, pattern: str, relation: str, evidence: dict
) -> tuple[str, str | None]:
    waiter = short((evidence["waiting_statements"] or [{}])[0].get("query"), 70)
    if pattern == "hot-row":
        rows = evidence["hot_rows"]
        top = sum(r["waits"] for r in rows[:3])
        lines = [
            f"Writers queue on few rows of {relation}: {evidence['distinct_rows']} rows took "
            f"{evidence['row_waits']} waits ({top} on the top {min(3, len(rows))}). Keep the transaction "
            f"around `{waiter}` short (nothing slow between the update and COMMIT), update the hot row last "
            "in the transaction so its lock is held for the shortest time, and batch the increments or "
            "shard the counter into several rows summed on read."
        ]
        if evidence["variant"] == "queue":
            lines.append(
                "Workers lock the same rows with SELECT ... FOR UPDATE: use FOR UPDATE SKIP LOCKED so "
                "each takes a different row."
            )
        return " ".join(lines), None
    if pattern == "idle-blocker":
        fix = (
            alter_database_sql(snapshot, "idle_in_transaction_session_timeout", "60s")
            if setting_is_off(facts, "idle_in_transaction_session_timeout")
            else None
        )
        return (
            f"The blocking session sat idle inside its transaction for up to "
            f"{evidence['root_idle_in_transaction_s']:.1f} s while others waited: commit before network calls "
            "or user think time, and set idle_in_transaction_session_timeout."
        ), fix
    if pattern == "long-transaction":
        return (
            f"The blocking transaction was open {evidence['root_transaction_age_s']:.0f} s: shorten it (move "
            "slow work out, split it into batches) and bound it with statement_timeout (and "
            "transaction_timeout on PostgreSQL 17+) for its role."
        ), None
    if pattern == "ddl-queue":
        return (
            f"DDL on {relation} waited for its lock behind a running transaction and queued every later "
            "session behind it: run DDL with a short lock_timeout (SET lock_timeout = '2s') and retry, "
            "after ending long transactions on the table."
        ), "SET lock_timeout = '2s';  -- in the migration session, before the DDL; retry the DDL when it times out"
    if pattern == "fk-share":
        return (
            f"Writes to {', '.join(evidence['child_tables']) or 'a child table'} check their foreign key by "
            f"locking the referenced row of {relation} FOR KEY SHARE, and waited for transactions holding that "
            "row FOR UPDATE, deleting it or changing its key: lock parent rows FOR NO KEY UPDATE, do not "
            "update their key columns, and keep the transactions that update them short."
        ), None
    if pattern == "advisory":
        return (
            f"Sessions queued on {len(evidence['keys'])} advisory lock key(s) (evidence.keys): take them with "
            "pg_try_advisory_lock (or under a lock_timeout) instead of waiting, prefer pg_advisory_xact_lock "
            "(released at commit), and keep the locked section short."
        ), None
    if pattern == "deadlock":
        return (
            "Deadlocks: take row and table locks in one consistent order in every transaction "
            "(for example by primary key)."
        ), None
    return "Shorten the blocking transactions: do slow work before or after them, not inside.", None
