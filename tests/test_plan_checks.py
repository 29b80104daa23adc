"""Plan capture and the plan checks on real clusters (PostgreSQL 15 and 18).

One database per version plants every plan problem in small tables, runs a workload
through psycopg (so pg_stat_statements keeps $n placeholders), then captures plans the
way an audit does: values drawn from pg_stats, DML explained in a rolled-back
transaction (--analyze-dml). Each test asserts on that one capture.
"""

from __future__ import annotations

import json

import psycopg
import pytest

from conftest import VERSIONS, flush_statistics, get_server, run_cli
from queryaudit.checks import run_checks
from queryaudit.collect import CollectOptions, collect_snapshot
from queryaudit.connect import session
from queryaudit.estimates.stage import stage as estimates_stage
from queryaudit.plans import model as plan_model
from queryaudit.plans.stage import PlanOptions, capture_plans, plan_stage
from queryaudit.snapshot import Snapshot

SETUP = """
CREATE TABLE corr (a int NOT NULL, b int NOT NULL, pad text);
INSERT INTO corr SELECT g % 100, g % 100, 'x' FROM generate_series(1, 20000) g;
CREATE TABLE stale (kind text NOT NULL, pad text) WITH (autovacuum_enabled = false);
INSERT INTO stale SELECT 'old', 'x' FROM generate_series(1, 1000);
CREATE TABLE items (id int NOT NULL, grp int NOT NULL, val int NOT NULL);
INSERT INTO items SELECT g, g % 1000, (g * 7919) % 20000 FROM generate_series(1, 20000) g;
CREATE TABLE bm (id int NOT NULL, x int NOT NULL, pad text) WITH (fillfactor = 10);
INSERT INTO bm SELECT g, g % 20, repeat('p', 80) FROM generate_series(1, 20000) g;
CREATE INDEX bm_x_idx ON bm (x);
CREATE TABLE vis (id int PRIMARY KEY, note text);
INSERT INTO vis SELECT g, 'x' FROM generate_series(1, 20000) g;
CREATE TABLE big (id int NOT NULL, a int NOT NULL, b int NOT NULL);
INSERT INTO big SELECT g, g % 50, g FROM generate_series(1, 100000) g;
CREATE INDEX big_a_idx ON big (a);
CREATE TABLE parent (id int PRIMARY KEY, name text);
INSERT INTO parent SELECT g, 'p' || g FROM generate_series(1, 1000) g;
CREATE TABLE child (id int NOT NULL, parent_id int NOT NULL);
INSERT INTO child SELECT g, 1 + g % 100 FROM generate_series(1, 50000) g;
ALTER TABLE child ADD FOREIGN KEY (parent_id) REFERENCES parent (id);
CREATE TABLE par (id int NOT NULL, v int NOT NULL) WITH (parallel_workers = 2);
INSERT INTO par SELECT g, g % 7 FROM generate_series(1, 300000) g;
CREATE TABLE gone (id int PRIMARY KEY);
CREATE TABLE skew (id int NOT NULL, k int NOT NULL);
INSERT INTO skew SELECT g, CASE WHEN g % 100 = 0 THEN g ELSE 1 END FROM generate_series(1, 20000) g;
CREATE INDEX skew_k_idx ON skew (k);
CREATE FUNCTION few() RETURNS SETOF int LANGUAGE plpgsql STABLE ROWS 100000000 AS $$ BEGIN RETURN NEXT 1; END $$;
CREATE FUNCTION slow_fn() RETURNS int LANGUAGE sql STABLE AS $$ SELECT 1 $$;
CREATE FUNCTION audit_log() RETURNS int LANGUAGE sql AS $$ INSERT INTO parent VALUES (5000) RETURNING id $$;
-- Statistics reach the shared counters at most once a second (15+): flush the
-- inserts now, or they would count as modified after the ANALYZE below.
SELECT pg_stat_force_next_flush();
SELECT 1;
VACUUM ANALYZE;
INSERT INTO stale SELECT 'new', 'x' FROM generate_series(1, 30000);
UPDATE vis SET note = 'y';
"""

