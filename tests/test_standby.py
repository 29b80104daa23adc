"""A hot standby (the production replica case): the audit runs there and writes nothing
to the primary, the standby being read-only by nature."""

import json

from conftest import run_cli, wait_for_replay
from helpers import client_wal, insert_lsn, validate_report, wal_window_start


def test_audit_on_hot_standby(pg15_standby, tmp_path):
    primary, standby = pg15_standby
    db = primary.create_database("shop")
    wait_for_replay(primary, standby)
    # The workload runs on the replica, as read traffic does; its statistics are the replica's own.
    read_only_workload = [("SELECT id, status, total FROM orders WHERE customer_id = %s", (n,)) for n in range(1, 30)]
    import psycopg

    with psycopg.connect(standby.dsn(db.name), autocommit=True) as conn:
        for query, params in read_only_workload:
            conn.execute(query, params).fetchall()
    lsn_before = wal_window_start(primary.cluster)
    out = tmp_path / "standby.json"
    result = run_cli("audit", "--dsn", standby.dsn(db.name), "--json", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    validate_report(report)
    assert report["target"]["in_recovery"] is True
    assert any("customer_id = $1" in q["query"] for q in report["queries"])
    lsn_after = insert_lsn(primary.cluster)
    assert client_wal(primary.cluster, lsn_before, lsn_after) == []
