"""The audit writes nothing: a role that cannot write, and unchanged write counters and WAL."""

import json

from conftest import flush_statistics, run_cli
from helpers import client_wal, insert_lsn, validate_report, wal_window_start


def _write_counters(db):
    return db.execute(
        "SELECT tup_inserted, tup_updated, tup_deleted FROM pg_stat_database WHERE datname = current_database()"
    )[0]


def test_audit_as_monitoring_role_writes_nothing(shop_db, tmp_path):
    shop_db.run_workload("shop")
    role = shop_db.create_monitoring_role("auditor")
    # Settle what the workload left: dead tuples a read could prune, and hint bits that
    # the first read of a page sets (with data checksums, the default on 18, PostgreSQL
    # WAL-logs that page once per checkpoint whoever reads it). A first audit reads
    # everything once; what is measured next is an audit alone.
    shop_db.execute("VACUUM")
    assert run_cli("audit", "--dsn", shop_db.dsn_as(role)).returncode == 0
    with shop_db.connect() as conn:
        flush_statistics(conn)
    before = _write_counters(shop_db)
    lsn_before = wal_window_start(shop_db.server.cluster)
    out = tmp_path / "r.json"
    result = run_cli("audit", "--dsn", shop_db.dsn_as(role), "--json", str(out))
    assert result.returncode == 0, result.stderr
    validate_report(json.loads(out.read_text()))
    with shop_db.connect() as conn:
        flush_statistics(conn)
    after = _write_counters(shop_db)
    lsn_after = insert_lsn(shop_db.server.cluster)
    assert after == before
    # Every WAL record in between is named: only the server's own housekeeping may be there.
    assert client_wal(shop_db.server.cluster, lsn_before, lsn_after) == [], "the audit generated WAL"


def test_audit_session_is_read_only(shop_db):
    import psycopg
    import pytest

    from queryaudit.connect import session

    with session(shop_db.dsn) as conn:
        assert conn.execute("SHOW default_transaction_read_only").fetchone()[0] == "on"
        assert conn.execute("SHOW application_name").fetchone()[0] == "queryaudit"
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "30s"
        assert conn.execute("SHOW lock_timeout").fetchone()[0] == "1s"
        assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()[0] == "1min"
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE should_not_exist (id int)")


def test_the_wal_check_sees_a_real_write(empty_db):
    """Guards the WAL assertions above against passing vacuously."""
    empty_db.execute("CREATE TABLE t (id int)")
    start = wal_window_start(empty_db.server.cluster)
    empty_db.execute("INSERT INTO t VALUES (1)")
    end = insert_lsn(empty_db.server.cluster)
    records = client_wal(empty_db.server.cluster, start, end)
    assert any("INSERT" in line for line in records), records
