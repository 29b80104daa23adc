"""Regenerate the golden cases' source snapshots from real servers (a developer's tool, not a test).

    PYTHONPATH=. python tests/golden/capture.py OUT_DIR     # plans.json, locks.json, idle.json
    python -m queryaudit.cli demo --no-apply --out-dir OUT_DIR/demo   # demo/demo-snapshot.json (shop)

then carve one case per check with tests/golden/carve.py. Uses the tests' own scenarios:
the planted plan problems of test_plan_checks (PostgreSQL 15) and the lock sessions of test_locks.
"""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import conftest  # noqa: E402
import test_locks  # noqa: E402
import test_plan_checks  # noqa: E402
from queryaudit.collect.server import collect_server  # noqa: E402
from queryaudit.connect import session  # noqa: E402
from queryaudit.locks.sampling import LockSampler, SampleOptions  # noqa: E402
from queryaudit.snapshot import Snapshot  # noqa: E402


def plans(out: Path) -> None:
    planted = test_plan_checks.planted._get_wrapped_function()(types.SimpleNamespace(param="pg15"))
    planted.snapshot.save(out / "plans.json")


def locks(out: Path) -> None:
    server = conftest.get_server("pg15")
    db = server.create_database()
    sessions = test_locks.Sessions(db)
    try:
        test_locks._accounts(db)
        sessions.hold("UPDATE accounts SET balance = balance + 1 WHERE id = 7")
        for _ in range(3):
            sessions.run("UPDATE accounts SET balance = balance - 1 WHERE id = 7")
        test_locks._waiting(db, 3)
        conftest.run_cli(
            "audit",
            "--dsn",
            db.dsn,
            "--sample-seconds",
            "1",
            "--no-explain",
            "--save-snapshot",
            str(out / "locks.json"),
        )
    finally:
        sessions.close()
    db = server.create_database()
    sessions = test_locks.Sessions(db)
    try:
        test_locks._accounts(db)
        sessions.hold("SELECT balance FROM accounts WHERE id = 3 FOR UPDATE")
        sessions.run("BEGIN; UPDATE accounts SET balance = 5 WHERE id = 9; SELECT pg_sleep(5); COMMIT", app="batch")
        test_locks._wait_until(
            db, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'batch' AND wait_event = 'PgSleep'", 1
        )
        time.sleep(0.5)
        with session(db.dsn) as conn:
            snap = Snapshot(server=collect_server(conn), collected_at="now")
            snap.lock_samples = LockSampler(
                conn, SampleOptions(seconds=0.5, long_transaction_s=0.3, idle_in_transaction_s=0.3)
            ).run()
        snap.save(out / "idle.json")
    finally:
        sessions.close()


if __name__ == "__main__":
    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    try:
        plans(target)
        locks(target)
    finally:
        conftest.pytest_sessionfinish(None, 0)
