"""Coverage of an analytic (TPC-DS-like) workload: the statement shapes that were still
skipped or planned generically get EXPLAIN ANALYZE with values, on PostgreSQL 15 and 18:

- unknown-typed placeholders as function arguments: `concat($1, s_store_id)` (no type at
  all: concat takes "any"), `COALESCE(c_last_name, $1)` (a value of the column fits);
- `d_date + $5`: date + unknown is ambiguous, the constant was a number of days;
- constants in the select lists of subqueries, CTEs and UNION branches (`$13 AS channel`):
  they choose no rows, any value of their type will do;
- IN lists compared with an expression (`substr(ca_zip, 1, 5) IN (...)`), also where the
  subquery names its output like the column it reads (`substr(ca_zip, 1, 5) ca_zip`).
The workload runs with literals in the text, so pg_stat_statements normalizes it (and
PostgreSQL 18 squashes the IN lists to `IN ($5 /*, ... */)`).
"""

from __future__ import annotations

import pytest

from helpers import captured_workload
from queryaudit.plans import model as plan_model
from queryaudit.plans.params import find_slots
from queryaudit.plans.plannable import make_plannable
from queryaudit.snapshot import Column, Table

SETUP = """
CREATE TABLE date_dim (d_date_sk int PRIMARY KEY, d_date date NOT NULL, d_year int NOT NULL, d_moy int NOT NULL);
INSERT INTO date_dim SELECT g, date '1998-01-01' + g, extract(year FROM date '1998-01-01' + g),
       extract(month FROM date '1998-01-01' + g) FROM generate_series(0, 2000) g;
CREATE TABLE store (s_store_sk int PRIMARY KEY, s_store_id char(16) NOT NULL, s_store_name varchar(50), s_zip char(10));
INSERT INTO store SELECT g, 'AAAA' || lpad(g::text, 12, '0'), 'store' || g, lpad((g * 7919 % 99999)::text, 5, '0')
FROM generate_series(1, 50) g;
CREATE TABLE customer_address (ca_address_sk int PRIMARY KEY, ca_zip char(10), ca_state char(3));
INSERT INTO customer_address SELECT g, lpad((g * 31 % 99999)::text, 5, '0') || '-1234', 'S' || g % 50
FROM generate_series(1, 20000) g;
CREATE TABLE customer (c_customer_sk int PRIMARY KEY, c_last_name char(30), c_current_addr_sk int,
                       c_preferred_cust_flag char(1));
INSERT INTO customer SELECT g, CASE WHEN g % 10 = 0 THEN NULL ELSE 'Last' || g % 300 END, 1 + g % 20000,
       CASE WHEN g % 3 = 0 THEN 'Y' ELSE 'N' END FROM generate_series(1, 20000) g;
CREATE TABLE item (i_item_sk int PRIMARY KEY, i_category char(50));
INSERT INTO item SELECT g, 'Cat' || g % 10 FROM generate_series(1, 2000) g;
CREATE TABLE store_sales (ss_sold_date_sk int, ss_customer_sk int, ss_store_sk int, ss_quantity int,
                          ss_net_profit numeric(7,2));
INSERT INTO store_sales SELECT g % 2001, 1 + g % 20000, 1 + g % 50, g % 100, (g % 1000) / 10.0
FROM generate_series(1, 100000) g;
CREATE TABLE web_sales (ws_sold_date_sk int, ws_net_profit numeric(7,2));
INSERT INTO web_sales SELECT g % 2001, (g % 1000) / 10.0 FROM generate_series(1, 50000) g;
VACUUM ANALYZE
"""

ZIPS = ", ".join(f"'{g * 31 % 99999:05d}'" for g in range(1, 40))
# What the application sends (literals in the text), shaped like the TPC-DS queries they come from.
WORKLOAD = {
    "concat": "SELECT concat('store', s_store_id) AS id, sum(ss_net_profit) FROM store_sales "
    "JOIN store ON ss_store_sk = s_store_sk WHERE ss_sold_date_sk BETWEEN 100 AND 200 GROUP BY s_store_id",
    "coalesce": "SELECT count(*) FROM customer WHERE coalesce(c_last_name, 'unknown') = 'Last7'",
    "date-plus-days": "SELECT count(*) FROM date_dim d1 JOIN date_dim d3 ON d3.d_date > d1.d_date + 5 "
    "AND d3.d_date < d1.d_date + 7 WHERE d1.d_year = 1999 AND d1.d_moy = 3",
    "union-channel": "SELECT channel, sum(profit) FROM (SELECT 'store channel' AS channel, ss_net_profit AS profit "
    "FROM store_sales WHERE ss_sold_date_sk < 300 UNION ALL SELECT 'web channel' AS channel, "
    "ws_net_profit FROM web_sales WHERE ws_sold_date_sk < 300) x GROUP BY channel",
    "cte-channel": "WITH s AS (SELECT 'store' AS channel, ss_store_sk AS id, sum(ss_net_profit) AS profit "
    "FROM store_sales WHERE ss_quantity > 90 GROUP BY ss_store_sk) "
    "SELECT channel, id, profit FROM s ORDER BY profit DESC LIMIT 10",
    "subquery-channel": "SELECT x.channel, count(*) FROM (SELECT 'catalog' AS channel, i_category FROM item "
    "WHERE i_category = 'Cat3') x GROUP BY x.channel",
    "in-expression": f"SELECT count(*) FROM customer JOIN customer_address ON c_current_addr_sk = ca_address_sk "
    f"WHERE substr(ca_zip, 1, 5) IN ({ZIPS}) AND c_preferred_cust_flag = 'Y'",
    "in-expression-subquery": f"""SELECT s_store_name, sum(ss_net_profit) FROM store_sales, date_dim, store,
 (SELECT ca_zip FROM (SELECT substr(ca_zip, 1, 5) ca_zip FROM customer_address WHERE substr(ca_zip, 1, 5) IN ({ZIPS})
  INTERSECT SELECT ca_zip FROM (SELECT substr(ca_zip, 1, 5) ca_zip, count(*) cnt FROM customer_address, customer
   WHERE ca_address_sk = c_current_addr_sk AND c_preferred_cust_flag = 'Y' GROUP BY ca_zip HAVING count(*) > 10) a1
  ) a2) v1
 WHERE ss_store_sk = s_store_sk AND ss_sold_date_sk = d_date_sk AND d_moy = 4 AND d_year = 1998
 AND substr(s_zip, 1, 2) = substr(v1.ca_zip, 1, 2) GROUP BY s_store_name ORDER BY s_store_name LIMIT 100""",
}
# The table each statement reads whose scan must have run with the values bound.
READS = {
    "concat": "store_sales",
    "coalesce": "customer",
    "date-plus-days": "date_dim",
    "union-channel": "web_sales",
    "cte-channel": "store_sales",
    "subquery-channel": "item",
    "in-expression": "customer_address",
    "in-expression-subquery": "customer_address",
}


