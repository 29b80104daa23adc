"""queryaudit audit and snapshot against real PostgreSQL 15 and 18."""

import json

from conftest import run_cli
from helpers import validate_report
from queryaudit.report.model import is_workload


def test_audit_lists_top_statements_with_schema_valid_json(shop_db, tmp_path):
    shop_db.run_workload("shop")
    # A first audit leaves its own statements in pg_stat_statements; the second must not report them.
    assert run_cli("audit", "--dsn", shop_db.dsn, "--no-explain").returncode == 0
    out = tmp_path / "report.json"
    result = run_cli("audit", "--dsn", shop_db.dsn, "--top", "10", "--json", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    validate_report(report)
    assert report["target"]["database"] == shop_db.name
    assert report["target"]["server_version_num"] == shop_db.server.version_num
    assert len(report["queries"]) == 10
    totals = [q["total_exec_time_ms"] for q in report["queries"]]
    assert totals == sorted(totals, reverse=True)
    texts = " ".join(q["query"] for q in report["queries"])
    assert "FROM orders WHERE customer_id = $1" in texts
    # The auditor's own statements are not part of the audited workload.
    assert "queryaudit" not in texts and "pg_available_extensions" not in texts and "pg_attribute" not in texts
    assert sum(q["share_of_total_time"] for q in report["queries"]) <= 1.0 + 1e-9
    assert "Top statements" in result.stdout


def test_audit_from_saved_snapshot_matches_live(shop_db, tmp_path):
    shop_db.run_workload("shop")
    snap = tmp_path / "snap.json"
    result = run_cli("snapshot", "--dsn", shop_db.dsn, "-o", str(snap))
    assert result.returncode == 0, result.stderr
    # Stop the server from mattering: audit the file with an unreachable DSN in the environment.
    out = tmp_path / "offline.json"
    result = run_cli(
        "audit",
        "--snapshot",
        str(snap),
        "--json",
        str(out),
        env={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"},
    )
    assert result.returncode == 0, result.stderr
    offline = json.loads(out.read_text())
    validate_report(offline)
    data = json.loads(snap.read_text())
    # The top 20 of the workload: utility statements (BEGIN, SET, the reset) are listed apart.
    assert [q["queryid"] for q in offline["queries"]] == [
        s["queryid"]
        for s in sorted(data["statements"], key=lambda s: -s["total_exec_time_ms"])
        if is_workload(s["query"])
    ][:20]
    assert {t["name"] for t in data["tables"]} >= {"orders", "customers", "order_items", "events"}
    orders_stats = [c for c in data["column_stats"] if c["table"] == "public.orders"]
    assert any(c["column"] == "status" and c["most_common_vals"] for c in orders_stats)


def test_statement_columns_are_version_aware(shop_db, tmp_path):
    from queryaudit.collect import CollectOptions, collect_snapshot
    from queryaudit.connect import session

    shop_db.run_workload("shop")
    with session(shop_db.dsn) as conn:
        snap = collect_snapshot(conn, CollectOptions())
    version = snap.server.version_num
    s = max(snap.statements, key=lambda s: s.total_exec_time_ms)
    assert s.total_exec_time_ms > 0 and s.calls > 0
    assert s.toplevel is (True if version >= 140000 else None)  # 14+
    assert (s.jit_functions is not None) == (version >= 150000)
    assert (s.stats_since is not None) == (version >= 170000)
    assert (s.parallel_workers_launched is not None) == (version >= 180000)
    assert (snap.server.pgss_stats_reset is not None) == (version >= 140000)  # pg_stat_statements_info
    assert snap.total_exec_time_ms >= sum(x.total_exec_time_ms for x in snap.statements) - 1e-6
