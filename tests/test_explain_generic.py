"""Generic plans for normalized statements ($n placeholders) on every version."""

import pytest

from queryaudit.connect import session
from queryaudit.plans.explain import explain_generic, parameter_count, parameter_types, plan_cost


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
