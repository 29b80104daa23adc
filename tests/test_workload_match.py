"""Plans that reproduce the workload (queryaudit.plans.workload, queryaudit.plans.search):
each analyzed plan compared with pg_stat_statements' per-call figures, the values searched
when the first sample is unlike the workload, and the fixes sized on the workload's own
values. Pure cases first, then the issue's three workloads live on PostgreSQL 15 and 18."""

import json

from helpers import validate_report
from queryaudit.advisor.stage import AdvisorOptions
from queryaudit.checks._workload_sizing import plan_sizing
from queryaudit.pipeline import AuditOptions, analyse, collect_live
from queryaudit.plans.params import Binding, ParameterSlot
from queryaudit.plans.search import candidate_sets
from queryaudit.plans.workload import ParameterSet, compare, weigh
from queryaudit.snapshot import ColumnStats, ServerInfo, Snapshot, Statement, Table
from queryaudit.verify.stage import VerifyOptions


def _statement(**kw):
    base = dict(
        queryid="1",
        query="SELECT * FROM jobs WHERE status = $1",
        calls=5,
        total_exec_time_ms=500.0,
        mean_exec_time_ms=100.0,
        rows=5000,
        shared_blks_hit=400,
        shared_blks_read=100,
    )
    base.update(kw)
    return Statement(**base)


def _plan(rows, blocks, temp=0, ms=50.0):
    return {
        "Plan": {
            "Node Type": "Seq Scan",
            "Actual Rows": rows,
            "Actual Loops": 1,
            "Shared Hit Blocks": blocks,
            "Shared Read Blocks": 0,
            "Temp Written Blocks": temp,
        },
        "Execution Time": ms,
    }


# -- pure ----------------------------------------------------------------------------------


def test_a_plan_within_a_factor_of_two_is_representative():
    match = compare(_plan(1500, 150), _statement())  # 1,000 rows and 100 blocks per call
    assert match.verdict == "representative" and 1 < match.rows_ratio < 2 and match.spill_agreement
    assert match.workload_rows == 1000 and match.time_ratio == 0.5  # shown, never judged


def test_rows_off_by_more_than_two_or_a_spill_the_workload_lacks_is_unlike():
    match = compare(_plan(398_000, 100), _statement())
    assert match.verdict == "unlike" and "398,000 rows" in match.reasons[0]
    spill = compare(_plan(1000, 100, temp=0), _statement(temp_blks_written=5 * 800))
    assert spill.verdict == "unlike" and not spill.spill_agreement and spill.workload_spills
    assert "a spill it does not reproduce" in spill.reasons[0]
    # the distance orders them: a 398x row error beats a spill mismatch, both beat a match
    assert compare(_plan(1000, 100), _statement()).distance < spill.distance < match.distance
    assert compare(_plan(1000, 100), _statement(calls=0)).verdict == "unknown"


def test_sets_within_a_factor_of_two_share_the_weight():
    a = ParameterSet(["done"], match=compare(_plan(398_000, 100), _statement()))
    b = ParameterSet(["failed"], match=compare(_plan(1000, 100), _statement()), chosen=True)
    c = ParameterSet(["retry"], match=compare(_plan(1200, 110), _statement()))
    weigh([a, b, c])
    assert (a.weight, b.weight, c.weight) == (0.0, 0.5, 0.5)


def test_candidates_include_a_rare_common_value_and_range_quantiles():
    snap = Snapshot(
        server=ServerInfo(version_num=150000, version="15", database="d"),
        collected_at="now",
        tables=[Table(schema="public", name="jobs", reltuples=400_000)],
        column_stats=[
            ColumnStats(
                "public.jobs",
                "status",
                most_common_vals=["done", "queued", "failed"],
                most_common_freqs=[0.9, 0.0975, 0.0025],
            ),
            ColumnStats("public.jobs", "at", histogram_bounds=[str(i) for i in range(101)]),
        ],
    )
    binding = Binding(
        [
            ParameterSlot(1, "text", "public.jobs", "status", "=", "done", "a sampled row"),
            ParameterSlot(2, "integer", "public.jobs", "at", ">=", "90", "histogram_bounds"),
        ]
    )
    sets = candidate_sets(binding, snap)
    failed = next(s for s in sets if s.values[0] == "failed")
    assert "~1,000 rows" in failed.sources[0] and failed.values[1] == "90" and failed.changed == [1]
    wide = next(s for s in sets if s.values[1] == "2")
    assert "keeps ~98% of the rows" in wide.sources[1] and wide.values[0] == "done"


def test_constants_pg_qualstats_saw_are_candidates_first():
    from queryaudit.plans.stage import qualstats_constant

    assert [qualstats_constant(t) for t in ("'failed'::text", "2::integer", "'it''s'::character varying")] == [
        "failed",
        "2",
        "it's",
    ]
    snap = Snapshot(
        server=ServerInfo(version_num=150000, version="15", database="d"),
        collected_at="now",
        tables=[Table(schema="public", name="jobs", reltuples=1000)],
    )  # never analyzed: no pg_stats
    binding = Binding([ParameterSlot(1, "text", "public.jobs", "status", "=", "done", "a sampled row")])
    [found] = candidate_sets(binding, snap, observed={("public.jobs", "status"): [("failed", "pg_qualstats: 5")]})
    assert found.values == ["failed"] and found.sources == ["pg_qualstats: 5"]


