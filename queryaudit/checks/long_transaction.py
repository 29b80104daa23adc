"""A transaction open long enough to hold back vacuum or block other sessions.

## What it detects
Client sessions whose transaction stayed open longer than the threshold while the
lock sampler watched (`queryaudit audit --sample-seconds N`, `queryaudit locks`),
and that were not simply waiting for a lock themselves. Sessions that sat idle inside
their transaction are reported by `idle-in-transaction` instead.

## Why it matters
While a transaction is open, its snapshot holds back the xmin horizon: VACUUM cannot
remove rows deleted or updated after it began, on any table of the database, so tables
and indexes bloat and index-only scans fetch heap pages. Whatever locks it took (row
locks of its writes, table locks of every statement) are held until it ends, so DDL
and other writers queue behind it.

## How to fix
Keep transactions short: do slow work (reports, exports, calls to other services)
outside them or in smaller batches; run long reports on a replica. Bound them on the
server: `statement_timeout` per statement and, on PostgreSQL 17+, `transaction_timeout`
per transaction, set for the role that runs them.

## Example
```sql
ALTER ROLE reporting SET statement_timeout = '5min';
ALTER ROLE app SET transaction_timeout = '10min';  -- PostgreSQL 17+
```

## Thresholds
- A transaction older than the sampler's `--long-transaction-seconds` (default
  `LONG_TRANSACTION_S`, 60 s) during the window.
- Medium from `MEDIUM_AGE_S` (5 min) or when it holds a transaction id (it wrote);
  high from `HIGH_AGE_S` (1 h) or when other sessions waited for its locks.

## Known false positives
Maintenance run on purpose (a `pg_dump`, a planned batch) is long by design: exclude it
by role or application name when reading the report. Autovacuum and other background
workers are not reported.
"""

from __future__ import annotations

from queryaudit.checks import declare
from queryaudit.checks._locks import describe, lock_facts, real_queryids
from queryaudit.findings import Finding
from queryaudit.locks.facts import LONG_TRANSACTION_S, LockFacts, TransactionObservation
from queryaudit.snapshot import Snapshot

ID = "long-transaction"
TITLE = "Long transaction"

MEDIUM_AGE_S = 300.0
HIGH_AGE_S = 3600.0
_ = LONG_TRANSACTION_S  # the default threshold, recorded per sample in LockFacts.long_transaction_s
CHECK = declare(ID, TITLE, family="locks", fix="application", thresholds=("MEDIUM_AGE_S", "HIGH_AGE_S"))


def is_idle_in_transaction(facts: LockFacts, obs: TransactionObservation) -> bool:
    return obs.max_idle_in_transaction_s >= facts.idle_in_transaction_s


def run(snapshot: Snapshot) -> list[Finding]:
    findings = []
    for facts in lock_facts(snapshot):
        for obs in facts.transactions:
            if obs.max_age_s < facts.long_transaction_s or is_idle_in_transaction(facts, obs):
                continue
            if obs.waited_on_lock and not obs.blocked_ms:
                continue  # a victim of lock-contention, reported there
            severity = (
                "high"
                if obs.blocked_ms > 0 or obs.max_age_s >= HIGH_AGE_S
                else "medium"
                if obs.max_age_s >= MEDIUM_AGE_S or obs.holds_xid
                else "low"
            )
            stmt = describe(facts, obs.statement, snapshot)
            who = obs.application_name or obs.usename or f"pid {obs.pid}"
            findings.append(
                Finding(
                    check=ID,
                    severity=severity,
                    title=f"Transaction open {obs.max_age_s:.0f} s ({who}), last statement: "
                    f"{' '.join((stmt['query'] or '?').split())[:60]}",
                    queryids=real_queryids(facts, [obs.statement]),
                    advice="Keep the transaction short: move slow work out of it or split it into batches; bound it "
                    "with statement_timeout (and transaction_timeout on PostgreSQL 17+) for its role.",
                    confidence="high",
                    effort="application",
                    evidence={**transaction_evidence(facts, obs), "last_statement": stmt},
                    key=f"{obs.usename}|{obs.application_name}|{obs.statement}",
                )
            )
    return findings


def transaction_evidence(facts: LockFacts, obs: TransactionObservation) -> dict:
    return {
        "pid": obs.pid,
        "usename": obs.usename,
        "application_name": obs.application_name,
        "xact_start": obs.xact_start,
        "age_s": obs.max_age_s,
        "state": obs.last_state,
        "idle_in_transaction_s": obs.max_idle_in_transaction_s,
        "holds_xid": obs.holds_xid,
        "holds_xmin": obs.holds_xmin,
        "held_locks": obs.held_locks,
        "blocked_others_ms": obs.blocked_ms,
        "threshold_s": facts.long_transaction_s,
        "window_s": facts.window_s,
        "source": facts.source,
    }
