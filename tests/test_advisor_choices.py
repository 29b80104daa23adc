"""Choices a DBA would make: composite order, no index left unused, partitioned parents.
Every proposed fix is applied as printed and the plan checked to use it. PG15 has
HypoPG (verification `hypothetical`), PG18 none (`none`, estimates)."""

import json

import pytest

from helpers import set_up_outside_the_window
from queryaudit.advisor import costing, stage
from queryaudit.advisor.candidates import Candidate
from queryaudit.advisor.stage import AdvisorOptions
from queryaudit.connect import session
from queryaudit.pipeline import AuditOptions, collect_live
from queryaudit.plans.explain import Planner


def has_hypopg(db) -> bool:
    return bool(db.execute("SELECT 1 FROM pg_extension WHERE extname = 'hypopg'"))


def advise(db):
    return collect_live(db.dsn, AuditOptions(top=20, advisor=AdvisorOptions())).index_advice


def apply(db, advice) -> None:
    with db.connect() as conn:
        for p in advice.proposed:
            for statement in filter(None, (s.strip() for s in p.create_sql.split(";\n"))):
                conn.execute(statement)  # CONCURRENTLY: one statement at a time, autocommit
        conn.execute("ANALYZE")


def _why_not(advice) -> dict:
    """What the advisor saw, for a failure message: a proposal missing is otherwise mute."""
    return {
        "notes": advice.notes,
        "rejected": [r.error for r in advice.rejected],
        "statements": advice.statements_considered,
        "costed_on": advice.costed_on,
        "candidates": (advice.candidates_considered, advice.candidates_verified),
        "cost": (advice.workload_cost_before, advice.workload_cost_after),
        "proposed": [(p.table, p.columns) for p in advice.proposed],
    }


def plan_text(db, query: str) -> str:
    return json.dumps(db.execute("EXPLAIN (FORMAT JSON) " + query)[0][0])


def test_composite_leads_with_the_column_other_statements_can_use(empty_db):
    set_up_outside_the_window(
        empty_db,
        """
        CREATE TABLE book (id bigint PRIMARY KEY, publisher_id int NOT NULL, author_id int NOT NULL, title text);
        INSERT INTO book SELECT g, g % 1000, g % 9875, 't' || g FROM generate_series(1, 200000) g;
        ANALYZE book""",
    )
    with empty_db.connect() as conn:
        for n in range(20):
            conn.execute(
                "SELECT id, title FROM book WHERE publisher_id = %s AND author_id = %s", (n, n + 1000)
            ).fetchall()
        for n in range(5):
            conn.execute("SELECT count(*) FROM book WHERE author_id = %s", (n,)).fetchall()
    advice = advise(empty_db)
    on_book = [p for p in advice.proposed if p.table == "public.book"]
    assert on_book, advice.notes
    # Whatever is proposed on book leads with author_id (9,875 distinct values, and the
    # statement on author_id alone can use it); never (publisher_id, author_id).
    assert all(p.columns[0] == "author_id" for p in on_book), [p.columns for p in on_book]
    apply(empty_db, advice)
    names = [p.name for p in on_book]
    both = plan_text(empty_db, "SELECT id, title FROM book WHERE publisher_id = 3 AND author_id = 1003")
    alone = plan_text(empty_db, "SELECT count(*) FROM book WHERE author_id = 3")
    assert any(n in both for n in names) and any(n in alone for n in names)


def test_final_pass_drops_an_index_no_final_plan_uses(empty_db):
    """(a) and (a, b) chosen together: the statement filters on both, the planner takes
    (a, b) and (a) serves nothing in the final set: the pass leaves it out."""
    set_up_outside_the_window(
        empty_db,
        """
        CREATE TABLE t (id bigint PRIMARY KEY, a int, b int, c text);
        INSERT INTO t SELECT g, g % 500, g % 97, 'x' FROM generate_series(1, 100000) g;
        ANALYZE t""",
    )
    if not has_hypopg(empty_db):
        pytest.skip("the pass plans the chosen set together with HypoPG (PG15 here)")
    query = "SELECT id FROM t WHERE a = $1 AND b = $2"
    single, wide = Candidate("public.t", ("a",)), Candidate("public.t", ("a", "b"))
    with session(empty_db.dsn) as conn:
        planner = Planner(conn)
        with costing.Hypothetical(conn) as hypo:
            sets = {"q": [costing.ValueSet(query, ["7", "7"])]}
            whatif = costing.WhatIf(hypo, sets, planner)
            config, final, users, dropped = stage.final_set(whatif, [single, wide], ["q"])
        planner.close()
    assert [c.columns for c in config] == [("a", "b")] and [c.columns for c in dropped] == [("a",)]
    assert users[wide.key] == ["q"] and final["q"][0] < 100


