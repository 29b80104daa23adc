"""Lock contention, long and idle transactions, on real clusters with real contending
sessions (threads, each with its own connection, all bounded in time)."""
from __future__ import annotations

import json
import threading
import time

import psycopg
import pytest

from conftest import run_cli
from helpers import validate_report
from queryaudit.checks import run_checks
from queryaudit.collect.locks import LockSampler, SampleOptions
from queryaudit.connect import session
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
    _wait_until(db, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'", expected)


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
    out = tmp_path / "r.json"
    result = run_cli("audit", "--dsn", empty_db.dsn, "--sample-seconds", "1", "--json", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    validate_report(report)

    finding = _finding(report, "lock-contention", "public.accounts")
    ev = finding["evidence"]
    assert ev["source"] == "sample" and ev["wait_share"] > 0.5 and ev["wait_ms"] > 1000
    assert {"hot-row", "idle-blocker"} <= set(ev["patterns"])
    assert ev["rows"] and set(ev["lock_modes"]) & {"ShareLock", "ExclusiveLock"}
    blocker = ev["blocking_statements"][0]
    assert blocker["query"].startswith("UPDATE accounts SET balance = balance +")
    assert any(w["query"].startswith("UPDATE accounts SET balance = balance -") for w in ev["waiting_statements"])
    if empty_db.server.version_num >= 140000:  # pg_stat_activity.query_id is 14+
        assert blocker["queryid"] in finding["queryids"]
    assert "idle_in_transaction_session_timeout" in finding["advice"]

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
    assert finding["severity"] == "high" and "ddl-queue" in ev["patterns"]
    assert "lock_timeout" in finding["fix_sql"]
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


def test_sampler_stops_at_its_deadline_and_reads_no_locks_while_nobody_waits(empty_db, sessions):
    _accounts(empty_db)
    with session(empty_db.dsn) as conn:
        started = time.monotonic()
        facts = LockSampler(conn, SampleOptions(seconds=0.6, rate_hz=50)).run()
        elapsed = time.monotonic() - started
        # The deadline, plus at most the last tick's query (a loaded CI machine is slow).
        assert 0.6 <= elapsed < 1.1, elapsed
        assert facts.lock_queries == 0 and 5 <= facts.ticks <= 31
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "30s"  # the audit's limits are back
        assert conn.execute("SHOW lock_timeout").fetchone()[0] == "1s"

        sessions.hold("UPDATE accounts SET balance = 1 WHERE id = 1")
        sessions.run("UPDATE accounts SET balance = 2 WHERE id = 1")
        _waiting(empty_db, 1)
        started = time.monotonic()
        facts = LockSampler(conn, SampleOptions(seconds=0.6, rate_hz=50)).run()
        assert time.monotonic() - started < 1.1
        assert facts.lock_queries == facts.ticks > 0 and facts.waits


def test_long_and_idle_transactions_are_reported(empty_db, sessions):
    _accounts(empty_db)
    sessions.hold("SELECT balance FROM accounts WHERE id = 3 FOR UPDATE")
    # A transaction that keeps running: cancelled once sampled.
    sessions.run("BEGIN; UPDATE accounts SET balance = 5 WHERE id = 9; SELECT pg_sleep(15); COMMIT", app="batch")
    _wait_until(empty_db, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'batch' "
                          "AND wait_event = 'PgSleep'", 1)
    time.sleep(0.5)
    try:
        with session(empty_db.dsn) as conn:
            from queryaudit.collect.server import collect_server

            snap = Snapshot(server=collect_server(conn), collected_at="now")
            snap.lock_samples = LockSampler(conn, SampleOptions(seconds=0.5, long_transaction_s=0.3,
                                                                idle_in_transaction_s=0.3)).run()
    finally:
        empty_db.execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'batch'")
    snap = Snapshot.from_dict(json.loads(snap.to_json()))  # what a saved snapshot replays
    findings = [f.to_dict() for f in run_checks(snap, only={"long-transaction", "idle-in-transaction"})]

    idle = _finding(findings, "idle-in-transaction")
    assert idle["evidence"]["application_name"] == "holder"
    assert idle["evidence"]["last_statement"]["query"].startswith("SELECT balance FROM accounts WHERE id = $1 FOR UPDATE")
    assert "RowShareLock on public.accounts" in idle["evidence"]["held_locks"]
    assert idle["severity"] == "medium" and "idle_in_transaction_session_timeout" in idle["fix_sql"]
    long = _finding(findings, "long-transaction")
    assert long["evidence"]["application_name"] == "batch" and long["evidence"]["holds_xid"]
    assert long["evidence"]["state"] == "active" and long["severity"] == "medium"
    assert "pg_sleep" in long["evidence"]["last_statement"]["query"]
    assert all(f["evidence"]["application_name"] != "holder" for f in findings if f["check"] == "long-transaction")
