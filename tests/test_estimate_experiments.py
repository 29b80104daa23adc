"""A row-estimate error's cause tested by experiment (queryaudit.estimates), on PostgreSQL 15 and 18.

- Correlated columns on a table loaded and analyzed in one transaction: its
  n_mod_since_analyze stays at 200,000 though its statistics are fresh. The counters alone
  say stale statistics; the experiment (each column's estimate right, the pair's 100x off)
  says correlated-columns, and the CREATE STATISTICS it prints, applied as printed, brings
  the estimate close.
- A truly stale table (its distribution changed after ANALYZE): the column's own estimate
  is off, stale-statistics, and the ANALYZE it prints brings the estimate close.
- --verify-real: the candidate fix applied in a rolled-back transaction, the q-error
  measured before and after, nothing left behind.
"""

from __future__ import annotations

import psycopg
import pytest

from conftest import flush_statistics
from helpers import validate_report
from queryaudit.advisor.stage import AdvisorOptions
from queryaudit.checks import row_estimate_error
from queryaudit.pipeline import AuditOptions, analyse, collect_live
from queryaudit.plans import model as plan_model
from queryaudit.verify.stage import VerifyOptions

PAIRS = "SELECT count(*) FROM addr WHERE city = %s AND zip = %s"
KINDS = "SELECT count(*) FROM events WHERE kind = %s"


def _collect(db, verify_real: bool = False):
    return collect_live(
        db.dsn,
        AuditOptions(
            top=20,
            advisor=AdvisorOptions(enabled=False),
            verify=VerifyOptions(enabled=verify_real, verify_real=verify_real),
        ),
    )


def _finding(snapshot, table: str):
    found = [f for f in row_estimate_error.run(snapshot) if f.table == table]
    assert len(found) == 1, [(f.table, f.evidence.get("cause")) for f in row_estimate_error.run(snapshot)]
    return found[0]


def _scan_q_error(db, query: str, params) -> float:
    """The q-error of the table's scan in EXPLAIN ANALYZE of the statement with these values."""
    with db.connect() as conn:
        text = psycopg.ClientCursor(conn).mogrify(query, params)
        plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + text).fetchone()[0][0]
    return next(n for n in plan_model.build(plan).nodes if n.relation).q_error


@pytest.fixture
def correlated(server):
    db = server.create_database()
    with psycopg.connect(db.dsn) as conn:  # one transaction: load, then ANALYZE
        # The zip is a function of the city: 100 pairs of 2,000 rows; the planner, multiplying
        # the two selectivities, expects 20.
        conn.execute("CREATE TABLE addr (id int, city text NOT NULL, zip text NOT NULL, pad text)")
        conn.execute(
            "INSERT INTO addr SELECT g, 'city' || g % 100, 'z' || (g % 100 * 37 + 11) % 1000, "
            "repeat('x', 20) FROM generate_series(1, 200000) g"
        )
        conn.execute("ANALYZE addr")
        conn.commit()
        flush_statistics(conn)
        conn.commit()
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")
        for city in range(3):
            conn.execute(PAIRS, (f"city{city}", f"z{(city * 37 + 11) % 1000}")).fetchall()
    return db


def test_correlated_columns_on_a_table_loaded_and_analyzed_in_one_transaction(correlated):
    snapshot = _collect(correlated)
    table = snapshot.table("public.addr")
    # The counter trap: every row counts as modified since the ANALYZE of the same transaction.
    assert table.n_mod_since_analyze >= 200_000 > row_estimate_error.analyze_threshold(snapshot, table)
    [experiment] = [e for e in snapshot.estimate_experiments if e.table == "public.addr"]
    assert [p.actual_rows for p in experiment.predicates] == [2000, 2000]
    assert all(p.q_error < 3 for p in experiment.predicates) and experiment.combined.q_error >= 50
    finding = _finding(snapshot, "public.addr")
    assert finding.evidence["cause"] == "correlated-columns" and finding.columns == ["city", "zip"]
    assert finding.evidence["cause_tested"] and finding.confidence == "high"
    assert finding.fix_sql == (
        "CREATE STATISTICS IF NOT EXISTS public.addr_city_zip_stats (dependencies, mcv) "
        "ON city, zip FROM public.addr;\nANALYZE public.addr;"
    )
    assert "suggested stale statistics" in finding.advice
    # Without the experiment the counters decide, and they decide wrong (and say so: untested).
    untested = snapshot.__class__.from_dict(snapshot.to_dict())
    untested.estimate_experiments = []
    guess = _finding(untested, "public.addr")
    assert guess.evidence["cause"] == "stale-statistics" and not guess.evidence["cause_tested"]
    assert guess.confidence == "medium"
    # The fix, applied as printed, brings the estimate close.
    capture = snapshot.plan_for(finding.queryids[0])
    with psycopg.connect(correlated.dsn, autocommit=True) as conn:
        for statement in finding.fix_sql.split(";\n"):
            conn.execute(statement)
    assert _scan_q_error(correlated, PAIRS, tuple(capture.parameters)) < 2


