"""Generic plans for normalized statements ($n placeholders) on every version."""

import pytest

from queryaudit.connect import session
from queryaudit.plans.explain import explain_generic, explain_prepared, parameter_count, parameter_types, plan_cost


def test_parameter_count():
    assert parameter_count("SELECT 1") == 0
    assert parameter_count("SELECT * FROM t WHERE a = $1 AND b IN ($2, $10)") == 10


def test_generic_plan_of_normalized_statement(shop_db):
    query = "SELECT id, status FROM orders WHERE customer_id = $1 AND status = $2"
    with session(shop_db.dsn) as conn:
        plan = explain_generic(conn, query)
        assert parameter_types(conn, query) == ["bigint", "text"]
        # Nothing is left behind in the session: no prepared statement, no setting.
        assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0] == 0
        assert conn.execute("SHOW plan_cache_mode").fetchone()[0] == "auto"
    assert plan["Plan"]["Node Type"] in ("Seq Scan", "Gather")
    assert plan_cost(plan) > 0
    assert "$1" in str(plan)


def test_generic_plan_of_statement_without_parameters(shop_db):
    with session(shop_db.dsn) as conn:
        plan = explain_generic(conn, "SELECT count(*) FROM customers")
    assert plan["Plan"]["Node Type"] in ("Aggregate", "Finalize Aggregate")


def test_invalid_statement_raises_a_psycopg_error(shop_db):
    import psycopg

    with session(shop_db.dsn) as conn:
        with pytest.raises(psycopg.Error):
            explain_generic(conn, "SELECT * FROM no_such_table WHERE id = $1")
        # The session is still usable after the failure.
        assert conn.execute("SELECT 1").fetchone()[0] == 1


def test_values_plan_and_cost_as_the_literal_text_does(empty_db):
    """Bound values are written in as typed literals: a date compared per row costs what the
    workload's literal costs (a parameter cast to date, a stable input function, would be
    evaluated on every row), and a quote or a backslash in a value reads as it is."""
    empty_db.execute("CREATE TABLE d (id int, at date, note text)")
    empty_db.execute("INSERT INTO d SELECT g, date '2020-01-01' + g % 1000, 'n' || g FROM generate_series(1, 20000) g")
    empty_db.execute("INSERT INTO d VALUES (0, '2021-01-15', 'it''s \\ here')")
    empty_db.execute("ANALYZE d")
    query = "SELECT id FROM d WHERE at >= $1 AND at < $2 AND note = $3"
    literal = "SELECT id FROM d WHERE at >= '2021-01-01' AND at < '2021-02-01' AND note = 'it''s \\ here'"
    with session(empty_db.dsn) as conn:
        bound = explain_prepared(conn, query, "ANALYZE, FORMAT JSON", ["2021-01-01", "2021-02-01", "it's \\ here"])
        written = conn.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {literal}").fetchone()[0][0]
    assert bound["Plan"]["Total Cost"] == written["Plan"]["Total Cost"]
    assert bound["Plan"]["Plan Rows"] == written["Plan"]["Plan Rows"]
    assert bound["Plan"]["Actual Rows"] == written["Plan"]["Actual Rows"] == 1