def test_partitioned_parent_gets_an_index_on_the_parent(empty_db):
    set_up_outside_the_window(
        empty_db,
        """
        CREATE TABLE events (id bigint NOT NULL, blog_id int NOT NULL, created_at date NOT NULL, body text)
            PARTITION BY RANGE (created_at);
        CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
        CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
        INSERT INTO events SELECT g, g % 2000, date '2024-01-01' + (g % 700), 'x' FROM generate_series(1, 120000) g;
        ANALYZE events""",
    )
    with empty_db.connect() as conn:
        for n in range(20):
            conn.execute("SELECT id, body FROM events WHERE blog_id = %s", (n,)).fetchall()
    advice = advise(empty_db)
    on_events = [p for p in advice.proposed if p.table == "public.events"]
    assert on_events, _why_not(advice)
    fix = on_events[0].create_sql
    assert "ON ONLY" in fix and "ATTACH PARTITION" in fix and "CONCURRENTLY" in fix
    apply(empty_db, advice)
    assert empty_db.execute(f"SELECT indisvalid FROM pg_index WHERE indexrelid = '{on_events[0].name}'::regclass") == [
        (True,)
    ]
    text = plan_text(empty_db, "SELECT id, body FROM events WHERE blog_id = 7")
    assert "Seq Scan" not in text and "Index" in text


def test_advisor_costs_on_the_workloads_values_not_the_generic_plan(empty_db):
    """status = $1 on a skewed column: the generic plan assumes a third of the rows (an
    index saves little), the workload asks for 'pending' (0.5 %), where it saves nearly
    all. Given the workload's values the advisor sees that; with none it says the
    statement was costed on its generic plan."""
    if not has_hypopg(empty_db):
        pytest.skip("costs on values are compared with HypoPG (PG15 here)")
    set_up_outside_the_window(
        empty_db,
        """
        CREATE TABLE jobs (id bigint PRIMARY KEY, status text NOT NULL, payload text);
        INSERT INTO jobs SELECT g, CASE WHEN g % 200 = 0 THEN 'pending' WHEN g % 200 = 1 THEN 'failed'
                                        ELSE 'done' END, 'x' FROM generate_series(1, 200000) g;
        ANALYZE jobs""",
    )
    with empty_db.connect() as conn:
        for _ in range(20):
            conn.execute("SELECT id, payload FROM jobs WHERE status = %s", ("pending",)).fetchall()
    snap = collect_live(empty_db.dsn, AuditOptions(top=20, explain=False, advisor=AdvisorOptions(enabled=False)))
    [statement] = [s for s in snap.statements if "FROM jobs" in s.query]
    with session(empty_db.dsn) as conn:
        generic = stage.advise(conn, snap, AdvisorOptions())
        snap.extras["parameter_sets"] = {statement.queryid: [{"values": ["pending"], "weight": 20}]}
        on_values = stage.advise(conn, snap, AdvisorOptions())
    cut = {
        a: max(
            [e.fraction_removed for p in advice.proposed if p.table == "public.jobs" for e in p.statements], default=0.0
        )
        for a, advice in (("generic", generic), ("values", on_values))
    }
    assert cut["generic"] < 0.5 <= 0.9 <= cut["values"], cut
    assert generic.costed_on[statement.queryid] == "generic plan"
    assert any("generic plan" in n for n in generic.notes)
    [jobs] = [p for p in on_values.proposed if p.table == "public.jobs"]
    assert jobs.columns == ["status"] and on_values.costed_on[statement.queryid] == "representative"
    apply(empty_db, on_values)
    assert jobs.name in plan_text(empty_db, "SELECT id, payload FROM jobs WHERE status = 'pending'")
