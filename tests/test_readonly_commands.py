"""Every command that touches a target runs (a) as a role holding only pg_monitor and
SELECT and (b) against a hot standby, and the primary gets no WAL from it.

review-migration --dsn is the one command that writes, by design, and only to the
scratch database the user names; it is not run against a target here.
"""

from conftest import run_cli, wait_for_replay
from helpers import client_wal, insert_lsn, wal_window_start

COMMANDS = {
    "audit": lambda dsn, tmp: ["audit", "--dsn", dsn, "--json", str(tmp / "audit.json")],
    "snapshot": lambda dsn, tmp: ["snapshot", "--dsn", dsn, "-o", str(tmp / "snap.json")],
    "advise-indexes": lambda dsn, tmp: ["advise-indexes", "--dsn", dsn, "--json", str(tmp / "advice.json")],
    "locks": lambda dsn, tmp: ["locks", "--dsn", dsn, "--seconds", "0.5"],
    "check": lambda dsn, tmp: ["check", "--dsn", dsn, "--store", f"sqlite:///{tmp / 'history.db'}"],
}


def _run_all(dsn, tmp_path) -> dict[str, object]:
    results = {}
    for name, args in COMMANDS.items():
        result = run_cli(*args(dsn, tmp_path))
        # check exits 1 when a budget is broken: still a successful run.
        assert result.returncode in ((0, 1) if name == "check" else (0,)), (name, result.stderr)
        assert "Traceback" not in result.stderr
        results[name] = result
    return results


def test_every_command_as_a_monitoring_role(shop_db, tmp_path):
    shop_db.run_workload("shop")
    role = shop_db.create_monitoring_role("monitor")
    shop_db.execute("VACUUM")
    dsn = shop_db.dsn_as(role)
    # Warm-up: first reads set hint bits (see test_readonly). One audit reads every page
    # the other commands read (snapshot and check collect as it does, the advisor plans).
    assert run_cli(*COMMANDS["audit"](dsn, tmp_path)).returncode == 0
    start = wal_window_start(shop_db.server.cluster)
    results = _run_all(dsn, tmp_path)
    end = insert_lsn(shop_db.server.cluster)
    assert client_wal(shop_db.server.cluster, start, end) == []
    assert (tmp_path / "advice.json").exists() and (tmp_path / "snap.json").exists()
    assert "orders" in results["audit"].stdout


def test_every_command_on_a_hot_standby(pg15_standby, tmp_path):
    primary, standby = pg15_standby
    db = primary.create_database("shop")
    wait_for_replay(primary, standby)
    import psycopg

    dsn = standby.dsn(db.name)
    with psycopg.connect(dsn, autocommit=True) as conn:  # read traffic on the replica
        for n in range(1, 40):
            conn.execute("SELECT id, status FROM orders WHERE customer_id = %s", (n,)).fetchall()
    start = wal_window_start(primary.cluster)
    _run_all(dsn, tmp_path)
    end = insert_lsn(primary.cluster)
    assert client_wal(primary.cluster, start, end) == []
    import json

    advice = json.loads((tmp_path / "advice.json").read_text())
    if primary.has_extension("hypopg"):
        # HypoPG works on a standby: the advice is verified with hypothetical indexes there.
        assert "orders" in json.dumps(advice)
        assert any((f.get("verification") or {}).get("method") == "hypothetical" for f in advice["findings"]), advice