# (query, params, times): what the application runs.
WORKLOAD = [
    ("SELECT count(*) FROM corr WHERE a = %s AND b = %s", (5, 5), 3),
    ("SELECT count(*) FROM stale WHERE kind = %s", ("new",), 3),
    ("SELECT id, grp, val FROM items ORDER BY val, id", None, 2),
    ("SELECT i.grp, count(*) FROM items i JOIN items j ON j.val = i.id GROUP BY i.grp", None, 2),
    ("SELECT count(pad) FROM bm WHERE x < %s", (2,), 3),
    ("SELECT count(*) FROM vis WHERE id BETWEEN %s AND %s", (9000, 11000), 3),
    ("SELECT id FROM big WHERE a = %s AND b = %s", (0, 50000), 3),
    ("SELECT id, a FROM big WHERE b = %s", (777,), 3),
    ("SELECT count(*) FROM par WHERE v = %s", (3,), 1),
    ("SELECT id, b FROM big ORDER BY id LIMIT %s OFFSET %s", (10, 30000), 3),
    ("DELETE FROM parent WHERE id = %s", (990,), 1),
    ("SELECT count(*) FROM gone WHERE id = %s", (1,), 1),
    ("SELECT slow_fn()", None, 1),
    ("SELECT count(*) FROM skew WHERE k = %s", (1,), 3),
    ("SELECT audit_log()", None, 1),
]


class Planted:
    def __init__(self, server, db: str, snapshot: Snapshot):
        self.server, self.db, self.snapshot = server, db, snapshot
        self.findings = run_checks(snapshot)

    @property
    def dsn(self) -> str:
        return self.server.cluster.dsn(self.db)

    def capture(self, fragment: str):
        return next(p for p in self.snapshot.plans if fragment in (self.snapshot.statement(p.queryid).query or ""))

    def found(self, check: str, **fields) -> list:
        return [
            f
            for f in self.findings
            if f.check == check and all(getattr(f, k, None) == v or f.evidence.get(k) == v for k, v in fields.items())
        ]


def _collect(dsn: str, **options) -> Snapshot:
    with session(dsn) as conn:
        # The estimate experiments test each misestimate's cause (queryaudit.estimates).
        return collect_snapshot(
            conn,
            CollectOptions(top=60, stages=[plan_stage(PlanOptions(top=60, **options)), estimates_stage(60, 2_000)]),
        )


@pytest.fixture(scope="module", params=VERSIONS)
def planted(request) -> Planted:
    server = get_server(request.param)
    db = f"plans_{request.param}"
    with server.admin() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {db}")
        conn.execute(f"CREATE DATABASE {db}")
        # A small work_mem makes sorts, hashes and bitmaps spill at test sizes; no
        # parallel worker may start, so the planned ones are not launched.
        conn.execute(f"ALTER DATABASE {db} SET work_mem = '64kB'")
        conn.execute(f"ALTER DATABASE {db} SET max_parallel_workers = 0")
    dsn = server.cluster.dsn(db)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
        for statement in SETUP.split(";\n"):
            if statement.strip().endswith("SELECT pg_stat_force_next_flush()"):
                flush_statistics(conn)
            elif statement.strip():
                conn.execute(statement)
        jit = conn.execute("SELECT pg_jit_available()").fetchone()[0]
        conn.execute("SELECT pg_stat_statements_reset()")
        for query, params, times in WORKLOAD + ([("SELECT sum(x) FROM few() x", None, 1)] if jit else []):
            for _ in range(times):
                try:
                    with conn.transaction(force_rollback=query.startswith(("DELETE", "SELECT audit_log"))):
                        conn.execute(query, params)
                except psycopg.Error:
                    pass
        conn.execute("DROP TABLE gone")
        # The function became slow after it was measured: its EXPLAIN ANALYZE times out.
        conn.execute(
            "CREATE OR REPLACE FUNCTION slow_fn() RETURNS int LANGUAGE sql STABLE AS $$ SELECT 1 FROM pg_sleep(5) $$"
        )
        flush_statistics(conn)
        live_before = conn.execute("SELECT n_live_tup FROM pg_stat_user_tables WHERE relname = 'parent'").fetchone()[0]
    # 3 s: the JIT statement takes 110-130 ms alone and about 400 ms beside 6 busy sessions,
    # and must stay under the limit to be analysed; slow_fn must stay over it.
    snapshot = _collect(dsn, analyze_dml=True, statement_limit_ms=3000)
    planted = Planted(server, db, snapshot)
    planted.parent_live_before = live_before
    planted.jit = jit
    return planted


