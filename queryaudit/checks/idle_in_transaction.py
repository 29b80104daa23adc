"""A session idle inside an open transaction, holding its locks and snapshot.

## What it detects
Client sessions seen in the state `idle in transaction` (or `idle in transaction
(aborted)`) for longer than the threshold while the lock sampler watched
(`queryaudit audit --sample-seconds N`, `queryaudit locks`): the application began a
transaction, ran a statement, and is now doing something else without committing.

## Why it matters
An idle transaction does no work but keeps everything a running one keeps: its row
and table locks (writers and DDL on those tables queue behind it), and its snapshot
(VACUUM cannot clean up behind it; tables bloat). It usually comes from code that
calls another service or waits for a user between BEGIN and COMMIT, from a connection
pool that hands out connections with a transaction left open, or from an exception
path that never rolls back.

## How to fix
Commit (or roll back) before slow work; make sure every error path ends the
transaction; in the pool, reset connections on return. On the server, set
`idle_in_transaction_session_timeout` so a forgotten transaction is ended (its session
is terminated) instead of holding locks indefinitely.

## Example
```sql
ALTER DATABASE shop SET idle_in_transaction_session_timeout = '60s';
```

## Thresholds
- Idle in transaction for at least the sampler's `--idle-in-transaction-seconds`
  (default `IDLE_IN_TRANSACTION_S`, 10 s).
- Medium when it holds a transaction id (it wrote) or relation locks other than its
  reads' `AccessShareLock`s, or after `MEDIUM_IDLE_S` (60 s); high when other sessions
  waited for its locks during the window.

## Known false positives
An interactive `psql` session a person left open is reported too (rightly: it holds
locks), as is a tool that keeps a transaction open on purpose between its statements.
"""

from __future__ import annotations

from queryaudit.checks import declare
from queryaudit.checks._locks import alter_database_sql, describe, lock_facts, real_queryids, setting_is_off
from queryaudit.checks.long_transaction import is_idle_in_transaction, transaction_evidence
from queryaudit.findings import Finding
from queryaudit.locks.facts import IDLE_IN_TRANSACTION_S
from queryaudit.snapshot import Snapshot

ID = "idle-in-transaction"
TITLE = "Idle in transaction"

MEDIUM_IDLE_S = 60.0
_ = IDLE_IN_TRANSACTION_S  # the default threshold, recorded per sample in LockFacts.idle_in_transaction_s
CHECK = declare(ID, TITLE, family="locks", fix="application", thresholds=("MEDIUM_IDLE_S",))


def run(snapshot: Snapshot) -> list[Finding]:
    findings = []
    for facts in lock_facts(snapshot):
        for obs in facts.transactions:
            if not is_idle_in_transaction(facts, obs):
                continue
            strong_locks = [lock for lock in obs.held_locks if not lock.startswith("AccessShareLock ")]
            severity = (
                "high"
                if obs.blocked_ms > 0
                else "medium"
                if obs.holds_xid or strong_locks or obs.max_idle_in_transaction_s >= MEDIUM_IDLE_S
                else "low"
            )
            stmt = describe(facts, obs.statement, snapshot)
            who = obs.application_name or obs.usename or f"pid {obs.pid}"
            blocked = f", {obs.blocked_ms / 1000:.1f} s of others' waits behind it" if obs.blocked_ms else ""
            fix = (
                alter_database_sql(snapshot, "idle_in_transaction_session_timeout", "60s")
                if setting_is_off(facts, "idle_in_transaction_session_timeout")
                else None
            )
            findings.append(
                Finding(
                    check=ID,
                    severity=severity,
                    title=f"Session idle in transaction for {obs.max_idle_in_transaction_s:.0f} s ({who}){blocked}",
                    queryids=real_queryids(facts, [obs.statement]),
                    fix_sql=fix,
                    advice="Commit or roll back before slow work and on every error path; reset pooled connections; "
                    "set idle_in_transaction_session_timeout so a forgotten transaction cannot hold its locks.",
                    confidence="high",
                    effort="application",
                    evidence={
                        **transaction_evidence(facts, obs),
                        "last_statement": stmt,
                        "threshold_s": facts.idle_in_transaction_s,
                    },
                    key=f"{obs.usename}|{obs.application_name}|{obs.statement}",
                )
            )
    return findings
