"""Plans that reproduce the workload (queryaudit.plans.workload, queryaudit.plans.search):
each analyzed plan compared with pg_stat_statements' per-call figures, the values searched
when the first sample is unlike the workload, and the fixes sized on the workload's own
values. Pure cases first, then the issue's three workloads live on PostgreSQL 15 and 18."""
import json

import pytest

from helpers import validate_report
from queryaudit.advisor.stage import AdvisorOptions
from queryaudit.pipeline import AuditOptions, analyse, collect_live
from queryaudit.plans.params import Binding, ParameterSlot
from queryaudit.plans.search import candidate_sets
from queryaudit.plans.workload import ParameterSet, compare, weigh
from queryaudit.snapshot import ColumnStats, ServerInfo, Snapshot, Statement, Table
from queryaudit.verify.stage import VerifyOptions


def _statement(**kw):
    base = dict(queryid="1", query="SELECT * FROM jobs WHERE status = $1", calls=5, total_exec_time_ms=500.0,
                mean_exec_time_ms=100.0, rows=5000, shared_blks_hit=400, shared_blks_read=100)
    base.update(kw)
    return Statement(**base)


def _plan(rows, blocks, temp=0, ms=50.0):
    return {"Plan": {"Node Type": "Seq Scan", "Actual Rows": rows, "Actual Loops": 1, "Shared Hit Blocks": blocks,
                     "Shared Read Blocks": 0, "Temp Written Blocks": temp}, "Execution Time": ms}


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
    snap = Snapshot(server=ServerInfo(version_num=150000, version="15", database="d"), collected_at="now",
                    tables=[Table(schema="public", name="jobs", reltuples=400_000)],
                    column_stats=[ColumnStats("public.jobs", "status", most_common_vals=["done", "queued", "failed"],
                                              most_common_freqs=[0.9, 0.0975, 0.0025]),
                                  ColumnStats("public.jobs", "at", histogram_bounds=[str(i) for i in range(101)])])
    binding = Binding([ParameterSlot(1, "text", "public.jobs", "status", "=", "done", "a sampled row"),
                       ParameterSlot(2, "integer", "public.jobs", "at", ">=", "90", "histogram_bounds")])
    sets = candidate_sets(binding, snap)
    failed = next(s for s in sets if s.values[0] == "failed")
    assert "~1,000 rows" in failed.sources[0] and failed.values[1] == "90" and failed.changed == [1]
    wide = next(s for s in sets if s.values[1] == "2")
    assert "keeps ~98% of the rows" in wide.sources[1] and wide.values[0] == "done"


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
    empty_db.execute("INSERT INTO jobs SELECT g, CASE WHEN g % 400 = 0 THEN 'failed' WHEN g % 40 = 1 THEN 'queued' "
                     "ELSE 'done' END, md5(g::text) FROM generate_series(1, 400000) g")
    empty_db.execute("ANALYZE jobs")
    _run(empty_db, QUEUE, ["failed"])
    snap, report = _audit(empty_db, advisor=True)
    q = _query(report, "FROM jobs WHERE status")
    capture = next(p for p in snap.plans if p.queryid == q["queryid"])
    assert capture.first_sample is not None and capture.first_sample.match.verdict == "unlike"
    assert capture.first_sample.values != ["failed"]
    assert capture.parameters == ["failed"] and capture.workload_match.verdict == "representative"
    assert q["workload_match"]["verdict"] == "representative" and q["workload_match"]["first_sample"]["verdict"] \
        == "unlike"
    assert 0.5 <= q["workload_match"]["rows_ratio"] <= 2
    chosen = [s for s in capture.parameter_sets if s.chosen]
    assert chosen[0].values == ["failed"] and chosen[0].weight > 0
    index = next(f for f in report["findings"] if f["check"] == "missing-index" and f["table"] == "public.jobs")
    assert index["columns"][0] == "status"
    sized = index["evidence"]["workload_sizing"][0]
    assert sized["values"] == ["failed"] and sized["fraction_removed"] > 0.9
    assert "failed" in index["title"] or sized["fraction_removed"] > 0.9
