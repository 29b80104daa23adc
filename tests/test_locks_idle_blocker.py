"""The idle-blocker verdict, database-free: the root blocker must be seen idle in its
transaction at consecutive ticks of a wait, in one idle period; one tick that caught a client
held up by the scheduler between two statements leaves a hot-row wait a hot-row wait."""

from __future__ import annotations

from queryaudit.checks import lock_contention
from queryaudit.checks._locks import IDLE_BLOCKER_S, IDLE_BLOCKER_TICKS, classify
from queryaudit.locks.facts import LockFacts, LockStatement, LockWait, TimelineTick
from queryaudit.locks.sampling import note_root_idle
from queryaudit.snapshot import ServerInfo, Snapshot

UPDATE = "UPDATE accounts SET balance = balance + $1 WHERE id = $2"
KEY = ("public.accounts", "transactionid", "ShareLock", "w", "r", "r")


def row_wait() -> LockWait:
    return LockWait(
        relation="public.accounts", locktype="transactionid", mode="ShareLock", waiting="w", blocking="r", root="r"
    )


def sampled(ticks: list[tuple[int, int, float]], waiters_per_tick: int = 1) -> LockWait:
    """A wait seen at each (tick, root pid, root idle s), by this many waiters per tick."""
    wait, stretches = row_wait(), {}
    for tick, root_pid, idle_s in ticks:
        for _ in range(waiters_per_tick):
            wait.samples += 1
            note_root_idle(stretches, KEY, wait, tick, root_pid, idle_s)
    return wait


def verdict(wait: LockWait) -> str:
    facts = LockFacts(source="sample", statements={k: LockStatement(k, None, UPDATE) for k in ("w", "r")})
    return classify(
        facts,
        wait,
        Snapshot(server=ServerInfo(version_num=0, version="", database=""), collected_at=""),
        (set(), set()),
    )


def test_one_gap_tick_in_a_hot_row_wait_stays_hot_row():
    # pgbench-like: each tick a different transaction is the root, busy (0 s idle) or idle for
    # microseconds between its statements; at tick 7 the root's client was held up 1.36 s.
    ticks = [(n, 100 + n, 0.0 if n % 2 else 0.0002) for n in range(1, 21)]
    ticks[6] = (7, 107, 1.36)
    wait = sampled(ticks, waiters_per_tick=2)
    assert (wait.root_idle_ticks, wait.root_idle_s) == (1, 1.36)
    assert verdict(wait) == "hot-row"


def test_a_root_idle_across_consecutive_ticks_is_an_idle_blocker():
    wait = sampled([(n, 42, 0.3 + 0.1 * n) for n in range(1, 11)])  # idle 0.4 s .. 1.3 s, one period
    assert (wait.root_idle_ticks, wait.root_idle_s) == (10, 1.3)
    assert verdict(wait) == "idle-blocker"


def test_the_stretch_needs_both_its_ticks_and_its_length():
    just_enough = sampled([(n, 42, IDLE_BLOCKER_S + 0.1 * n) for n in range(1, IDLE_BLOCKER_TICKS + 1)])
    assert verdict(just_enough) == "idle-blocker"
    one_short = sampled([(n, 42, IDLE_BLOCKER_S + 0.1 * n) for n in range(1, IDLE_BLOCKER_TICKS)])
    assert verdict(one_short) == "hot-row"
    brief = sampled([(n, 42, 0.01 * n) for n in range(1, 30)])  # a long stretch, never 1 s idle
    assert (brief.root_idle_ticks, verdict(brief)) == (29, "hot-row")


def test_a_new_idle_period_a_new_session_or_a_missed_tick_restart_the_stretch():
    restarted = sampled([(1, 42, 1.1), (2, 42, 1.2), (3, 42, 0.05), (4, 42, 1.05)])  # ran a statement at 3
    assert (restarted.root_idle_ticks, restarted.root_idle_s) == (2, 1.2)
    other_root = sampled([(1, 42, 1.1), (2, 43, 1.2), (3, 42, 1.3)])
    assert other_root.root_idle_ticks == 1
    not_seen = sampled([(1, 42, 1.1), (3, 42, 1.3), (5, 42, 1.5)])  # the wait was not seen at 2 and 4
    assert not_seen.root_idle_ticks == 1
    busy_between = sampled([(1, 42, 1.1), (2, 42, 0.0), (3, 42, 1.3)])
    assert (busy_between.root_idle_ticks, verdict(busy_between)) == (1, "hot-row")


def test_database_time_is_never_reported_below_the_waits_it_holds():
    """The sampler sums database time and each wait apart, each rounded: with only waiters
    active the two sums can differ in the last digit (CI saw 5992.8 ms of database time
    beside 5992.9 ms of waits). The waits are database time, so the evidence never shows less."""
    wait = row_wait()
    wait.wait_ms, wait.samples = 5992.9, 30
    facts = LockFacts(
        source="sample",
        window_s=2.0,
        statements={k: LockStatement(k, None, UPDATE) for k in ("w", "r")},
        waits=[wait],
        timeline=[TimelineTick(t_ms=n * 200.0, waiting=3, relations={"public.accounts": 3}) for n in range(10)],
        db_time_ms=5992.8,
    )
    snapshot = Snapshot(server=ServerInfo(version_num=0, version="", database=""), collected_at="")
    snapshot.lock_samples = facts
    [finding] = lock_contention.run(snapshot)
    ev = finding.evidence
    assert ev["db_time_ms"] >= ev["wait_ms"] == 5992.9 and ev["wait_share_of_db_time"] == 1.0
