"""Concrete text from the server log (--log): logged bind values are preferred for EXPLAIN
ANALYZE, an auto_explain plan stands in for a statement too slow to explain, and the
index advisor considers statements seen only in the log."""

from __future__ import annotations

import json
import time

import psycopg

from conftest import run_cli


def _wait_logged(server, marker: str) -> None:
    """The server writes its log asynchronously: wait for the last statement to be there."""
    deadline = time.monotonic() + 30
    while marker not in server.cluster.log_file.read_text(errors="replace"):
        assert time.monotonic() < deadline, "the server never logged the marker"
        time.sleep(0.1)


def _audit(db, tmp_path, *extra) -> tuple[dict, dict]:
    snapshot, report = tmp_path / "snapshot.json", tmp_path / "report.json"
    result = run_cli(
        "audit",
        "--dsn",
        db.dsn,
        "--log",
        str(db.server.cluster.log_file),
        "--top",
        "30",
        "--save-snapshot",
        str(snapshot),
        "--json",
        str(report),
        *extra,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(snapshot.read_text()), json.loads(report.read_text())


def _capture(snapshot: dict, fragment: str) -> dict:
    queryid = next(s["queryid"] for s in snapshot["statements"] if fragment in s["query"])
    return next(p for p in snapshot["plans"] if p["queryid"] == queryid)


# The logged statement is slower than the --explain-timeout by a sleep (a floor on any
# machine); the other statement's EXPLAIN ANALYZE has the whole second, ample when busy.
EXPLAIN_TIMEOUT_S = 1.0
SLOW_S = 1.5


def test_logged_values_are_explained_and_a_logged_plan_stands_in(server, tmp_path):
    db = server.create_database()
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        # 'rare' is in 7 rows of 50 000: no pg_stats value or sampled row would pick it.
        conn.execute("CREATE TABLE ev (id int PRIMARY KEY, kind text NOT NULL, pad text)")
        conn.execute(
            "INSERT INTO ev SELECT g, CASE WHEN g % 7000 = 0 THEN 'rare' ELSE 'common' || g % 3 END, 'x' "
            "FROM generate_series(1, 50000) g"
        )
        conn.execute("VACUUM ANALYZE ev")
        conn.execute("SELECT pg_stat_statements_reset()")
        conn.execute("SET log_min_duration_statement = 0")
        conn.execute("SELECT count(*) FROM ev WHERE kind = %s", ("rare",)).fetchall()
        # A slow statement, with its plan logged by auto_explain as it ran.
        conn.execute("SET auto_explain.log_min_duration = 0")
        conn.execute("SET auto_explain.log_analyze = on")
        conn.execute("SET auto_explain.log_format = 'json'")
        conn.execute("SELECT pg_sleep(%s), count(*) FROM ev WHERE id < %s", (SLOW_S, 100)).fetchall()
        conn.execute("SELECT 'plans-log-marker'")
    _wait_logged(server, "plans-log-marker")
    snapshot, report = _audit(db, tmp_path, "--explain-timeout", str(EXPLAIN_TIMEOUT_S))
    rare = _capture(snapshot, "FROM ev WHERE kind")
    assert rare["method"] == "analyze" and rare["parameters"] == ["rare"]
    assert "server log" in rare["parameter_source"]
    assert rare["plan"]["Plan"]["Actual Rows"] == 1 and "'rare'" in rare["query_text"]
    scan = rare["plan"]["Plan"]["Plans"][0]
    while scan.get("Plans") and "Relation Name" not in scan:
        scan = scan["Plans"][0]
    assert scan["Actual Rows"] * scan.get("Actual Loops", 1) == 7
    slow = _capture(snapshot, "pg_sleep")
    assert slow["method"] == "logged" and "auto_explain plan from the server log" in slow["parameter_source"]
    assert "per-statement limit" in slow["skipped_reason"]
    assert slow["plan"]["Plan"]["Actual Total Time"] >= SLOW_S * 1000
    entry = next(q for q in report["queries"] if q["queryid"] == slow["queryid"])
    assert entry["plan_coverage"] == "analyzed"


def test_the_advisor_considers_statements_seen_only_in_the_log(server, tmp_path):
    db = server.create_database()
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders_log (id int PRIMARY KEY, customer int NOT NULL, pad text)")
        conn.execute("INSERT INTO orders_log SELECT g, g % 20000, repeat('x', 40) FROM generate_series(1, 200000) g")
        conn.execute("VACUUM ANALYZE orders_log")
        conn.execute("SET log_min_duration_statement = 0")
        for customer in range(20):
            conn.execute("SELECT id FROM orders_log WHERE customer = %s", (customer,)).fetchall()
        # pg_stat_statements forgets it (reset, evicted): only the log remembers.
        conn.execute("SELECT pg_stat_statements_reset()")
        conn.execute("SELECT 'advisor-log-marker'")
    _wait_logged(server, "advisor-log-marker")
    snapshot, _ = _audit(db, tmp_path)
    assert not any("orders_log" in s["query"] for s in snapshot["statements"])
    proposed = snapshot["index_advice"]["proposed"]
    index = next(i for i in proposed if i["table"] == "public.orders_log")
    assert index["columns"] == ["customer"] and index["statements"]
    # The fix applies as written.
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        conn.execute(index["create_sql"])
        assert conn.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'orders_log'").fetchone()[0] == 2


def test_pg_qualstats_constants_are_used_when_installed(tmp_path):
    """pg_qualstats must be preloaded: a cluster of its own (PostgreSQL 15, where the
    Debian package is installed)."""
    import pytest

    from conftest import _bin_dir
    from queryaudit.demo.cluster import start_cluster

    bin_dir = _bin_dir("pg15")
    if bin_dir is None or not (bin_dir.parent / "lib" / "pg_qualstats.so").exists():
        pytest.skip("pg_qualstats is not installed for PostgreSQL 15 (postgresql-15-pg-qualstats)")
    cluster = start_cluster(
        bin_dir,
        {
            "shared_preload_libraries": "'pg_stat_statements,pg_qualstats'",
            "pg_qualstats.sample_rate": "1",
            "autovacuum": "off",
        },
    )
    try:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
            conn.execute("CREATE EXTENSION pg_qualstats")
            conn.execute("CREATE TABLE ev (id int PRIMARY KEY, kind text NOT NULL)")
            conn.execute(
                "INSERT INTO ev SELECT g, CASE WHEN g % 7000 = 0 THEN 'rare' ELSE 'common' END "
                "FROM generate_series(1, 50000) g"
            )
            conn.execute("VACUUM ANALYZE ev")
            conn.execute("SELECT pg_stat_statements_reset()")
            conn.execute("SELECT count(*) FROM ev WHERE kind = 'rare'").fetchall()  # literals: normalized to $1
        snapshot_path = tmp_path / "snapshot.json"
        result = run_cli("audit", "--dsn", cluster.dsn(), "--save-snapshot", str(snapshot_path))
        assert result.returncode == 0, result.stderr
        capture = _capture(json.loads(snapshot_path.read_text()), "FROM ev WHERE kind")
        assert capture["method"] == "analyze" and "pg_qualstats" in capture["parameter_source"]
        assert "'rare'" in capture["query_text"]
        assert capture["plan"]["Plan"]["Actual Rows"] == 1
    finally:
        cluster.destroy()
