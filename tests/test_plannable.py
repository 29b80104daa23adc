"""Plannable text from pg_stat_statements' normalized text (queryaudit.plans.plannable).

Database-free cases for each rewrite, then the real thing on PostgreSQL 15 and 18: an
application runs statements with literals in the text, pg_stat_statements normalizes
them, and the audit's plan capture gets an EXPLAIN ANALYZE of each with rows."""

from __future__ import annotations

import psycopg
import pytest

from helpers import captured_workload
from queryaudit.connect import session
from queryaudit.plans import model as plan_model
from queryaudit.plans.plannable import make_plannable


@pytest.mark.parametrize(
    "normalized, plannable, unit",
    [
        ("SELECT 1 FROM t WHERE d <= date $1", "SELECT 1 FROM t WHERE d <= $1::date", None),
        ("SELECT 1 FROM t WHERE ts > timestamp $1", "SELECT 1 FROM t WHERE ts > $1::timestamp", None),
        ("SELECT 1 FROM t WHERE ts > timestamptz $1", "SELECT 1 FROM t WHERE ts > $1::timestamptz", None),
        (
            "SELECT 1 FROM t WHERE ts > timestamp with time zone $1",
            "SELECT 1 FROM t WHERE ts > $1::timestamp with time zone",
            None,
        ),
        ("SELECT 1 FROM t WHERE tm < time $1", "SELECT 1 FROM t WHERE tm < $1::time", None),
        ("SELECT 1 FROM t WHERE ts > now() - interval $1", "SELECT 1 FROM t WHERE ts > now() - $1::interval", None),
        (
            "SELECT 1 FROM t WHERE d <= date $1 - interval $2 day",
            "SELECT 1 FROM t WHERE d <= $1::date - $2::interval",
            "day",
        ),
        (
            "SELECT 1 FROM t WHERE d < date $1 + interval $2 month",
            "SELECT 1 FROM t WHERE d < $1::date + $2::interval",
            "month",
        ),
    ],
)
def test_typed_literals_become_casts(normalized, plannable, unit):
    result = make_plannable(normalized)
    assert result.text == plannable
    interval = [s for s in result.slots if s.cast == "interval"]
    assert (interval[0].unit if interval else None) == unit
    if unit:
        assert result.bind(interval[0].number, "90") == f"90 {unit}"


def test_a_time_minus_a_bare_placeholder_is_an_interval():
    assert (
        make_plannable("SELECT 1 FROM t WHERE ts > now() - $1").text
        == "SELECT 1 FROM t WHERE ts > now() - $1::interval"
    )


def test_group_by_constant_is_restored_and_the_rest_renumbered():
    result = make_plannable(
        "SELECT substr(visitor, $2, $3) AS v, count(*) FROM clicks WHERE page < $1 GROUP BY substr(visitor, 1, 12)"
    )
    assert result.text == (
        "SELECT substr(visitor, 1, 12) AS v, count(*) FROM clicks WHERE page < $1 GROUP BY substr(visitor, 1, 12)"
    )
    assert result.restored == {2: "1", 3: "12"} and [(s.number, s.original) for s in result.slots] == [(1, 1)]


def test_order_by_constant_is_restored():
    result = make_plannable("SELECT a, coalesce(b, $1) FROM t WHERE c = $2 ORDER BY coalesce(b, 'none')")
    assert result.text == "SELECT a, coalesce(b, 'none') FROM t WHERE c = $1 ORDER BY coalesce(b, 'none')"
    assert [(s.number, s.original) for s in result.slots] == [(1, 2)]


def test_unknown_placeholders_get_types_from_context():
    assert (
        make_plannable("SELECT 1 FROM t WHERE q <= $1 + $2").text
        == "SELECT 1 FROM t WHERE q <= $1::numeric + $2::numeric"
    )
    assert make_plannable("SELECT $1 || $2 FROM t").text == "SELECT $1::text || $2::text FROM t"
    assert (
        make_plannable("SELECT sum(CASE WHEN p = $1 THEN $2 ELSE $3 END) FROM t").text
        == "SELECT sum(CASE WHEN p = $1 THEN $2::numeric ELSE $3::numeric END) FROM t"
    )
    assert (
        make_plannable("SELECT substring(c FROM $1 FOR $2) FROM t").text
        == "SELECT substring(c FROM $1::integer FOR $2::integer) FROM t"
    )
    # EXTRACT takes a field name, not a placeholder: the field goes back as a word.
    assert (
        make_plannable("SELECT extract($1 FROM d) FROM t WHERE d > $2").text
        == "SELECT extract(year FROM d) FROM t WHERE d > $1"
    )


def test_text_that_needs_nothing_is_unchanged():
    query = "SELECT id FROM orders WHERE customer_id = $1 AND status IN ($2, $3) LIMIT $4 OFFSET $5"
    assert make_plannable(query).text == query and not make_plannable(query).rewrites
    assert make_plannable("SELEC broken $1").text == "SELEC broken $1"