# -- live ----------------------------------------------------------------------------------


def _audit(db, advisor=False, top=20):
    snap = collect_live(db.dsn, AuditOptions(top=top, advisor=AdvisorOptions(enabled=advisor), verify=VerifyOptions()))
    report = analyse(snap)
    validate_report(report)
    return snap, report


def _run(db, query: str, values: list, calls: int = 5) -> None:
    """The workload: the same statement with its values as parameters (pg_stat_statements keeps $1)."""
    with db.connect() as conn:
        conn.execute("SELECT pg_stat_statements_reset()")
        for _ in range(calls):
            conn.execute(query, values).fetchall()


def _query(report, text: str) -> dict:
    return next(q for q in report["queries"] if text in q["query"])


QUEUE = "SELECT id, payload FROM jobs WHERE status = %s"


def test_a_rare_value_the_workload_asks_for_is_found_and_sizes_the_index(empty_db):
    """400,000 jobs, 0.25 % failed, the workload asks only for failed ones (1,000 rows per
    call): a sampled row says `done` (399,000 rows); the search finds `failed`."""
    empty_db.execute("CREATE TABLE jobs (id int PRIMARY KEY, status text NOT NULL, payload text)")
    empty_db.execute(
        "INSERT INTO jobs SELECT g, CASE WHEN g % 400 = 0 THEN 'failed' WHEN g % 40 = 1 THEN 'queued' "
        "ELSE 'done' END, md5(g::text) FROM generate_series(1, 400000) g"
    )
    empty_db.execute("ANALYZE jobs")
    _run(empty_db, QUEUE, ["failed"])
    snap, report = _audit(empty_db, advisor=True)
    q = _query(report, "FROM jobs WHERE status")
    capture = next(p for p in snap.plans if p.queryid == q["queryid"])
    assert capture.first_sample is not None and capture.first_sample.match.verdict == "unlike"
    assert capture.first_sample.values != ["failed"]
    assert capture.parameters == ["failed"] and capture.workload_match.verdict == "representative"
    assert (
        q["workload_match"]["verdict"] == "representative"
        and q["workload_match"]["first_sample"]["verdict"] == "unlike"
    )
    assert 0.5 <= q["workload_match"]["rows_ratio"] <= 2
    assert sum(s.weight for s in capture.parameter_sets) == 1.0
    chosen = [s for s in capture.parameter_sets if s.chosen]
    assert chosen[0].values == ["failed"] and chosen[0].weight > 0
    index = next(f for f in report["findings"] if f["check"] == "missing-index" and f["table"] == "public.jobs")
    assert index["columns"][0] == "status"
    sized = index["evidence"]["workload_sizing"][0]
    # HypoPG (PostgreSQL 15 here) plans it with `failed`; without it, the representative plan's scan sizes it
    assert sized["values"] == ["failed"] and sized["uses_index"]
    if sized["method"] == "hypopg":  # planner costs: the same on any machine
        assert sized["fraction_removed"] > 0.5
    else:  # the plan's own scan: its time share moves with the machine's load, its rows do not
        assert sized["fraction_removed"] > 0 and sized["rows_kept"] / sized["rows_read"] < 0.01
    assert "sized on the workload's values" in index["title"] and "failed" in index["verification"]["detail"]


VISITS = "SELECT user_id, count(*) FROM visits WHERE page < %s GROUP BY user_id"


def _spill_nodes(plan: dict) -> list[dict]:
    from queryaudit.checks.disk_sort import disk_kilobytes
    from queryaudit.checks.hash_spill import spill
    from queryaudit.verify.logic import nodes

    return [n for n in nodes(plan["Plan"]) if disk_kilobytes(n) > 0 or spill(n)]


def _apply_and_explain(db, fix_sql: str, query: str, values: list) -> dict:
    """The fix SQL run as printed (SET LOCAL inside a transaction), then the workload's own statement."""
    with db.connect() as conn, conn.transaction():
        conn.execute(fix_sql)
        return conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query, values).fetchone()[0][0]