@pytest.fixture
def stale(server):
    db = server.create_database()
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        # 100 kinds of 200 rows each when analyzed; then two kinds of 10,000 (whichever value
        # the audit draws, the planner expects 1 % of the rows, a 50th of what it finds).
        conn.execute("CREATE TABLE events (id int, kind text NOT NULL, pad text) WITH (autovacuum_enabled = false)")
        conn.execute("INSERT INTO events SELECT g, 'kind' || g % 100, repeat('x', 20) FROM generate_series(1, 20000) g")
        flush_statistics(conn)
        conn.execute("VACUUM ANALYZE events")
        conn.execute("UPDATE events SET kind = 'kind' || id % 2")
        flush_statistics(conn)
        conn.execute("SELECT pg_stat_statements_reset()")
        for _ in range(3):
            conn.execute(KINDS, ("kind0",)).fetchall()
    return db


def test_a_truly_stale_table_is_stale_statistics(stale):
    snapshot = _collect(stale)
    finding = _finding(snapshot, "public.events")
    assert finding.evidence["cause"] == "stale-statistics" and finding.evidence["cause_tested"]
    assert finding.fix_sql == "ANALYZE public.events;" and finding.columns == ["kind"]
    [condition] = finding.evidence["experiment"]["conditions"]
    assert condition["q_error"] > 3 and condition["actual_rows"] >= 1  # the column's own estimate is off
    assert finding.evidence["detail"]["n_mod_since_analyze"] >= 20_000
    capture = snapshot.plan_for(finding.queryids[0])
    with psycopg.connect(stale.dsn, autocommit=True) as conn:
        conn.execute(finding.fix_sql)
    assert _scan_q_error(stale, KINDS, tuple(capture.parameters)) < 2


def test_verify_real_measures_the_q_error_before_and_after_and_leaves_nothing(correlated):
    snapshot = _collect(correlated, verify_real=True)
    finding = _finding(snapshot, "public.addr")
    [m] = [m for m in snapshot.fix_verification.measurements if m.finding_id == finding.id]
    assert m.method == "real" and m.kind == "statistics"
    assert m.before["q_error"] >= 50 and m.after["q_error"] < 2, (m.before, m.after)
    assert "q-error" in m.detail
    assert correlated.execute("SELECT count(*) FROM pg_statistic_ext")[0][0] == 0
    # Every format shows it: the report (valid against the contract) carries the before/after q-error.
    report = analyse(snapshot)
    validate_report(report)
    shown = next(f for f in report["findings"] if f["id"] == finding.id)
    assert shown["evidence"]["cause_tested"] and "row estimate q-error" in (shown["before_after"]["extra"] or "")


# -- database-free: what can be tested alone, and the verdict from stored figures -----------


def _scan(filter_text: str, estimated: float, actual: float) -> dict:
    return {
        "Plan": {
            "Node Type": "Aggregate",
            "Startup Cost": 0,
            "Total Cost": 500,
            "Plan Rows": 1,
            "Plan Width": 8,
            "Actual Rows": 1,
            "Actual Loops": 1,
            "Actual Startup Time": 9,
            "Actual Total Time": 10,
            "Plans": [
                {
                    "Node Type": "Seq Scan",
                    "Parent Relationship": "Outer",
                    "Relation Name": "addr",
                    "Alias": "addr",
                    "Startup Cost": 0,
                    "Total Cost": 400,
                    "Plan Rows": estimated,
                    "Plan Width": 0,
                    "Actual Rows": actual,
                    "Actual Loops": 1,
                    "Actual Startup Time": 0,
                    "Actual Total Time": 9,
                    "Filter": filter_text,
                }
            ],
        },
        "Execution Time": 10.0,
        "Planning Time": 0.1,
    }


