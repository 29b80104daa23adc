"""`queryaudit plan` on a pasted plan (issue 26): the tree keeps the sort, hash and buffer
details of the text, and the plan checks run on it as on a captured plan, for the 59 real
plans of ../shared/corpora/plans and for plans PostgreSQL 15 and 18 print here."""

from __future__ import annotations

import re

import psycopg

from conftest import run_cli
from queryaudit.plans.command import pasted_plan_findings
from queryaudit.plans.text import load_plan, load_plan_file, tree_lines

SORT_LINE = re.compile(r"^\s*(?:Worker \d+:\s+)?Sort Method:", re.M)
BUCKETS_LINE = re.compile(r"^\s*Buckets:", re.M)


def _plans(shared_dir, suffix=""):
    return sorted(
        p for p in (shared_dir / "corpora" / "plans").iterdir() if p.name != "index.json" and p.name.endswith(suffix)
    )


def test_every_corpus_plan_prints_with_its_findings_and_no_failed_check(shared_dir):
    paths = _plans(shared_dir)
    assert len(paths) >= 59
    for path in paths:
        findings, failed = pasted_plan_findings(load_plan_file(path))
        assert not failed, (path.name, failed)
        assert all(f.queryids == ["pasted"] for f in findings if f.queryids), path.name


def test_the_tree_keeps_every_sort_method_and_hash_batches_line_of_the_text(shared_dir):
    for path in _plans(shared_dir, ".txt"):
        text = path.read_text(errors="replace")
        tree = "\n".join(tree_lines(load_plan_file(path)))
        assert len(SORT_LINE.findall(text)) == tree.count("Sort Method:"), path.name
        assert len(BUCKETS_LINE.findall(text)) == tree.count("Buckets:"), path.name


def test_a_psql_plan_with_an_external_merge_gets_the_disk_sort_finding(shared_dir):
    path = shared_dir / "corpora" / "plans" / "cte-exclusive-time-03.txt"
    result = run_cli("plan", str(path))
    assert result.returncode == 0, result.stderr
    assert "Sort Method: external merge  Disk: 4,632kB" in result.stdout
    assert "disk-sort: Sort spilled 4,632 kB to disk" in result.stdout
    assert "SET LOCAL work_mem" in result.stdout
    # The same query's plan as JSON and as text (two runs: the spilled kB differ) give the same checks.
    folder = shared_dir / "corpora" / "plans"
    text = pasted_plan_findings(load_plan_file(folder / "test-parallel-gather-merge.txt"))[0]
    as_json = pasted_plan_findings(load_plan_file(folder / "test-parallel-gather-merge.json"))[0]
    assert [(f.check, f.severity) for f in text] == [(f.check, f.severity) for f in as_json] == [("disk-sort", "high")]


def test_hash_batches_buffers_and_workers_reach_the_tree_and_the_checks(shared_dir):
    path = shared_dir / "corpora" / "plans" / "sample-parallel-4-workers.txt"
    lines = tree_lines(load_plan_file(path))
    assert any("Buckets: 65,536  Batches: 256" in line for line in lines)
    assert any(line.strip().startswith("Worker 3: Sort Method: external merge") for line in lines)
    assert {f.check for f in pasted_plan_findings(load_plan_file(path))[0]} >= {"disk-sort", "hash-spill"}
    buffers = tree_lines(load_plan_file(shared_dir / "corpora" / "plans" / "sample-with-buffers.txt"))
    assert any(line.strip().startswith("Buffers: shared hit=") for line in buffers)


def test_a_plan_without_problems_says_so():
    text = "Seq Scan on t  (cost=0.00..1.01 rows=1 width=4) (actual time=0.010..0.011 rows=1 loops=1)\n"
    result = run_cli("plan", "-", input=text)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("No finding from the plan checks.")


def _psql_text_plan(db, query: str) -> str:
    """EXPLAIN output as psql prints it (its header, rule and row count included)."""
    with psycopg.connect(db.dsn, autocommit=True) as conn:
        conn.execute("SET work_mem = '64kB'")
        conn.execute("SET max_parallel_workers_per_gather = 0")
        rows = [r[0] for r in conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {query}").fetchall()]
    width = max(len(r) for r in rows)
    return "\n".join([" QUERY PLAN".center(width), "-" * width, *(f" {r}" for r in rows), f"({len(rows)} rows)", ""])


def test_plans_this_server_prints_with_spills_get_their_findings(empty_db):
    empty_db.execute("CREATE TABLE events (id bigint, kind int, payload text)")
    empty_db.execute("INSERT INTO events SELECT g, g % 1000, md5(g::text) FROM generate_series(1, 100000) g")
    empty_db.execute("ANALYZE events")
    sort_plan = _psql_text_plan(empty_db, "SELECT * FROM events ORDER BY payload")
    assert "external merge" in sort_plan  # work_mem of 64kB cannot hold 100,000 rows
    result = run_cli("plan", "-", input=sort_plan)
    assert result.returncode == 0, result.stderr
    assert re.search(r"Sort Method: external merge  Disk: [\d,]+kB", result.stdout)
    assert "disk-sort: Sort spilled" in result.stdout
    assert "Buffers: " in result.stdout and "temp read=" in result.stdout
    hash_plan = _psql_text_plan(empty_db, "SELECT count(*) FROM events a JOIN events b USING (id)")
    explain = load_plan(hash_plan)
    findings, failed = pasted_plan_findings(explain)
    assert not failed
    batches = re.search(r"Batches: (\d+)", hash_plan)
    assert batches and int(batches.group(1)) > 1, hash_plan  # 64kB of work_mem cannot hold the hash
    assert "hash-spill" in {f.check for f in findings}
