"""Lock contention, long and idle transactions, on real clusters with real contending
sessions (threads, each with its own connection, all bounded in time)."""

from __future__ import annotations

import io
import json
import subprocess
import threading
import time

import psycopg
import pytest
from rich.console import Console

from conftest import run_cli
from helpers import validate_report
from queryaudit.checks import run_checks
from queryaudit.checks._locks import IDLE_BLOCKER_TICKS
from queryaudit.connect import session
from queryaudit.locks import sampling
from queryaudit.locks.report import facts_section, print_section
from queryaudit.locks.sampling import SAMPLER_STATEMENT_TIMEOUT_MS, LockSampler, SampleOptions
from queryaudit.snapshot import Snapshot

WAIT_LIMIT = "60s"  # no contending session can outlive a failed test by more than this


def _wait_until(db, sql: str, expected: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.execute(sql)[0][0] >= expected:
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {sql}")


def _waiting(db, expected: int) -> None:
    _wait_until(
        db,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        expected,
    )


class Sessions:
    """Background statements on their own connections; every one ends with the test."""

    def __init__(self, db):
        self.db, self.threads, self.conns, self.errors = db, [], [], []

    def hold(self, *statements: str) -> psycopg.Connection:
        """A transaction that ran `statements` and stays open (idle in transaction)."""
        conn = psycopg.connect(self.db.dsn, application_name="holder")
        conn.execute(f"SET lock_timeout = '{WAIT_LIMIT}'")
        for s in statements:
            conn.execute(s)
        self.conns.append(conn)
        return conn

    def run(self, statement: str, app: str = "waiter") -> None:
        def target():
            try:
                with psycopg.connect(self.db.dsn, autocommit=True, application_name=app) as conn:
                    conn.execute(f"SET lock_timeout = '{WAIT_LIMIT}'")
                    conn.execute(f"SET statement_timeout = '{WAIT_LIMIT}'")
                    conn.execute(statement)
            except psycopg.Error as exc:
                self.errors.append(exc)

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self.threads.append(thread)

    def close(self) -> None:
        for conn in self.conns:
            conn.rollback()
            conn.close()
        for thread in self.threads:
            thread.join(timeout=20)


@pytest.fixture
def sessions(empty_db):
    s = Sessions(empty_db)
    yield s
    s.close()


def _accounts(db) -> None:
    db.execute("CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL DEFAULT 0)")
    db.execute("INSERT INTO accounts (id) SELECT generate_series(1, 100)")


def _finding(report_or_findings, check: str, table: str | None = None) -> dict:
    findings = report_or_findings["findings"] if isinstance(report_or_findings, dict) else report_or_findings
    found = [f for f in findings if f["check"] == check and (table is None or f["table"] == table)]
    assert found, f"no {check} finding on {table}: {[(f['check'], f['table']) for f in findings]}"
    return found[0]


def test_row_lock_held_by_long_transaction_is_found_by_the_audit(empty_db, sessions, tmp_path):
    _accounts(empty_db)
    sessions.hold("UPDATE accounts SET balance = balance + 1 WHERE id = 7")
    for _ in range(3):
        sessions.run("UPDATE accounts SET balance = balance - 1 WHERE id = 7")
    _waiting(empty_db, 3)
    time.sleep(1.0)  # the holder has been idle in its transaction for a second: that is the cause
    out = tmp_path / "r.json"
    # Two seconds: the verdict needs the holder seen idle at consecutive ticks, and each tick
    # that is not lost takes under the sampler's 1 s statement_timeout.
    result = run_cli("audit", "--dsn", empty_db.dsn, "--sample-seconds", "2", "--json", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    validate_report(report)

    finding = _finding(report, "lock-contention", "public.accounts")
    ev = finding["evidence"]
    assert ev["source"] == "sample" and ev["wait_share"] > 0.5 and ev["wait_ms"] > 1000
    assert ev["pattern"] == "idle-blocker" and ev["patterns"] == ["idle-blocker"]
    assert ev["root_idle_in_transaction_s"] >= 1.0
    # One idle period, seen at every tick that was not lost (the holder never ran again).
    ticks = report["locks"]["sample"]["ticks"]
    assert ev["root_idle_ticks"] == ticks >= IDLE_BLOCKER_TICKS == ev["idle_threshold_ticks"]
    assert ev["rows"] and set(ev["lock_modes"]) & {"ShareLock", "ExclusiveLock"}
    blocker = ev["blocking_statements"][0]
    assert blocker["query"].startswith("UPDATE accounts SET balance = balance +")
    assert any(w["query"].startswith("UPDATE accounts SET balance = balance -") for w in ev["waiting_statements"])
    if empty_db.server.version_num >= 140000:  # pg_stat_activity.query_id is 14+
        assert blocker["queryid"] in finding["queryids"]
    assert "idle_in_transaction_session_timeout" in finding["advice"]
    assert "idle_in_transaction_session_timeout = '60s'" in finding["fix_sql"]
    # The saving: the waiters' sampled wait over the database time sampled in the window.
    assert 0 < finding["predicted_saving"]["share_of_total_time"] <= 1
    assert ev["db_time_ms"] >= ev["wait_ms"] > 0

    locks = report["locks"]["sample"]
    assert locks["max_waiting"] == 3 and locks["lock_queries"] >= 1
    chain = locks["chains"][0]
    assert chain["root"]["query"].startswith("UPDATE accounts SET balance = balance +")
    assert chain["root_state"] == "idle in transaction"
    assert chain["tree"]["children"] and chain["tree"]["children"][0]["relation"] == "public.accounts"
    assert locks["timeline"] and all(t["waiting"] == 3 for t in locks["timeline"])


def test_ddl_waiting_behind_a_select_transaction_blocks_the_reads_behind_it(empty_db, sessions, tmp_path):
    _accounts(empty_db)
    sessions.hold("SELECT count(*) FROM accounts WHERE balance >= 0")
    sessions.run("ALTER TABLE accounts ADD COLUMN note text", app="migration")
    _waiting(empty_db, 1)
    for _ in range(2):
        sessions.run("SELECT sum(balance) FROM accounts", app="reader")
    _waiting(empty_db, 3)
    out = tmp_path / "locks.json"
    result = run_cli("locks", "--dsn", empty_db.dsn, "--seconds", "1", "--rate", "20", "--json", str(out))
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())

    finding = _finding(data, "lock-contention", "public.accounts")
    ev = finding["evidence"]
    assert finding["severity"] == "high" and ev["pattern"] == "ddl-queue"
    assert "lock_timeout" in finding["fix_sql"]
    assert [d["query"] for d in ev["ddl_statements"]] == ["ALTER TABLE accounts ADD COLUMN note text"]
    assert ev["queued_behind_ddl"] == 1 and ev["ddl_waited_behind"][0].startswith("SELECT count(*) FROM accounts")
    assert finding["predicted_saving"]["share_of_total_time"] > 0
    assert ev["blocking_statements"][0]["query"].startswith("SELECT count(*) FROM accounts")
    waiting = {w["query"].split()[0]: w for w in ev["waiting_statements"]}
    assert waiting["ALTER"]["modes"] == ["AccessExclusiveLock"]
    assert waiting["SELECT"]["query"].startswith("SELECT sum(balance) FROM accounts")
    assert waiting["SELECT"]["modes"] == ["AccessShareLock"]
    # The reads wait for the ALTER (queued ahead of them), which waits for the SELECT.
    assert ev["direct_blockers"][0]["query"].startswith("ALTER TABLE accounts")
    tree = data["locks"]["sample"]["chains"][0]["tree"]
    assert tree["query"].startswith("SELECT count(*)") and tree["state"] == "idle in transaction"
    (alter,) = tree["children"]
    assert alter["query"].startswith("ALTER TABLE") and alter["mode"] == "AccessExclusiveLock"
    assert alter["blocked_by_holds"] == ["AccessShareLock"]
    assert [c["mode"] for c in alter["children"]] == ["AccessShareLock", "AccessShareLock"]
    assert "ALTER TABLE accounts" in result.stdout and "Top blockers" in result.stdout


class VirtualClock:
    """Time that moves only when the sampler sleeps: how many ticks a window holds and when
    it ends no longer depend on how fast a busy machine answers each tick."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


# Past its deadline the sampler runs at most its last tick and the held-lock query, each
# bounded by the statement_timeout it sets; the rest is slack for a descheduled process.
AFTER_DEADLINE_S = 2 * SAMPLER_STATEMENT_TIMEOUT_MS / 1000 + 1.0


def test_sampler_stops_at_its_deadline_and_reads_no_locks_while_nobody_waits(empty_db, sessions):
    _accounts(empty_db)
    with session(empty_db.dsn) as conn:
        clock = VirtualClock()
        facts = LockSampler(conn, SampleOptions(seconds=0.6, rate_hz=50), clock=clock, sleep=clock.sleep).run()
        # 0.6 s at 50 Hz: a tick every 20 ms from 0 up to the deadline (31 if the sum of the
        # intervals rounds just under 0.6), none after it.
        assert facts.ticks in (30, 31) and facts.elapsed_s == pytest.approx(0.6, abs=0.02), facts
        assert all(t.t_ms < 600 for t in facts.timeline)
        assert facts.lock_queries == 0
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "30s"  # the audit's limits are back
        assert conn.execute("SHOW lock_timeout").fetchone()[0] == "1s"

        sessions.hold("UPDATE accounts SET balance = 1 WHERE id = 1")
        sessions.run("UPDATE accounts SET balance = 2 WHERE id = 1")
        _waiting(empty_db, 1)
        started = time.monotonic()  # the real clock: a deadline the sampler keeps however slow a tick is
        facts = LockSampler(conn, SampleOptions(seconds=0.6, rate_hz=50)).run()
        assert 0.6 <= time.monotonic() - started < 0.6 + AFTER_DEADLINE_S
        assert 0.6 <= facts.elapsed_s and 1 <= facts.ticks <= 31
        assert facts.lock_queries == facts.ticks > 0 and facts.waits


@pytest.mark.parametrize("limit", ["statement_timeout", "lock_timeout"])
def test_a_tick_slower_than_its_timeout_is_lost_and_the_sample_goes_on(empty_db, sessions, monkeypatch, limit):
    # Ticks 4 to 6 find the catalog the tick query reads (pg_namespace, this database's own)
    # locked by another session: each waits until its lock_timeout, or with a lock_timeout
    # past the statement_timeout, until the statement_timeout cancels it. The virtual clock
    # counts ticks, not seconds: how long a lost tick takes does not change what is counted.
    if limit == "statement_timeout":
        monkeypatch.setattr(sampling, "SAMPLER_LOCK_TIMEOUT_MS", 10 * SAMPLER_STATEMENT_TIMEOUT_MS)
    _accounts(empty_db)
    sessions.hold("UPDATE accounts SET balance = 1 WHERE id = 1")
    sessions.run("UPDATE accounts SET balance = 2 WHERE id = 1")
    _waiting(empty_db, 1)
    catalog = psycopg.connect(empty_db.dsn)
    clock, pauses = VirtualClock(), []

    def sleep(seconds: float) -> None:  # between two ticks: the ticks so far are len(pauses)
        pauses.append(seconds)
        if len(pauses) == 3:
            catalog.execute("LOCK TABLE pg_catalog.pg_namespace IN ACCESS EXCLUSIVE MODE")
        if len(pauses) == 6:
            catalog.rollback()
        clock.sleep(seconds)

    try:
        with session(empty_db.dsn) as conn:
            facts = LockSampler(conn, SampleOptions(seconds=0.2, rate_hz=50), clock=clock, sleep=sleep).run()
            assert conn.execute("SHOW statement_timeout").fetchone()[0] == "30s"  # the audit's limits are back
    finally:
        catalog.close()
    # 0.2 s at 50 Hz: 10 ticks (11 if the sum of the intervals rounds just under 0.2), 3 lost.
    assert facts.lost_ticks == 3 and facts.ticks + facts.lost_ticks in (10, 11), facts
    assert facts.elapsed_s == pytest.approx(0.2, abs=0.02) and not facts.interrupted
    assert facts.waits and facts.waits[0].samples == facts.ticks  # the wait was seen before and after
    section = facts_section(facts)
    assert section["lost_ticks"] == 3 and section["ticks"] == facts.ticks
    console = Console(file=io.StringIO(), width=200)
    print_section(section, console, "locks")
    assert f"{facts.ticks} samples (3 lost: slower than the sampler statement_timeout)" in console.file.getvalue()


def test_long_and_idle_transactions_are_reported(empty_db, sessions):
    _accounts(empty_db)
    sessions.hold("SELECT balance FROM accounts WHERE id = 3 FOR UPDATE")
    # A transaction that keeps running: cancelled once sampled.
    sessions.run("BEGIN; UPDATE accounts SET balance = 5 WHERE id = 9; SELECT pg_sleep(15); COMMIT", app="batch")
    _wait_until(
        empty_db, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'batch' AND wait_event = 'PgSleep'", 1
    )
    time.sleep(0.5)
    try:
        with session(empty_db.dsn) as conn:
            from queryaudit.collect.server import collect_server

            snap = Snapshot(server=collect_server(conn), collected_at="now")
            snap.lock_samples = LockSampler(
                conn, SampleOptions(seconds=0.5, long_transaction_s=0.3, idle_in_transaction_s=0.3)
            ).run()
    finally:
        empty_db.execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'batch'")
    snap = Snapshot.from_dict(json.loads(snap.to_json()))  # what a saved snapshot replays
    findings = [f.to_dict() for f in run_checks(snap, only={"long-transaction", "idle-in-transaction"})]

    idle = _finding(findings, "idle-in-transaction")
    assert idle["evidence"]["application_name"] == "holder"
    assert idle["evidence"]["last_statement"]["query"].startswith(
        "SELECT balance FROM accounts WHERE id = $1 FOR UPDATE"
    )
    assert "RowShareLock on public.accounts" in idle["evidence"]["held_locks"]
    assert idle["severity"] == "medium" and "idle_in_transaction_session_timeout" in idle["fix_sql"]
    long = _finding(findings, "long-transaction")
    assert long["evidence"]["application_name"] == "batch" and long["evidence"]["holds_xid"]
    assert long["evidence"]["state"] == "active" and long["severity"] == "medium"
    assert "pg_sleep" in long["evidence"]["last_statement"]["query"]
    assert all(f["evidence"]["application_name"] != "holder" for f in findings if f["check"] == "long-transaction")


def test_pgbench_tpcb_contention_is_hot_rows_with_a_predicted_saving(server, empty_db, tmp_path):
    """pgbench TPC-B, 8 clients on scale 10: every transaction updates one of 10 branch rows
    and one of 100 teller rows. The waits are hot rows; nobody is idle in a transaction for
    more than the gap between two statements, so no idle-in-transaction advice or fix.

    pgbench runs until the sample is taken (its -T is only a bound should the test hang): a
    fixed run of a few seconds could end before a loaded machine has even started the CLI."""
    pgbench = server.cluster.bin_dir / "pgbench"
    init = subprocess.run([str(pgbench), "-i", "-s", "10", "-q", empty_db.dsn], capture_output=True, text=True)
    assert init.returncode == 0, init.stderr
    bench = subprocess.Popen(
        [str(pgbench), "-n", "-c", "8", "-j", "2", "-T", "300", empty_db.dsn],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _waiting(empty_db, 1)
        out = tmp_path / "locks.json"
        result = run_cli("locks", "--dsn", empty_db.dsn, "--seconds", "3", "--json", str(out))
        assert result.returncode == 0, result.stderr
        assert bench.poll() is None, "pgbench ended before the sample did"
    finally:
        bench.terminate()
        bench.wait(timeout=30)
    findings = json.loads(out.read_text())["findings"]

    hot = [f for f in findings if f["check"] == "lock-contention" and f["evidence"]["pattern"] == "hot-row"]
    assert {f["table"] for f in hot} & {"public.pgbench_branches", "public.pgbench_tellers"}, [
        (f["check"], f["title"]) for f in findings
    ]
    branches = max(hot, key=lambda f: f["evidence"]["wait_ms"])
    ev = branches["evidence"]
    assert ev["variant"] == "counter" and ev["hot_rows"] and ev["row_waits"] >= ev["distinct_rows"]
    assert any(w["query"].startswith("UPDATE pgbench_") for w in ev["waiting_statements"])
    assert "update the hot row last" in branches["advice"] and "shard the counter" in branches["advice"]
    saving = branches["predicted_saving"]
    assert (
        saving
        and 0 < saving["share_of_total_time"] <= 1
        and saving["total_ms"] == pytest.approx(ev["wait_ms"], rel=0.01)
    )
    assert 0 < ev["wait_share_of_db_time"] <= 1 and ev["db_time_ms"] >= ev["wait_ms"]
    # The gaps between pgbench's statements are not idle transactions that matter.
    assert all("idle_in_transaction_session_timeout" not in (f.get("fix_sql") or "") for f in findings)
    assert not [f for f in findings if f["check"] == "idle-in-transaction"]
    assert not [f for f in findings if f["evidence"].get("pattern") == "idle-blocker"]


def _sample(db, seconds: float = 1.0, **options) -> list[dict]:
    """Sample the database and run the lock checks on what a saved snapshot replays."""
    from queryaudit.collect.catalog import collect_foreign_keys
    from queryaudit.collect.server import collect_server

    with session(db.dsn) as conn:
        snap = Snapshot(server=collect_server(conn), collected_at="now")
        snap.foreign_keys = collect_foreign_keys(conn)
        snap.lock_samples = LockSampler(conn, SampleOptions(seconds=seconds, **options)).run()
    snap = Snapshot.from_dict(json.loads(snap.to_json()))
    return [f.to_dict() for f in run_checks(snap, only={"lock-contention"})]


def _pattern(findings: list[dict], pattern: str) -> dict:
    found = [f for f in findings if f["evidence"]["pattern"] == pattern]
    assert found, [(f["evidence"]["pattern"], f["title"]) for f in findings]
    return found[0]


def test_advisory_lock_waits_name_the_key(empty_db, sessions):
    sessions.hold("SELECT pg_advisory_lock(4242)")
    for _ in range(2):
        sessions.run("SELECT pg_advisory_lock(4242), pg_advisory_unlock(4242)")
    _waiting(empty_db, 2)
    finding = _pattern(_sample(empty_db), "advisory")
    ev = finding["evidence"]
    assert ev["relation"] == "(advisory locks)" and ev["keys"] == ["advisory 4242"]
    assert ev["lock_types"].keys() == {"advisory"} and ev["blocking_statements"][0]["query"].startswith(
        "SELECT pg_advisory_lock"
    )
    assert "pg_try_advisory_lock" in finding["advice"] and finding["predicted_saving"]["share_of_total_time"] > 0
    from queryaudit.redact import redact

    assert "4242" in json.dumps(finding) and "4242" not in json.dumps(redact(finding))  # --redact hides the key


def test_foreign_key_check_waiting_on_a_locked_parent_row(empty_db, sessions):
    _accounts(empty_db)
    empty_db.execute("CREATE TABLE transfers (id serial PRIMARY KEY, account_id int REFERENCES accounts)")
    sessions.hold("SELECT balance FROM accounts WHERE id = 5 FOR UPDATE")
    for _ in range(2):
        sessions.run("INSERT INTO transfers (account_id) VALUES (5)")
    _waiting(empty_db, 2)
    finding = _pattern(_sample(empty_db), "fk-share")
    ev = finding["evidence"]
    assert finding["table"] == "public.accounts" and ev["child_tables"] == ["public.transfers"]
    assert ev["foreign_keys"] == ["transfers_account_id_fkey"]
    assert "FOR NO KEY UPDATE" in finding["advice"]


def test_row_wait_behind_a_long_running_transaction(empty_db, sessions):
    _accounts(empty_db)
    sessions.run("BEGIN; UPDATE accounts SET balance = 5 WHERE id = 9; SELECT pg_sleep(15); COMMIT", app="batch")
    _wait_until(
        empty_db, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'batch' AND wait_event = 'PgSleep'", 1
    )
    sessions.run("UPDATE accounts SET balance = 6 WHERE id = 9")
    _waiting(empty_db, 1)
    try:
        findings = _sample(empty_db, long_transaction_s=0.2)
    finally:
        empty_db.execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'batch'")
    finding = _pattern(findings, "long-transaction")
    assert finding["evidence"]["root_transaction_age_s"] >= 0.2
    assert "transaction_timeout" in finding["advice"] and finding["fix_sql"] is None
    assert not [f for f in findings if f["evidence"]["pattern"] in ("idle-blocker", "hot-row")]
