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
Depends on the pattern the evidence shows (`evidence.patterns`):
- `ddl-queue`: run DDL with a short `lock_timeout` and retry it, so it gives up instead
  of queueing every session behind it; end the long transaction it waits for first.
- `idle-blocker`: the root blocker sat idle inside its transaction: commit before
  network calls and user think time; set `idle_in_transaction_session_timeout`.
- `hot-row`: many writers on the same few rows: split the counter into several rows
  summed on read, or batch the increments; keep those transactions short.
- `queue-table`: workers `SELECT ... FOR UPDATE` the same rows: use
  `FOR UPDATE SKIP LOCKED` so each worker takes a different job.
- `deadlock` (logs): take locks in one consistent order (for example by primary key).
- otherwise: shorten the blocking transactions; do slow work outside them.

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
`log_min_duration_statement`). No predicted saving is given: lock waits are not
separated from execution time in pg_stat_statements.
"""
from __future__ import annotations

import re
from collections import defaultdict

from queryaudit.checks import declare
from queryaudit.checks._locks import alter_database_sql, describe, lock_facts, real_queryids, setting_is_off, short
from queryaudit.findings import Finding
from queryaudit.lock_facts import LockFacts, LockWait
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
HOT_ROWS = 3  # row waits concentrated on at most this many rows make a hot spot

DDL_MODES = {"AccessExclusiveLock", "ExclusiveLock", "ShareRowExclusiveLock", "ShareLock"}
_FOR_UPDATE = re.compile(r"\bFOR\s+(NO\s+KEY\s+)?UPDATE\b", re.I)
_SKIP = re.compile(r"\b(SKIP\s+LOCKED|NOWAIT)\b", re.I)
_COUNTER = re.compile(r"\bSET\s+(\w+)\s*=\s*\1\s*[-+]", re.I)
CHECK = declare(ID, TITLE, family="locks", fix="application",
                thresholds=("MIN_WAIT_SHARE", "MIN_WAIT_MS", "HIGH_WAIT_SHARE", "LOG_MEDIUM_WAITS",
                            "LOG_HIGH_WAIT_MS", "HOT_ROWS"))


def run(snapshot: Snapshot) -> list[Finding]:
    findings = []
    for facts in lock_facts(snapshot):
        by_relation: dict[str, list[LockWait]] = defaultdict(list)
        for wait in facts.waits:
            by_relation[wait.relation or f"({wait.locktype} locks)"].append(wait)
        deadlocks = defaultdict(list)
        for d in facts.deadlocks:
            deadlocks[d.get("relation") or "(unknown relation)"].append(d)
        for relation in sorted(set(by_relation) | set(deadlocks)):
            finding = _hot_spot(snapshot, facts, relation, by_relation.get(relation, []), deadlocks.get(relation, []))
            if finding:
                findings.append(finding)
    return findings


def _share(facts: LockFacts, relation: str) -> float:
    ticks = len(facts.timeline)
    if not ticks:
        return 0.0
    return sum(1 for t in facts.timeline if t.relations.get(relation)) / ticks


def _hot_spot(snapshot: Snapshot, facts: LockFacts, relation: str, waits: list[LockWait],
              deadlocks: list[dict]) -> Finding | None:
    wait_ms = sum(w.wait_ms for w in waits)
    share = _share(facts, relation) if facts.source == "sample" else None
    patterns = _patterns(facts, waits, deadlocks)
    if facts.source == "sample":
        if share < MIN_WAIT_SHARE or wait_ms < MIN_WAIT_MS:
            return None
        severity = "high" if share >= HIGH_WAIT_SHARE or "ddl-queue" in patterns else "medium"
    else:
        if not waits and not deadlocks:
            return None
        count = sum(w.samples for w in waits)
        severity = ("high" if wait_ms >= LOG_HIGH_WAIT_MS else
                    "medium" if count >= LOG_MEDIUM_WAITS or deadlocks or "ddl-queue" in patterns else "low")

    waiting = _rank(waits, lambda w: w.waiting)
    roots = _rank(waits, lambda w: w.root or w.blocking)
    direct = _rank(waits, lambda w: w.blocking)
    modes = _rank(waits, lambda w: w.mode)
    locktypes = _rank(waits, lambda w: w.locktype)
    rows = sorted({r for w in waits for r in w.rows})
    chains = [e for e in facts.episodes if relation in e.relations][:MAX_CHAINS]
    root_states = {e.root_state for e in chains if e.root_state}

    evidence = {
        "source": facts.source,
        "relation": relation,
        "window_s": facts.window_s,
        "wait_ms": round(wait_ms, 1),
        "wait_share": round(share, 4) if share is not None else None,
        "lock_modes": {m: round(ms, 1) for m, ms in modes},
        "lock_types": {t: round(ms, 1) for t, ms in locktypes},
        "rows": rows[:20],
        "patterns": patterns,
        "blocking_statements": [{**describe(facts, k, snapshot), "wait_ms_caused": round(ms, 1),
                                 "holds": sorted({m for w in waits if (w.root or w.blocking) == k
                                                  for m in w.blocker_modes})}
                                for k, ms in roots[:MAX_STATEMENTS]],
        "direct_blockers": [{**describe(facts, k, snapshot), "wait_ms_caused": round(ms, 1)}
                            for k, ms in direct[:MAX_STATEMENTS]],
        "waiting_statements": [{**describe(facts, k, snapshot), "wait_ms": round(ms, 1),
                                "modes": sorted({w.mode for w in waits if w.waiting == k})}
                               for k, ms in waiting[:MAX_STATEMENTS]],
        "root_blocker_states": sorted(root_states),
        "max_waiters": max((e.max_waiters for e in chains), default=0),
        "chains": [{"root_pid": e.root_pid, "root_state": e.root_state, "first_ms": e.first_ms,
                    "last_ms": e.last_ms, "wait_ms": e.wait_ms, "max_waiters": e.max_waiters, "tree": e.tree}
                   for e in chains],
    }
    if deadlocks:
        evidence["deadlocks"] = deadlocks[:MAX_CHAINS]
        evidence["deadlock_count"] = len(deadlocks)
    if facts.source == "log":
        evidence["logged_waits"] = sum(w.samples for w in waits)

    top_root = describe(facts, roots[0][0], snapshot) if roots else None
    if facts.source == "sample":
        title = (f"Lock waits on {relation}: {wait_ms / 1000:.1f} s waited in a {facts.window_s:g} s sample "
                 f"({share:.0%} of the time)")
    else:
        title = f"Lock waits on {relation} in the log: {evidence.get('logged_waits', 0)} waits, {wait_ms / 1000:.1f} s"
        if deadlocks:
            title += f", {len(deadlocks)} deadlock{'s' if len(deadlocks) > 1 else ''}"
    if top_root and top_root["query"]:
        title += f", behind `{short(top_root['query'], 60)}`"
    advice, fix_sql = _advice(snapshot, facts, patterns, relation)
    table = relation if snapshot.table(relation) or "." in relation and not relation.startswith("(") else None
    return Finding(
        check=ID, severity=severity, title=title, table=table,
        queryids=real_queryids(facts, [k for k, _ in waiting] + [k for k, _ in roots] + [k for k, _ in direct]),
        fix_sql=fix_sql, advice=advice, confidence="high" if facts.source == "sample" else "medium",
        effort="application", evidence=evidence, key=f"{relation}|{','.join(patterns)}",
    )


def _rank(waits: list[LockWait], key) -> list[tuple[str, float]]:
    totals: dict[str, float] = defaultdict(float)
    for w in waits:
        k = key(w)
        if k:
            totals[k] += w.wait_ms or 0.0
    return sorted(totals.items(), key=lambda kv: -kv[1])


def _patterns(facts: LockFacts, waits: list[LockWait], deadlocks: list[dict]) -> list[str]:
    found = []
    ddl = {w.waiting for w in waits if w.locktype == "relation" and w.mode in DDL_MODES
           and _kind(facts, w.waiting) == "other"}
    if ddl:
        found.append("ddl-queue")
    states = {e.root_state for e in facts.episodes if e.root_state} | {w.blocker_state for w in waits if w.blocker_state}
    if any(s.startswith("idle in transaction") for s in states if s):
        found.append("idle-blocker")
    row_waits = [w for w in waits if w.locktype in ("tuple", "transactionid")]
    texts = [(facts.statement(w.waiting).query if facts.statement(w.waiting) else "") for w in row_waits]
    if any(_FOR_UPDATE.search(t) and not _SKIP.search(t) for t in texts):
        found.append("queue-table")
    rows = {r for w in row_waits for r in w.rows}
    if row_waits and (0 < len(rows) <= HOT_ROWS or any(_COUNTER.search(t) for t in texts)):
        found.append("hot-row")
    if deadlocks:
        found.append("deadlock")
    return found


def _kind(facts: LockFacts, key: str | None) -> str:
    stmt = facts.statement(key)
    return stmt.kind if stmt else "invalid"


def _advice(snapshot: Snapshot, facts: LockFacts, patterns: list[str], relation: str) -> tuple[str, str | None]:
    lines, fix = [], None
    if "ddl-queue" in patterns:
        lines.append(f"DDL on {relation} waited for its lock behind a running transaction and queued every later "
                     "session behind it: run DDL with a short lock_timeout (SET lock_timeout = '2s') and retry, "
                     "after ending long transactions on the table.")
        fix = "SET lock_timeout = '2s';  -- in the migration session, before the DDL; retry the DDL when it times out"
    if "idle-blocker" in patterns:
        lines.append("The blocking session sat idle inside its transaction while others waited: commit before "
                     "network calls or user think time, and set idle_in_transaction_session_timeout.")
        if fix is None and setting_is_off(facts, "idle_in_transaction_session_timeout"):
            fix = alter_database_sql(snapshot, "idle_in_transaction_session_timeout", "60s")
    if "queue-table" in patterns:
        lines.append("Workers lock the same rows with SELECT ... FOR UPDATE: use FOR UPDATE SKIP LOCKED so each "
                     "takes a different row.")
    if "hot-row" in patterns:
        lines.append("Writers queue on the same few rows: split a hot counter into several rows (summed on read) "
                     "or batch the increments, and keep those transactions short.")
    if "deadlock" in patterns:
        lines.append("Deadlocks: take row and table locks in one consistent order in every transaction "
                     "(for example by primary key).")
    if not lines:
        lines.append("Shorten the blocking transactions: do slow work before or after them, not inside.")
    return " ".join(lines), fix
