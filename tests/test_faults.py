"""Faults during an audit: what was collected is kept, the report is written and marked partial."""

import json
import signal
import subprocess
import sys
import time

import psycopg

from conftest import run_cli
from helpers import validate_report
from queryaudit.collect import CollectOptions, collect_snapshot
from queryaudit.connect import session
from queryaudit.pipeline import analyse


def test_backend_terminated_mid_audit_gives_partial_report(shop_db):
    shop_db.run_workload("shop")

    def terminate_own_backend(conn, snapshot):
        pid = conn.info.backend_pid
        shop_db.execute("SELECT pg_terminate_backend(%s)", (pid,))
        conn.execute("SELECT 1")  # the next statement finds the connection gone

    def never_reached(conn, snapshot):
        raise AssertionError("a stage ran on a dead connection")

    options = CollectOptions(stages=[("killer", terminate_own_backend), ("after", never_reached)])
    with session(shop_db.dsn) as conn:
        snap = collect_snapshot(conn, options)
    assert snap.partial
    stages = {e.stage: e.message for e in snap.errors}
    assert "killer" in stages and "terminat" in stages["killer"].lower()
    assert "connection" in stages["after"]
    # What came before the fault is all there, and the report still builds and validates.
    assert snap.statements and snap.tables and snap.indexes
    report = analyse(snap)
    validate_report(report)
    assert report["partial"] is True and {e["stage"] for e in report["errors"]} >= {"killer", "after"}


def test_statement_timeout_in_a_stage_is_recorded_and_the_audit_goes_on(shop_db):
    def slow(conn, snapshot):
        conn.execute("SET statement_timeout = '50ms'")
        try:
            conn.execute("SELECT pg_sleep(2)")
        finally:
            conn.execute("SET statement_timeout = '30s'")

    reached = []
    options = CollectOptions(stages=[("slow", slow), ("next", lambda conn, snap: reached.append(True))])
    with session(shop_db.dsn) as conn:
        snap = collect_snapshot(conn, options)
    assert reached == [True]
    assert snap.partial and "statement timeout" in snap.errors[0].message


def test_lock_timeout_in_a_stage_is_recorded(shop_db):
    with psycopg.connect(shop_db.dsn) as holder:  # holds ACCESS EXCLUSIVE until rollback
        holder.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")

        def read_orders(conn, snapshot):
            conn.execute("SELECT count(*) FROM orders")

        with session(shop_db.dsn) as conn:
            snap = collect_snapshot(conn, CollectOptions(stages=[("read orders", read_orders)]))
        holder.rollback()
    assert snap.partial and "lock timeout" in snap.errors[-1].message


def test_ctrl_c_writes_a_partial_report(shop_db, tmp_path):
    out = tmp_path / "interrupted.json"
    # Lock sampling keeps the audit busy long enough to interrupt it mid-collection.
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "queryaudit.cli",
            "audit",
            "--dsn",
            shop_db.dsn,
            "--no-explain",
            "--sample-seconds",
            "30",
            "--json",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Wait until the sampler has run a tick (pg_blocking_pids is in its query): the stages
    # before it (statements, catalog) are then collected, however slow a busy machine is.
    deadline = time.monotonic() + 120
    while not shop_db.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'queryaudit' "
        "AND datname = current_database() AND query LIKE '%%pg_blocking_pids%%'"
    )[0][0]:
        assert time.monotonic() < deadline and proc.poll() is None, "the audit never started sampling"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert out.exists(), (proc.returncode, stderr)
    report = json.loads(out.read_text())
    validate_report(report)
    assert report["partial"] is True
    assert any("interrupted" in e["message"] for e in report["errors"])
    assert report["queries"], "what was collected before the interrupt is in the report"


def test_server_restart_mid_audit_gives_partial_report(server, tmp_path):
    db = server.create_database("shop")
    db.run_workload("shop")

    def restart_server(conn, snapshot):
        server.cluster.restart()
        conn.execute("SELECT 1")

    with session(db.dsn) as conn:
        snap = collect_snapshot(conn, CollectOptions(stages=[("restart", restart_server)]))
    server.cluster.wait_ready()
    assert snap.partial and snap.errors[0].stage == "restart"
    assert snap.statements and snap.tables
    validate_report(analyse(snap))


def test_backend_terminated_during_explain(shop_db, tmp_path):
    """pg_terminate_backend on the auditor's EXPLAIN ANALYZE: the statement is skipped
    with the reason, the audit finishes, the report is written and marked partial."""
    import threading

    # A self-join of order lines: about a second, with a parameter the auditor can draw
    # from pg_stats (quantity), so it gets EXPLAIN ANALYZE rather than a generic plan.
    slow = "SELECT count(*) FROM order_items a JOIN order_items b ON b.product_id = a.product_id WHERE a.quantity = %s"
    for _ in range(3):
        shop_db.execute(slow, (2,))
    killed = []

    def killer():
        deadline = time.monotonic() + 60
        with shop_db.connect() as conn:
            while time.monotonic() < deadline and not killed:
                row = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = 'queryaudit' "
                    "AND query LIKE 'EXPLAIN%%ANALYZE%%' AND state = 'active' "
                    "AND now() - query_start > interval '100 ms'"
                ).fetchone()
                if row:
                    conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                    killed.append(row[0])
                time.sleep(0.005)

    thread = threading.Thread(target=killer)
    thread.start()
    out = tmp_path / "r.json"
    result = run_cli("audit", "--dsn", shop_db.dsn, "--json", str(out))
    thread.join()
    assert killed, "the EXPLAIN was never seen running"
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    validate_report(report)
    assert report["partial"] is True and report["errors"]
    entry = next(q for q in report["queries"] if "b.product_id = a.product_id" in q["query"])
    assert entry["plan_skipped_reason"], entry
    assert report["queries"] and report["findings"], "the rest of the audit is there"


# A statement slower than the --explain-timeout by a sleep (a floor, whatever the load), and
# a timeout the shop's fast lookups meet with room to spare on a busy machine.
EXPLAIN_TIMEOUT_S = 1.0
SLOW_S = 1.5


def test_explain_timeout_gives_plain_explain_for_slow_statements(shop_db, tmp_path):
    """A statement slower than --explain-timeout is not executed by EXPLAIN ANALYZE: it
    gets a plain EXPLAIN, and the report says why."""
    shop_db.run_workload("shop")
    # STABLE, so only its recorded mean keeps the auditor from executing it.
    shop_db.execute("CREATE FUNCTION shop_wait(float8) RETURNS int STABLE LANGUAGE sql AS 'SELECT 1 FROM pg_sleep($1)'")
    for _ in range(2):
        shop_db.execute("SELECT count(*), shop_wait(%s) FROM products WHERE price > %s", (SLOW_S, 10))
    out = tmp_path / "r.json"
    result = run_cli("audit", "--dsn", shop_db.dsn, "--explain-timeout", str(EXPLAIN_TIMEOUT_S), "--json", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    slow = next(q for q in report["queries"] if "shop_wait" in q["query"])
    assert slow["mean_exec_time_ms"] >= SLOW_S * 1000
    assert slow["plan_method"] == "explain" and "1000 ms" in slow["plan_skipped_reason"], slow["plan_skipped_reason"]
    assert slow["plan"] and "Actual Total Time" not in json.dumps(slow["plan"])
    fast = next(q for q in report["queries"] if "customer_id = $1" in q["query"])
    assert fast["plan_method"] == "analyze"