def test_a_range_whose_width_decides_a_spill_is_found_and_sized_on_the_workload(empty_db):
    """page < 834 keeps 83 % of 100,000 visits, one group per user: the workload spills at
    work_mem 1MB; the histogram's tenth (page < 100) fits in memory and hid the spill."""
    empty_db.execute(f"ALTER DATABASE {empty_db.name} SET work_mem = '1MB'")
    empty_db.execute("CREATE TABLE visits (id int PRIMARY KEY, user_id int NOT NULL, page int NOT NULL)")
    empty_db.execute("INSERT INTO visits SELECT g, g, g % 1000 FROM generate_series(1, 100000) g")
    empty_db.execute("ANALYZE visits")
    _run(empty_db, VISITS, [834])
    snap, report = _audit(empty_db, advisor=True)
    q = _query(report, "FROM visits WHERE page")
    match = q["workload_match"]
    assert match["first_sample"]["verdict"] == "unlike" and not match["first_sample"]["spill_agreement"]
    assert match["verdict"] == "representative" and match["spill_agreement"] and match["workload_spills"]
    spills = [
        f for f in report["findings"] if f["check"] in ("disk-sort", "hash-spill") and q["queryid"] in f["queryids"]
    ]
    assert spills, [f["title"] for f in report["findings"]]
    fix = spills[0]
    assert fix["verification"]["outcome"] in ("faster", "not-faster", "inconclusive")
    assert q["workload_match"]["parameters"][0] in fix["verification"]["detail"]  # says which values it used
    # no index on page: the workload's range keeps 83 % of the table
    assert not [
        f
        for f in report["findings"]
        if f["check"] == "missing-index" and f["table"] == "public.visits" and f["columns"][:1] == ["page"]
    ]
    # the fix, applied as printed, removes the spill for the workload's own value
    assert _spill_nodes(_apply_and_explain(empty_db, "SELECT 1", VISITS, [834]))  # it spills without
    assert not _spill_nodes(_apply_and_explain(empty_db, fix["fix_sql"], VISITS, [834]))


EVENTS = "SELECT id, v FROM events WHERE at >= %s"


def test_a_range_covering_most_of_the_table_gets_no_index(empty_db):
    """at >= $1 keeping 98 % of 92,000 events (90,000 rows per call): the sample's narrow range
    is unlike the workload; the search finds the wide one, and no index on `at` is proposed."""
    empty_db.execute("CREATE TABLE events (id int PRIMARY KEY, at timestamptz NOT NULL, v int)")
    empty_db.execute(
        "INSERT INTO events SELECT g, timestamptz '2026-01-01' + g * interval '1 minute', g % 7 "
        "FROM generate_series(1, 92000) g"
    )
    empty_db.execute("ANALYZE events")
    _run(empty_db, EVENTS, ["2026-01-02 09:20:00+00"])  # minute 2,000: 90,000 rows
    snap, report = _audit(empty_db, advisor=True)
    q = _query(report, "FROM events WHERE at")
    assert q["workload_match"]["first_sample"]["verdict"] == "unlike"
    assert q["workload_match"]["verdict"] == "representative", q["workload_match"]
    assert not [
        f
        for f in report["findings"]
        if f["check"] in ("missing-index", "seq-scan-large-table") and f["table"] == "public.events"
    ]
    proposed = [p for p in snap.index_advice.proposed if p.table == "public.events" and p.columns[0] == "at"]
    for p in proposed:  # the advisor's generic plan liked it; the workload's values do not use it
        rows = (snap.extras.get("index_sizing") or {}).get(p.name) or [
            plan_sizing(snap, p.table, "at", e.queryid) for e in p.statements
        ]  # without HypoPG
        assert rows and not any(r["uses_index"] for r in rows)


SERIES = "SELECT g FROM generate_series(1, %s::int) g ORDER BY g DESC"


def test_a_spill_proven_only_by_the_counters_is_reported_and_its_fix_removes_it(empty_db):
    """The value that decides the sort's size is a function argument: no column, no
    candidate, the sample sorts one row. pg_stat_statements' temp blocks prove the spill."""
    empty_db.execute(f"ALTER DATABASE {empty_db.name} SET work_mem = '1MB'")
    _run(empty_db, SERIES, [300000])
    snap, report = _audit(empty_db)
    q = _query(report, "generate_series")
    assert q["workload_match"]["verdict"] == "unlike" and not q["workload_match"]["spill_agreement"]
    [found] = [f for f in report["findings"] if f["check"] == "workload-spill" and q["queryid"] in f["queryids"]]
    assert found["saving_method"] == "heuristic" and "counters prove" in found["evidence"]["confidence_reason"]
    assert found["evidence"]["temp_kb_per_call"] > 1024
    assert _spill_nodes(_apply_and_explain(empty_db, "SELECT 1", SERIES, [300000]))
    assert not _spill_nodes(_apply_and_explain(empty_db, found["fix_sql"], SERIES, [300000]))


def test_every_format_shows_the_match(empty_db):
    from rich.console import Console

    from queryaudit.report import html, markdown, terminal

    empty_db.execute("CREATE TABLE jobs (id int PRIMARY KEY, status text NOT NULL, payload text)")
    empty_db.execute(
        "INSERT INTO jobs SELECT g, CASE WHEN g % 400 = 0 THEN 'failed' ELSE 'done' END, md5(g::text) "
        "FROM generate_series(1, 100000) g"
    )
    empty_db.execute("ANALYZE jobs")
    _run(empty_db, QUEUE, ["failed"])
    _, report = _audit(empty_db)
    json.dumps(report)
    md = markdown.render(report)
    assert "## Plans against the workload" in md and "representative (found by search)" in md and "failed" in md
    page = html.render(report)
    assert "plan against the workload" in page and "found by search" in page
    console = Console(record=True, width=160)
    terminal.render(report, console)
    out = console.export_text()
    assert "Plans against the workload" in out and "found by search" in out