def _pure_snapshot(experiments, n_mod: int = 200_000):
    from queryaudit.estimates.model import EstimateExperiment, PredicateCount  # noqa: F401 (the stored shape)
    from queryaudit.snapshot import Column, PlanCapture, ServerInfo, Snapshot, Statement, Table

    table = Table(
        "public",
        "addr",
        reltuples=200_000,
        n_mod_since_analyze=n_mod,
        last_analyze="2026-12-01",
        columns=[Column("city", "text"), Column("zip", "text"), Column("id", "integer")],
    )
    statement = Statement(
        "1",
        "SELECT count(*) FROM addr WHERE city = $1 AND zip = $2",
        calls=3,
        total_exec_time_ms=30.0,
        mean_exec_time_ms=10.0,
        rows=3,
    )
    plan = PlanCapture(
        "1", "analyze", plan=_scan("((city = 'c1'::text) AND (zip = 'z48'::text))", 20, 2000), parameters=["c1", "z48"]
    )
    return Snapshot(
        server=ServerInfo(150000, "15", "db"),
        collected_at="now",
        statements=[statement],
        tables=[table],
        plans=[plan],
        total_exec_time_ms=30.0,
        total_calls=3,
        statement_count=1,
        estimate_experiments=experiments,
    )


def _experiment(city: tuple[float, int], zip_: tuple[float, int], both: tuple[float, int]):
    from queryaudit.estimates.model import EstimateExperiment, PredicateCount

    predicates = [
        PredicateCount("city = 'c1'::text", ["city"], True, *city),
        PredicateCount("zip = 'z48'::text", ["zip"], True, *zip_),
    ]
    combined = PredicateCount("(city = 'c1'::text) AND (zip = 'z48'::text)", ["city", "zip"], False, *both)
    return EstimateExperiment("1", "0.0", "public.addr", table_rows=200_000, predicates=predicates, combined=combined)


def test_only_conditions_on_the_table_alone_are_tested():
    from queryaudit.estimates.predicates import testable
    from queryaudit.snapshot import Column, Table

    table = Table("public", "addr", columns=[Column("city", "text"), Column("zip", "text"), Column("id", "integer")])
    plan = plan_model.build(
        _scan("((city = 'c1'::text) AND (lower(zip) = 'z'::text) AND (id = o.customer_id) AND (id = $0))", 20, 2000)
    )
    tested, untested = testable(plan.nodes[1], table)
    assert [(p.sql, p.columns, p.plain_column) for p in tested] == [
        ("city = CAST('c1' AS text)", ["city"], True),
        ("lower(zip) = CAST('z' AS text)", ["zip"], False),
    ]
    assert untested == ["id = o.customer_id", "id = $0"]


def test_the_experiment_decides_and_the_counters_are_evidence():
    # Each column right, the pair 100x off: correlated, though the counters say stale.
    snapshot = _pure_snapshot([_experiment((2000, 2000), (2000, 2000), (20, 2000))])
    [f] = row_estimate_error.run(snapshot.__class__.from_dict(snapshot.to_dict()))  # as saved and reloaded
    assert (f.evidence["cause"], f.columns, f.confidence) == ("correlated-columns", ["city", "zip"], "high")
    assert f.evidence["detail"]["beyond_threshold"] and f.evidence["detail"]["independence_ratio"] == 100.0
    # A column itself off: stale statistics, whatever the counters say.
    [f] = row_estimate_error.run(_pure_snapshot([_experiment((2000, 2000), (20, 2000), (1, 20))], n_mod=0))
    assert (f.evidence["cause"], f.columns, f.fix_sql) == ("stale-statistics", ["zip"], "ANALYZE public.addr;")
    assert "SET STATISTICS 1000" in f.advice  # few changes counted: the statistics target is the next candidate
    # Off and correlated as well (the counts alone are 100x from independence): the statistics object too.
    [f] = row_estimate_error.run(_pure_snapshot([_experiment((2000, 2000), (20, 2000), (20, 2000))]))
    assert f.evidence["cause"] == "stale-statistics" and f.fix_sql.startswith("CREATE STATISTICS IF NOT EXISTS")
    # An expression of a column off: statistics on that expression.
    experiment = _experiment((2000, 2000), (20, 2000), (1, 20))
    experiment.predicates[1].sql, experiment.predicates[1].plain_column = "lower(zip) = CAST('z48' AS text)", False
    [f] = row_estimate_error.run(_pure_snapshot([experiment]))
    assert (f.evidence["cause"], f.columns) == ("expression", ["zip"])
    assert f.fix_sql == (
        "CREATE STATISTICS IF NOT EXISTS public.addr_expr_stats ON (lower(zip)) FROM public.addr;\nANALYZE public.addr;"
    )
    # The conditions alone do not reproduce the error, or a count was cut off: the counters decide, untested.
    for experiment in (
        _experiment((2000, 2000), (2000, 2000), (1500, 2000)),
        _experiment((2000, 2000), (2000, None), (20, 2000)),
    ):
        [f] = row_estimate_error.run(_pure_snapshot([experiment]))
        assert (f.evidence["cause"], f.confidence, f.evidence["cause_tested"]) == ("stale-statistics", "medium", False)
        assert f.evidence["experiment"]["conditions"]