@pytest.fixture
def analytic(server):
    return captured_workload(server.create_database(), SETUP, WORKLOAD)


def test_every_analytic_shape_is_analyzed_with_values(analytic):
    snapshot, queryids = analytic
    for name in WORKLOAD:
        statement = snapshot.statement(queryids[name])
        assert "$" in statement.query, name  # pg_stat_statements did normalize it
        capture = next(p for p in snapshot.plans if p.queryid == statement.queryid)
        assert capture.method == "analyze", (name, statement.query, capture.skipped_reason, capture.parameter_source)
        assert "generic plan" not in (capture.parameter_source or ""), name
        assert capture.parameters and None not in capture.parameters, name
        scans = [n for n in plan_model.build(capture.plan).nodes if n.raw.get("Relation Name") == READS[name]]
        assert scans and any(n.loops for n in scans), (name, capture.query_text)


def test_the_values_are_of_the_kind_each_placeholder_needs(analytic):
    snapshot, queryids = analytic
    by_name = {name: next(p for p in snapshot.plans if p.queryid == queryids[name]) for name in WORKLOAD}
    # COALESCE's default takes a value of the column, and the comparison a value of the COALESCE.
    coalesce = by_name["coalesce"]
    assert "public.customer.c_last_name" in coalesce.parameter_source
    assert plan_model.build(coalesce.plan).root.actual_rows == 1  # count(*): executed
    # The select-list constants took "any value"; the filters kept theirs from the data.
    for name in ("union-channel", "cte-channel", "subquery-channel"):
        assert "only in the select list" in by_name[name].parameter_source, name
    assert "public.item.i_category from a sampled row" in by_name["subquery-channel"].parameter_source
    # The expression's IN list took values of the expression from real rows, which match some.
    scan = next(
        n
        for n in plan_model.build(by_name["in-expression"].plan).nodes
        if n.raw.get("Relation Name") == "customer_address"
    )
    assert "sampled row" in by_name["in-expression"].parameter_source and scan.actual_rows > 0


TABLES = [
    Table("public", "date_dim", columns=[Column("d_date", "date"), Column("d_year", "integer")]),
    Table("public", "customer_address", columns=[Column("ca_zip", "character(10)")]),
]


def test_rewrites_of_function_arguments_and_date_arithmetic():
    assert (
        make_plannable("SELECT concat($1, s_store_id) FROM store").text
        == "SELECT concat($1::text, s_store_id) FROM store"
    )
    dated = make_plannable("SELECT 1 FROM date_dim d1 WHERE d1.d_date + $1 > now()", frozenset({"d_date"}))
    assert dated.text == "SELECT 1 FROM date_dim d1 WHERE d1.d_date + $1::integer > now()"
    # Without the catalog's word that d_date is a date, the text is left alone.
    assert (
        make_plannable("SELECT 1 FROM date_dim d1 WHERE d1.d_date + $1 > now()").text
        == "SELECT 1 FROM date_dim d1 WHERE d1.d_date + $1 > now()"
    )


def test_select_list_constants_of_subqueries_unions_and_ctes_choose_no_rows():
    query = (
        "WITH s AS (SELECT $1 AS channel, d_year FROM date_dim WHERE d_year = $2) "
        "SELECT channel FROM s UNION ALL SELECT $3 FROM date_dim WHERE d_date > $4 "
        "UNION ALL SELECT (SELECT $5 FROM date_dim WHERE d_year = $6) FROM date_dim"
    )
    slots = find_slots(query, TABLES, 6)
    assert [s.number for s in slots if s.select_list_only] == [1, 3, 5]
    # The output of a subquery that a condition compares does choose rows.
    compared = find_slots(
        "SELECT 1 FROM date_dim WHERE d_year IN (SELECT $1 + d_moy FROM date_dim) "
        "AND d_moy > (SELECT $2 * avg(d_moy) FROM date_dim)",
        TABLES,
        2,
    )
    assert not any(s.select_list_only for s in compared)


def test_an_expression_is_resolved_where_it_is_written():
    # The output alias ca_zip hides the column of that name outside its subquery, not inside.
    query = (
        "SELECT ca_zip FROM (SELECT substr(ca_zip, $1, $2) ca_zip FROM customer_address "
        "WHERE substr(ca_zip, $3, $4) IN ($5, $6)) a WHERE ca_zip IS NOT NULL"
    )
    slots = find_slots(query, TABLES, 6)
    assert [(s.table, s.operator) for s in slots[4:]] == [("public.customer_address", "in")] * 2
    assert slots[4].expression.startswith("substr(ca_zip")