def test_read_statements_are_analyzed_with_values_from_a_sampled_row(planted):
    capture = planted.capture("FROM corr WHERE")
    assert capture.method == "analyze"
    assert "public.corr.a from a sampled row" in capture.parameter_source
    assert capture.parameters[0] == capture.parameters[1]  # a = b in every row of corr
    assert "$1" not in capture.query_text and capture.parameters
    plan = plan_model.build(capture.plan)
    assert plan.analyzed and plan.execution_ms > 0
    assert capture.plan.get("Settings") is not None  # SETTINGS: the work_mem the plan ran with
    assert capture.plan["Settings"].get("work_mem") == "64kB"


def test_offset_is_planned_as_the_first_page(planted):
    capture = planted.capture("ORDER BY id LIMIT")
    assert capture.method == "analyze"
    assert "OFFSET 0" in capture.parameter_source and capture.parameters[-1] == "0"
    limit = plan_model.build(capture.plan).root
    assert limit.node_type == "Limit" and limit.actual_rows > 0


def test_select_calling_a_volatile_function_is_not_executed(planted):
    capture = planted.capture("SELECT audit_log()")
    assert capture.method == "explain" and "volatile function audit_log" in capture.skipped_reason
    with psycopg.connect(planted.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM parent WHERE id = 5000").fetchone()[0] == 0


def test_dml_is_analyzed_only_in_a_rolled_back_transaction(planted):
    capture = planted.capture("DELETE FROM parent")
    assert capture.method == "analyze-rolled-back"
    plan = plan_model.build(capture.plan)
    assert plan.root.node_type == "ModifyTable" and plan.triggers
    deleted = int(capture.parameters[0])
    with psycopg.connect(planted.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM parent").fetchone()[0] == 1000
        assert conn.execute("SELECT count(*) FROM parent WHERE id = %s", (deleted,)).fetchone()[0] == 1
        flush_statistics(conn)
        assert (
            conn.execute("SELECT n_live_tup FROM pg_stat_user_tables WHERE relname = 'parent'").fetchone()[0]
            == planted.parent_live_before
        )


def test_failures_are_skipped_with_a_reason_and_the_capture_goes_on(planted):
    dropped = planted.capture("FROM gone WHERE")
    assert dropped.method == "skipped" and "no longer matches the schema" in dropped.skipped_reason
    slow = planted.capture("SELECT slow_fn()")
    assert slow.method == "explain" and "per-statement limit of 3000 ms" in slow.skipped_reason
    assert not planted.snapshot.errors
    # Truncated text: what a statement looks like cut at track_activity_query_size.
    snapshot = Snapshot.from_dict(planted.snapshot.to_dict())
    statement = next(s for s in snapshot.statements if "FROM corr WHERE" in s.query)
    statement.query = statement.query[: statement.query.rindex("=") + 1]  # "... AND b ="
    statement.total_exec_time_ms = snapshot.total_exec_time_ms  # the top statement: captured first
    with session(planted.dsn) as conn:
        capture_plans(conn, snapshot, PlanOptions(top=3))
    truncated = next(p for p in snapshot.plans if p.queryid == statement.queryid)
    assert truncated.method == "skipped" and "does not parse" in truncated.skipped_reason
    assert sum(1 for p in snapshot.plans if p.method == "analyze") >= 2


def test_permission_denied_is_skipped(planted):
    role = f"reader_{planted.db}"
    with psycopg.connect(planted.dsn, autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT pg_monitor TO {role}")
        conn.execute(f"GRANT SELECT ON corr TO {role}")
    dsn = f"postgresql://{role}@127.0.0.1:{planted.server.cluster.port}/{planted.db}"
    with session(dsn) as conn:
        snapshot = collect_snapshot(
            conn, CollectOptions(top=60, stages=[plan_stage(PlanOptions(top=60, statement_limit_ms=300))])
        )
    by_query = {snapshot.statement(p.queryid).query: p for p in snapshot.plans}
    assert next(p for q, p in by_query.items() if "FROM corr WHERE" in q).method == "analyze"
    denied = next(p for q, p in by_query.items() if "FROM items ORDER BY" in q)
    assert denied.method == "skipped" and "permission denied" in denied.skipped_reason


def test_correlated_columns_and_the_create_statistics_that_fixes_them(planted):
    [finding] = planted.found("row-estimate-error", table="public.corr")
    assert finding.evidence["cause"] == "correlated-columns" and finding.columns == ["a", "b"]
    assert finding.evidence["q_error"] >= 10 and finding.evidence["cause_tested"]
    assert (
        finding.fix_sql.startswith("CREATE STATISTICS")
        and "(dependencies, mcv) ON a, b FROM public.corr" in finding.fix_sql
    )


def test_stale_statistics_and_the_analyze_that_fixes_them(planted):
    [finding] = planted.found("row-estimate-error", table="public.stale")
    assert finding.evidence["cause"] == "stale-statistics" and finding.evidence["cause_tested"]
    assert finding.fix_sql == "ANALYZE public.stale;"
    assert finding.evidence["detail"]["n_mod_since_analyze"] >= 30000


def test_generic_plan_misestimate_on_skewed_data(planted):
    [finding] = planted.found("row-estimate-error", cause="generic-plan")
    assert finding.table == "public.skew" and "plan_cache_mode = force_custom_plan" in finding.fix_sql
    assert finding.evidence["detail"]["generic_q_error"] >= 10


def test_memory_spills(planted):
    [sort] = planted.found("disk-sort", table="public.items")
    assert sort.evidence["disk_kb"] > 0 and "SET LOCAL work_mem" in sort.fix_sql
    assert sort.evidence["index_sql"] == "CREATE INDEX CONCURRENTLY ON public.items (val, id);"
    spills = planted.found("hash-spill", table="public.items")
    assert any(f.evidence["node"] == "Hash" and f.evidence["batches"] > 1 and "work_mem" in f.fix_sql for f in spills)
    [lossy] = planted.found("lossy-bitmap", table="public.bm")
    assert lossy.evidence["lossy_heap_blocks"] > 0


def test_index_problems(planted):
    [fetches] = planted.found("heap-fetches", table="public.vis")
    assert fetches.fix_sql == "VACUUM (ANALYZE) public.vis;" and fetches.evidence["heap_fetches"] >= 1000
    [inefficient] = planted.found("inefficient-index", table="public.big")
    assert inefficient.columns == ["a", "b"] and inefficient.evidence["rows_removed_by_filter"] >= 1000
    assert inefficient.fix_sql == "CREATE INDEX CONCURRENTLY ON public.big (a, b);"
    scans = planted.found("seq-scan-large-table", table="public.big")
    assert any(f.columns == ["b"] and f.evidence["rows_kept"] <= 1 for f in scans)


def test_offset_parallel_jit_and_foreign_key_triggers(planted):
    [offset] = planted.found("large-offset", table="public.big")
    assert offset.evidence["rows_skipped_per_call"] >= 10000 and "id > $last_id" in offset.advice
    [parallel] = planted.found("parallel-workers-not-launched")
    assert parallel.evidence["workers_planned"] == 2 and parallel.evidence["workers_launched"] == 0
    [trigger] = planted.found("slow-foreign-key-trigger")
    assert trigger.table == "public.child" and trigger.columns == ["parent_id"]
    assert trigger.fix_sql == "CREATE INDEX CONCURRENTLY ON public.child (parent_id);"
    if planted.jit:
        assert planted.found("jit-overhead")


def test_plan_checks_run_from_a_saved_snapshot_without_a_database(planted, tmp_path):
    path = tmp_path / "snap.json"
    planted.snapshot.save(path)
    again = run_checks(Snapshot.load(path))
    assert sorted(f.id for f in again) == sorted(f.id for f in planted.findings)
    assert all(f.predicted_saving is not None for f in again if f.check in ("disk-sort", "row-estimate-error"))


def test_applying_the_fixes_brings_the_q_error_under_10(planted):
    fixes = [
        f.fix_sql
        for f in planted.findings
        if f.check == "row-estimate-error" and f.table in ("public.corr", "public.stale")
    ]
    assert len(fixes) == 2
    with psycopg.connect(planted.dsn, autocommit=True) as conn:
        for fix in fixes:
            for statement in fix.split(";"):
                if statement.strip():
                    conn.execute(statement)
    after = _collect(planted.dsn, statement_limit_ms=3000)
    for fragment in ("FROM corr WHERE", "FROM stale WHERE"):
        capture = next(p for p in after.plans if fragment in after.statement(p.queryid).query)
        scan = next(n for n in plan_model.build(capture.plan).nodes if n.relation)
        assert scan.q_error < 10, (fragment, scan.evidence())
    assert not [
        f for f in run_checks(after) if f.check == "row-estimate-error" and f.table in ("public.corr", "public.stale")
    ]


def test_cli_explains_a_queries_file_and_reports_its_statements(planted, tmp_path):
    queries = tmp_path / "queries.sql"
    queries.write_text(
        "SELECT count(*) FROM corr WHERE a = 7 AND b = 7;\n"
        "SELECT id, a FROM big ORDER BY id DESC LIMIT 5 OFFSET 5000;\n"
        "DELETE FROM parent WHERE id = 991;\n"
    )
    out = tmp_path / "report.json"
    result = run_cli(
        "audit",
        "--dsn",
        planted.dsn,
        "--queries",
        str(queries),
        "--explain-budget",
        "30",
        "--top",
        "5",
        "--json",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    by_text = {q["query"]: q for q in report["queries"]}
    asked = report["extras"]["queries_file"]
    assert [a["number"] for a in asked] == [1, 2, 3]
    # A concrete statement of the workload replaces its normalized entry's plan.
    corr = next(q for q in report["queries"] if q["queryid"] == asked[0]["queryid"])
    assert asked[0]["in_workload"] and "a = $1" in corr["query"] and corr["plan_method"] == "analyze"
    offset = by_text["SELECT id, a FROM big ORDER BY id DESC LIMIT 5 OFFSET 5000"]
    assert not asked[1]["in_workload"] and offset["plan_method"] == "analyze"
    [finding] = [f for f in report["findings"] if f["check"] == "large-offset" and offset["queryid"] in f["queryids"]]
    assert finding["evidence"]["source"] == "plan" and finding["evidence"]["rows_skipped_per_call"] == 5000
    delete = next(q for q in report["queries"] if q["queryid"] == asked[2]["queryid"])
    assert delete["plan_method"] == "explain" and "--analyze-dml" in delete["plan_skipped_reason"]
    with psycopg.connect(planted.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM parent WHERE id = 991").fetchone()[0] == 1

    result = run_cli("audit", "--dsn", planted.dsn, "--no-explain", "--top", "5", "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert all(q["plan_method"] is None for q in json.loads(out.read_text())["queries"])


def test_analyze_dml_is_refused_on_a_hot_standby(pg15_standby, tmp_path):
    from conftest import wait_for_replay

    primary, standby = pg15_standby
    db = primary.create_database()
    primary_dsn = db.dsn
    with psycopg.connect(primary_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100); ANALYZE t")
    wait_for_replay(primary, standby)
    queries = tmp_path / "q.sql"
    queries.write_text("DELETE FROM t WHERE id = 5;\nSELECT count(*) FROM t WHERE id < 50;\n")
    with session(standby.dsn(db.name)) as conn:
        snapshot = collect_snapshot(
            conn, CollectOptions(stages=[plan_stage(PlanOptions(analyze_dml=True, queries_file=queries))])
        )
    assert snapshot.server.in_recovery
    delete, select = (snapshot.plans[0], snapshot.plans[1])
    assert delete.method == "explain" and "hot standby" in delete.skipped_reason
    assert select.method == "analyze"