def test_verify_real_tries_a_higher_statistics_target_when_analyze_is_not_enough(empty_db):
    """A common value the default sample leaves out of the MCV list: ANALYZE again changes
    nothing; a statistics target of 1000 (a sample of the whole table here) does."""
    import time

    from queryaudit.findings import Finding
    from queryaudit.snapshot import PlanCapture, ServerInfo, Snapshot, Statement
    from queryaudit.verify.fixes import Verifier
    from queryaudit.verify.measure import Runner

    # 100 values of 700 rows, 100 of 380, 12,000 of one row: the default sample (30,000 rows)
    # keeps the first hundred in most_common_vals, whichever rows it draws, and never the
    # second; the planner expects a handful of rows for each of those.
    empty_db.execute("CREATE TABLE skew (id int, v int)")
    empty_db.execute(
        "INSERT INTO skew SELECT g, CASE WHEN g <= 70000 THEN g % 100 WHEN g <= 108000 "
        "THEN 100 + g % 100 ELSE g END FROM generate_series(1, 120000) g"
    )
    empty_db.execute("ANALYZE skew")
    common = {
        row[0]
        for row in empty_db.execute(
            "SELECT unnest(most_common_vals::text::int[]) FROM pg_stats WHERE tablename = 'skew' AND attname = 'v'"
        )
    }
    assert common == set(range(100))
    missed = 150
    query = "SELECT count(*) FROM skew WHERE v = $1"
    statement = Statement("1", query, calls=1, total_exec_time_ms=10, mean_exec_time_ms=10, rows=1)
    snapshot = Snapshot(
        server=ServerInfo(150000, "15", "db"),
        collected_at="now",
        statements=[statement],
        plans=[PlanCapture("1", "analyze", plan={}, parameters=[str(missed)])],
    )
    finding = Finding(
        check="row-estimate-error",
        severity="medium",
        title="t",
        table="public.skew",
        columns=["v"],
        queryids=["1"],
        fix_sql="ANALYZE public.skew;",
        evidence={"cause": "stale-statistics", "relation": "skew", "alias": "skew"},
    )
    with empty_db.connect() as conn:
        conn.autocommit = True
        verifier = Verifier(Runner(conn, time.monotonic() + 120, 30_000), snapshot, VerifyOptions(runs=1), conn)
        m = verifier.statistics("1", finding)
    assert [step["fix"] for step in m.steps] == [
        "ANALYZE public.skew;",
        "ALTER TABLE public.skew ALTER COLUMN v SET STATISTICS 1000;\nANALYZE public.skew;",
    ]
    assert m.steps[0]["q_error"] >= 10 and m.after["q_error"] < 2 and m.before["q_error"] >= 10
    assert m.fix_sql == m.steps[1]["fix"]
    # Rolled back: the column's target is as it was.
    assert empty_db.execute(
        "SELECT attstattarget FROM pg_attribute WHERE attrelid = 'skew'::regclass AND attname = 'v'"
    )[0][0] in (-1, None)
