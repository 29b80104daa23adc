"""Values that exist together (queryaudit.plans.samples): the placeholders of one table take
their values from one sampled row, so correlated columns are planned with real pairs."""

from __future__ import annotations

import psycopg

from queryaudit.checks import run_checks
from queryaudit.collect import CollectOptions, collect_snapshot
from queryaudit.connect import session
from queryaudit.plans import model as plan_model
from queryaudit.plans.params import find_slots, infer_parameters
from queryaudit.plans.samples import apply_rows, sample_requests
from queryaudit.plans.stage import PlanOptions, plan_stage
from queryaudit.snapshot import Column, ServerInfo, Snapshot, Table


def _snapshot() -> Snapshot:
    tables = [
        Table(
            "public",
            "addr",
            columns=[Column("city", "text"), Column("zip", "text"), Column("phone", "text")],
            reltuples=1_000_000,
        )
    ]
    return Snapshot(server=ServerInfo(150000, "15", "db"), collected_at="now", tables=tables)


def test_one_request_per_table_with_expressions_inlined():
    query = (
        "SELECT 1 FROM addr a WHERE a.city = $1 AND a.zip IN ($2, $3) "
        "AND substring(a.phone FROM $4::integer FOR $5::integer) = $6"
    )
    binding = infer_parameters(query, _snapshot(), ["text", "text", "text", "integer", "integer", "text"])
    [request] = sample_requests(binding)
    assert request.outputs[:2] == ["city", "zip"] and request.outputs[2].startswith("pg_catalog.substring(a.phone, ")
    assert "'1'::integer" in request.outputs[2] and "$" not in request.outputs[2]  # its own placeholders bound
    assert request.sql(_snapshot()).startswith("SELECT (city)::text, (zip)::text, (pg_catalog.substring(")
    assert "FROM public.addr AS a TABLESAMPLE SYSTEM (0.2) WHERE (city) IS NOT NULL" in request.sql(_snapshot())
    rows = [("paris", "75001", "3"), ("paris", "75002", "3"), ("lyon", "69001", "4"), ("nice", "06000", "0")]
    assert apply_rows(request, rows, pick=0)
    assert binding.values[:3] == ["paris", "75001", "75002"] and binding.values[5] == "3"
    assert apply_rows(request, rows, pick=2) and binding.values[:3] == ["lyon", "69001", "06000"]
    assert not apply_rows(request, rows, pick=4)
    assert "same row of public.addr" in binding.describe()


def test_ranges_keep_the_histogram():
    slots = find_slots("SELECT 1 FROM addr WHERE city > $1", _snapshot().tables, 1)
    assert slots[0].operator == ">"
    assert sample_requests(infer_parameters("SELECT 1 FROM addr WHERE city > $1", _snapshot(), ["text"])) == []


def test_correlated_columns_are_planned_with_a_real_pair(server):
    db = server.create_database()
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        # The zip is a function of the city: 100 pairs of 200 rows; any other pair has none.
        conn.execute("CREATE TABLE addr (id int PRIMARY KEY, city text NOT NULL, zip text NOT NULL, pad text)")
        conn.execute(
            "INSERT INTO addr SELECT g, 'city' || g % 100, 'z' || (g % 100 * 37 + 11) % 1000, "
            "repeat('x', 50) FROM generate_series(1, 20000) g"
        )
        # The insert's counters reach the shared statistics at most once a second: flush
        # them now, or they would count as changes since the ANALYZE (stale statistics).
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.execute("VACUUM ANALYZE addr")
        conn.execute("SELECT pg_stat_statements_reset()")
        for city in range(5):
            conn.execute(
                "SELECT count(*) FROM addr WHERE city = %s AND zip = %s", (f"city{city}", f"z{(city * 37 + 11) % 1000}")
            ).fetchall()
    with session(db.dsn) as conn:
        snapshot = collect_snapshot(conn, CollectOptions(top=20, stages=[plan_stage(PlanOptions(top=20))]))
    statement = next(s for s in snapshot.statements if "FROM addr WHERE city" in s.query)
    capture = next(p for p in snapshot.plans if p.queryid == statement.queryid)
    assert capture.method == "analyze" and "sampled row" in capture.parameter_source
    city, zip_ = capture.parameters
    assert zip_ == f"z{(int(city[4:]) * 37 + 11) % 1000}"  # a pair that exists
    scan = next(n for n in plan_model.build(capture.plan).nodes if n.raw.get("Relation Name") == "addr")
    assert scan.actual_rows == 200 and scan.estimated_rows <= 5
    # Other rows were tried too while the budget allowed: their times are kept.
    assert len(capture.sample_ms) == 3 and all(ms > 0 for ms in capture.sample_ms)
    finding = next(f for f in run_checks(snapshot) if f.check == "row-estimate-error")
    assert finding.evidence["cause"] == "correlated-columns" and sorted(finding.columns) == ["city", "zip"]


def test_joined_tables_get_values_that_meet_across_the_join(server):
    db = server.create_database()
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        # Customers of city N only have orders of status sN: a city and a status drawn
        # from their own tables rarely meet (1 in 50).
        conn.execute("CREATE TABLE customers (id int PRIMARY KEY, city text NOT NULL)")
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL)")
        conn.execute("INSERT INTO customers SELECT g, 'city' || g % 50 FROM generate_series(1, 5000) g")
        conn.execute(
            "INSERT INTO orders SELECT g, 1 + g % 5000, 's' || (1 + g % 5000) % 50 FROM generate_series(1, 50000) g"
        )
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.execute("VACUUM ANALYZE")
        conn.execute("SELECT pg_stat_statements_reset()")
        conn.execute(
            "SELECT count(*) FROM orders o JOIN customers c ON c.id = o.customer_id "
            "WHERE c.city = %s AND o.status = %s",
            ("city7", "s7"),
        ).fetchall()
    with session(db.dsn) as conn:
        snapshot = collect_snapshot(conn, CollectOptions(top=20, stages=[plan_stage(PlanOptions(top=20))]))
    statement = next(s for s in snapshot.statements if "JOIN customers" in s.query)
    capture = next(p for p in snapshot.plans if p.queryid == statement.queryid)
    assert capture.method == "analyze" and "sampled row of the join" in capture.parameter_source
    city, status = capture.parameters
    assert city[4:] == status[1:]  # a pair that exists
    join = next(
        n for n in plan_model.build(capture.plan).nodes if "Join" in n.node_type or n.node_type == "Nested Loop"
    )
    assert join.actual_rows > 0
