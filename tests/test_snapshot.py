"""The snapshot's JSON round trip and loading errors: no database needed."""

import json

import pytest

from queryaudit.errors import AuditError
from queryaudit.snapshot import Column, Index, PlanCapture, ServerInfo, Snapshot, Statement, Table


def make_snapshot() -> Snapshot:
    return Snapshot(
        server=ServerInfo(
            version_num=150018,
            version="PostgreSQL 15.18",
            database="shop",
            extensions={"pg_stat_statements": "1.10"},
            settings={"work_mem": "4096 kB"},
        ),
        collected_at="2026-11-24T00:00:00+00:00",
        statements=[
            Statement(
                queryid="-123",
                query="SELECT $1",
                calls=3,
                total_exec_time_ms=1.5,
                mean_exec_time_ms=0.5,
                rows=3,
                toplevel=True,
            )
        ],
        tables=[Table(schema="public", name="orders", reltuples=10.0, columns=[Column("id", "bigint", True, 1)])],
        indexes=[
            Index(
                schema="public",
                name="orders_pkey",
                table="public.orders",
                definition="CREATE ...",
                columns=["id"],
                is_primary=True,
            )
        ],
        plans=[PlanCapture(queryid="-123", method="generic", plan={"Plan": {"Node Type": "Result"}})],
        total_exec_time_ms=1.5,
        total_calls=3,
        statement_count=1,
    )


def test_round_trip_is_lossless(tmp_path):
    snap = make_snapshot()
    path = tmp_path / "snap.json"
    snap.save(path)
    loaded = Snapshot.load(path)
    assert loaded == snap
    assert isinstance(loaded.tables[0].columns[0], Column)
    assert loaded.plan_for("-123").plan["Plan"]["Node Type"] == "Result"
    assert loaded.table("public.orders").reltuples == 10.0


def test_load_rejects_non_snapshots(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(AuditError, match="not a queryaudit snapshot"):
        Snapshot.load(bad)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": 1}))
    with pytest.raises(AuditError, match="no server"):
        Snapshot.load(other)
    with pytest.raises(AuditError, match="not found"):
        Snapshot.load(tmp_path / "missing.json")