SETUP = """
CREATE TABLE clicks (id int PRIMARY KEY, visitor text NOT NULL, page int NOT NULL, qty numeric NOT NULL,
                     day date NOT NULL, at timestamp NOT NULL, created_at timestamptz NOT NULL, tm time NOT NULL,
                     segment char(10) NOT NULL);
INSERT INTO clicks SELECT g, md5(g::text), g % 500, g % 50, date '2024-01-01' + g % 365,
       timestamp '2024-01-01' + g * interval '1 minute', now() - g * interval '1 second', time '00:00' + g * interval '1 s',
       'SEG-' || g % 5
FROM generate_series(1, 20000) g;
VACUUM ANALYZE clicks
"""  # noqa: E501

# What an application sends: literals in the text, so pg_stat_statements normalizes them.
WORKLOAD = {
    "date": "SELECT count(*) FROM clicks WHERE day <= date '2024-06-01'",
    "timestamp": "SELECT count(*) FROM clicks WHERE at < timestamp '2024-01-05 00:00'",
    "timestamptz": "SELECT count(*) FROM clicks WHERE created_at <= timestamptz '2100-01-01'",
    "time": "SELECT count(*) FROM clicks WHERE tm < time '03:00'",
    "interval": "SELECT count(*) FROM clicks WHERE created_at > now() - interval '2 hours'",
    "interval-unit": "SELECT count(*) FROM clicks WHERE day <= date '2024-12-01' - interval '90' day",
    "interval-month": "SELECT count(*) FROM clicks WHERE day >= date '2024-03-01' "
    "AND day < date '2024-03-01' + interval '1' month",
    "group-by": "SELECT substr(visitor, 1, 12) AS v, count(*) FROM clicks WHERE page < 250 "
    "GROUP BY substr(visitor, 1, 12)",
    "order-by": "SELECT coalesce(page, 0) FROM clicks WHERE page < 250 ORDER BY coalesce(page, 0) LIMIT 5",
    "sum": "SELECT count(*) FROM clicks WHERE qty <= 1 + 10",
    "in-list": "SELECT count(*) FROM clicks WHERE page IN (1, 2, 3)",
    "limit-offset": "SELECT id FROM clicks WHERE page = 7 ORDER BY id LIMIT 5 OFFSET 2",
    "case": "SELECT sum(CASE WHEN page < 10 THEN 1 ELSE 0 END) FROM clicks WHERE qty > 2",
    "function-argument": "SELECT count(*) FROM clicks WHERE substring(visitor FROM 1 FOR 2) <> 'zz' AND page = 3",
    "char(n)": "SELECT count(*) FROM clicks WHERE segment = 'SEG-3'",
}


@pytest.fixture
def normalized(server):
    """A database where each statement ran with its literals; the snapshot with plans."""
    return captured_workload(server.create_database(), SETUP, WORKLOAD)


def test_every_rewrite_form_is_explained_with_analyze(normalized):
    snapshot, queryids = normalized
    for name in WORKLOAD:
        statement = snapshot.statement(queryids[name])
        assert "$" in statement.query, name  # pg_stat_statements did normalize it
        capture = next(p for p in snapshot.plans if p.queryid == statement.queryid)
        assert capture.method == "analyze", (name, statement.query, capture.skipped_reason, capture.parameter_source)
        # The plan is real: the table's scan found rows with the values bound.
        scan = next(n for n in plan_model.build(capture.plan).nodes if n.raw.get("Relation Name") == "clicks")
        assert scan.actual_rows > 0, (name, capture.query_text)


def test_a_text_the_server_still_rejects_is_skipped_with_what_to_do(server):
    from queryaudit.plans.stage import skip_reason

    db = server.create_database()
    with psycopg.connect(db.dsn, autocommit=True) as conn, pytest.raises(psycopg.Error) as failure:
        conn.execute("PREPARE q AS SELECT $1 + $2")
    reason = skip_reason(failure.value)
    assert "operator is not unique" in reason and "--queries" in reason and "--log" in reason


def test_the_generic_plan_of_normalized_text_is_plannable_for_every_caller(server):
    """explain_generic (the advisor's and migration review's planner) rewrites too."""
    from queryaudit.plans.explain import explain_generic

    db = server.create_database()
    db.execute("CREATE TABLE t (id int, d date, v text)")
    with session(db.dsn) as conn:
        plan = explain_generic(
            conn,
            "SELECT substr(v, $2, $3), count(*) FROM t WHERE d <= date $1 - interval $4 day GROUP BY substr(v, 1, 12)",
        )
    assert plan["Plan"]["Node Type"] in ("Aggregate", "HashAggregate", "GroupAggregate")
