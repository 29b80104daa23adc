"""The same lock contention, found from a log a real server wrote with log_lock_waits = on."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import psycopg
import pytest

from conftest import VERSIONS, _bin_dir, run_cli
from helpers import validate_report
from queryaudit.demo.cluster import start_cluster

PREFIX = "%m [%p] %q%u@%d "
SETTINGS = {
    "autovacuum": "off",
    "log_lock_waits": "on",
    "deadlock_timeout": "100ms",
    "log_statement": "'all'",
    "log_line_prefix": f"'{PREFIX}'",
    "log_min_messages": "warning",
}


def _background(dsn: str, statement: str, errors: list) -> threading.Thread:
    def target():
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("SET lock_timeout = '10s'")
                conn.execute(statement)
        except psycopg.Error as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def _wait_for_waiters(dsn: str, n: int, log: Path) -> None:
    """n sessions wait, and each has logged "process <pid> still waiting": its deadlock_timeout
    fired (it checked for a deadlock and logged the wait), however long a busy machine took
    to schedule it."""
    deadline = time.monotonic() + 30
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'")]
            text = log.read_text(errors="replace")
            if len(pids) >= n and all(f"process {pid} still waiting for" in text for pid in pids):
                return
            assert time.monotonic() < deadline, f"waiting: {pids}, not all of them logged"
            time.sleep(0.05)


def _contend(dsn: str, log: Path) -> None:
    """Row contention, DDL queued behind a SELECT's transaction, a deadlock, a lock timeout."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL DEFAULT 0)")
        conn.execute("INSERT INTO accounts (id) SELECT generate_series(1, 10)")
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, total int)")
    errors: list = []
    with psycopg.connect(dsn) as holder:
        holder.execute("UPDATE accounts SET balance = balance + 1 WHERE id = 1")
        threads = [_background(dsn, "UPDATE accounts SET balance = balance - 1 WHERE id = 1", errors) for _ in range(2)]
        _wait_for_waiters(dsn, 2, log)
        holder.commit()
        holder.execute("SELECT count(*) FROM orders")
        threads.append(_background(dsn, "ALTER TABLE orders ADD COLUMN note text", errors))
        _wait_for_waiters(dsn, 1, log)
        threads += [_background(dsn, "SELECT sum(total) FROM orders", errors) for _ in range(2)]
        _wait_for_waiters(dsn, 3, log)
        holder.commit()
        for t in threads:
            t.join(timeout=10)
    assert not errors, errors
    a, b = psycopg.connect(dsn), psycopg.connect(dsn)
    try:
        a.execute("UPDATE accounts SET balance = 1 WHERE id = 2")
        b.execute("UPDATE accounts SET balance = 1 WHERE id = 3")
        t = _background(dsn, "SELECT 1", errors)  # keeps the connection count honest; returns at once
        t.join()

        def cross():
            try:
                a.execute("UPDATE accounts SET balance = 2 WHERE id = 3")
            except psycopg.Error as exc:
                errors.append(exc)

        thread = threading.Thread(target=cross, daemon=True)
        thread.start()
        _wait_for_waiters(dsn, 1, log)  # a has checked for a deadlock: b will be the victim
        with pytest.raises(psycopg.errors.DeadlockDetected):
            b.execute("UPDATE accounts SET balance = 2 WHERE id = 2")
        b.rollback()
        thread.join(timeout=10)
        a.rollback()
        a.execute("UPDATE accounts SET balance = 5 WHERE id = 4")
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("SET lock_timeout = '200ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                c.execute("UPDATE accounts SET balance = 6 WHERE id = 4")
        a.rollback()
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_contention_found_from_log_lock_waits(version, tmp_path):
    bin_dir = _bin_dir(version)
    if bin_dir is None:
        pytest.skip(f"{version} binaries not found")
    cluster = start_cluster(bin_dir, SETTINGS)
    try:
        _contend(cluster.dsn(), cluster.log_file)  # each session's log lines are written before it returns
        log = tmp_path / "postgresql.log"
        log.write_text(cluster.log_file.read_text())
        out = tmp_path / "locks.json"
        result = run_cli(
            "locks", "--log", str(log), "--log-line-prefix", PREFIX, "--dsn", cluster.dsn(), "--json", str(out)
        )
        assert result.returncode == 0, result.stderr
        data = json.loads(out.read_text())
    finally:
        cluster.destroy()

    contention = [f for f in data["findings"] if f["check"] == "lock-contention"]
    findings = {(f["table"], f["evidence"]["pattern"]): f for f in contention}
    rows = findings["public.accounts", "hot-row"]
    ev = rows["evidence"]
    assert ev["source"] == "log" and ev["logged_waits"] >= 3 and ev["wait_ms"] > 200
    blockers = [b["query"] for b in ev["blocking_statements"]]
    assert "UPDATE accounts SET balance = balance + $1 WHERE id = $2" in blockers
    assert any(
        w["query"] == "UPDATE accounts SET balance = balance - $1 WHERE id = $2" for w in ev["waiting_statements"]
    )
    assert {"hot-row", "deadlock"} <= set(ev["patterns"]) and rows["predicted_saving"] is None  # no db time in a log
    deadlock = findings["public.accounts", "deadlock"]
    assert deadlock["evidence"]["deadlock_count"] == 1 and "consistent order" in deadlock["advice"]
    assert {p["query"] for p in deadlock["evidence"]["deadlocks"][0]["processes"]} == {
        "UPDATE accounts SET balance = $1 WHERE id = $2"
    }
    assert {t for t, _ in findings} == {"public.accounts", "public.orders"}  # relation OIDs named from the catalog

    ddl = findings["public.orders", "ddl-queue"]["evidence"]
    assert "ddl-queue" in ddl["patterns"]
    assert ddl["blocking_statements"][0]["query"] == "SELECT count(*) FROM orders"
    waiting = {w["query"]: w["modes"] for w in ddl["waiting_statements"]}
    assert waiting == {
        "ALTER TABLE orders ADD COLUMN note text": ["AccessExclusiveLock"],
        "SELECT sum(total) FROM orders": ["AccessShareLock"],
    }
    timeouts = data["locks"]["log"]["lock_timeouts"]
    assert timeouts and timeouts[0]["relation"] == "public.accounts"

    # The audit reads the same log without a server, and reports it.
    report_path = tmp_path / "report.json"
    result = run_cli(
        "audit",
        "--log",
        str(log),
        "--log-line-prefix",
        PREFIX,
        "--json",
        str(report_path),
        env={"PGHOST": "", "PGDATABASE": "", "DATABASE_URL": ""},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(report_path.read_text())
    validate_report(report)
    tables = {f["table"] for f in report["findings"] if f["check"] == "lock-contention"}
    assert {"public.accounts", "public.orders"} <= tables
    assert report["locks"]["log"]["chains"]


def test_incomplete_lock_events_never_break_the_analysis():
    """A log cut mid-way or written with a bare prefix: events lack pids, objects, holders."""
    from queryaudit.checks import run_checks
    from queryaudit.locks.log import analyse_lock_log
    from queryaudit.locks.report import locks_result
    from queryaudit.logs import LockEvent, SessionEndEvent, StatementEvent
    from queryaudit.snapshot import ServerInfo, Snapshot

    events = [LockEvent(kind=k) for k in ("waiting", "acquired", "deadlock", "timeout", "detected", "deadlock-avoided")]
    events += [
        LockEvent(kind="acquired", pid=5, lock_object="transaction 9", holders=[5]),
        LockEvent(kind="waiting", pid=5, holders=[6], timestamp="not a time"),
        StatementEvent(query=""),
        SessionEndEvent(),
        LockEvent(kind="deadlock", detail="Process 1: \nProcess x waits for"),
    ]
    snap = Snapshot(server=ServerInfo(version_num=0, version="", database="x"), collected_at="now")
    snap.lock_log = analyse_lock_log(events)
    assert snap.lock_log.deadlocks and snap.lock_log.lock_timeouts
    assert all(f.check == "lock-contention" for f in run_checks(snap)) and not snap.errors
    json.dumps(locks_result(snap))
