"""Plan parsing: the 59 real plans of the pev2 corpus (../shared/corpora/plans), a text vs
JSON round trip on real PostgreSQL 15 and 18, and hostile input.

The corpus is not copied here: its tests skip with the reason when ../shared is absent.
"""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from queryaudit.plans.text import BUFFER_KEYS, KNOWN_NODES, load_plan, load_plan_file, walk
from tests.conftest import SHARED, run_cli

CORPUS = SHARED / "corpora" / "plans"


def _corpus_entries() -> list:
    index = CORPUS / "index.json"
    if not index.exists():
        return [pytest.param(None, id="corpus-absent")]
    return [pytest.param(entry, id=entry["file"]) for entry in json.loads(index.read_text())["plans"]]


def _plan(shared_dir: Path, name: str) -> dict:
    return load_plan_file(shared_dir / "corpora" / "plans" / name)


def _nodes(explain: dict) -> list[dict]:
    return [node for _, node in walk(explain)]


def _expected_node_count(raw: str, fmt: str) -> int:
    if fmt == "json" or '"Node Type' in raw:  # JSON, maybe inside CSV or psql decoration
        return raw.count("Node Type")
    # One root plus one node per "->" line, whatever quoting or wrapping surrounds it.
    return 1 + sum(1 for line in raw.splitlines() if line.strip().lstrip('"').lstrip().startswith("->"))


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.parametrize("entry", _corpus_entries())
def test_every_corpus_plan_parses(shared_dir, entry):
    path = shared_dir / "corpora" / "plans" / entry["file"]
    raw = path.read_bytes().decode("utf-8", errors="replace")
    explain = load_plan_file(path)
    nodes = _nodes(explain)
    assert explain["Plan"]["Node Type"] in KNOWN_NODES
    assert all(node["Node Type"] in KNOWN_NODES for node in nodes), [n["Node Type"] for n in nodes]
    assert len(nodes) == _expected_node_count(raw, entry["format"])
    # Every detail line was understood: nothing left over as unparsed text.
    assert not [node["Extra Text"] for node in nodes if "Extra Text" in node]
    if entry["format"] == "json":
        data = json.loads(raw)
        assert explain == (data[0] if isinstance(data, list) else data)
    if "analyze" in entry["features"]:
        for node in nodes:
            assert _is_number(node["Actual Rows"]) and _is_number(node["Actual Loops"]), node["Node Type"]
            if "actual time=" in raw or entry["format"] == "json":
                assert _is_number(node["Actual Total Time"]) and _is_number(node["Actual Startup Time"])
        if "Execution Time" in raw or "Total runtime" in raw or "Execution time" in raw:
            assert _is_number(explain["Execution Time"])
    else:
        assert all("Actual Rows" not in node for node in nodes)
    if "never_executed" in entry["features"]:
        assert any(node["Actual Loops"] == 0 and node["Actual Total Time"] == 0 for node in nodes)


PAIRS = ["sample-simple-join", "test-parallel-gather-merge", "test-insert-triggers"]
SAME_IN_BOTH = [
    "Node Type",
    "Join Type",
    "Strategy",
    "Partial Mode",
    "Operation",
    "Relation Name",
    "Alias",
    "Index Name",
    "Plan Rows",
    "Plan Width",
    "Startup Cost",
    "Total Cost",
    "Actual Rows",
    "Actual Loops",
    "Filter",
    "Index Cond",
    "Recheck Cond",
    "Join Filter",
    "Hash Cond",
    "Sort Method",
    "Sort Space Type",
    "Workers Planned",
    "Workers Launched",
    "Rows Removed by Filter",
    "Rows Removed by Join Filter",
    "Rows Removed by Index Recheck",
    "Exact Heap Blocks",
    "Lossy Heap Blocks",
    "Subplan Name",
]


@pytest.mark.parametrize("name", PAIRS)
def test_text_and_json_of_the_same_plan_agree(shared_dir, name):
    text = _plan(shared_dir, f"{name}.txt")
    data = _plan(shared_dir, f"{name}.json")
    assert [(d, n["Node Type"]) for d, n in walk(text)] == [(d, n["Node Type"]) for d, n in walk(data)]
    for from_text, from_json in zip(_nodes(text), _nodes(data), strict=True):
        for key in SAME_IN_BOTH:
            if key in from_json:
                assert from_text.get(key) == from_json[key], (from_json["Node Type"], key)
        # The upstream pairs are two runs of one statement: times differ a little, never in scale.
        for key in ("Actual Startup Time", "Actual Total Time"):
            a, b = from_text[key], from_json[key]
            assert (a == b == 0) or 0.5 <= (a + 0.001) / (b + 0.001) <= 2, (from_json["Node Type"], key, a, b)
    assert [(t.get("Trigger Name"), t.get("Relation"), t["Calls"]) for t in text.get("Triggers", [])] == [
        (t.get("Trigger Name"), t.get("Relation"), t["Calls"]) for t in data.get("Triggers", [])
    ]
    assert 0.5 <= text["Execution Time"] / data["Execution Time"] <= 2


def test_incremental_sort_groups(shared_dir):
    sort = _plan(shared_dir, "from-text-33-incremental-sort.txt")["Plan"]["Plans"][0]
    assert sort["Node Type"] == "Incremental Sort"
    assert sort["Presorted Key"] == ["t.a"] and sort["Sort Key"] == ["t.a", "t.b"]
    assert sort["Full-sort Groups"] == {
        "Group Count": 1,
        "Sort Methods Used": ["quicksort"],
        "Sort Space Memory": {"Average Sort Space Used": 123, "Peak Sort Space Used": 234},
    }
    assert sort["Pre-sorted Groups"]["Sort Methods Used"] == ["top-N heapsort", "quicksort"]
    assert sort["Actual Rows"] == 70 and "Actual Total Time" not in sort  # TIMING OFF


def test_memoize(shared_dir):
    explain = _plan(shared_dir, "from-text-48-memoize.txt")
    memoize = explain["Plan"]["Plans"][1]
    assert memoize["Node Type"] == "Memoize" and memoize["Parent Relationship"] == "Inner"
    assert (memoize["Cache Key"], memoize["Cache Mode"]) == ("s.user_id", "logical")
    assert (
        memoize["Cache Hits"],
        memoize["Cache Misses"],
        memoize["Cache Evictions"],
        memoize["Peak Memory Usage"],
    ) == (998, 2, 0, 1)
    assert memoize["Plans"][0]["Index Name"] == "users_pkey" and memoize["Plans"][0]["Alias"] == "u"
    assert explain["Planning"]["Shared Hit Blocks"] == 8


def test_fractional_rows(shared_dir):
    nodes = _nodes(_plan(shared_dir, "test-fractional-rows.txt"))
    limit = next(n for n in nodes if n["Node Type"] == "Limit")
    assert limit["Actual Rows"] == 0.25 and limit["Actual Loops"] == 4
    assert nodes[0]["Actual Rows"] == 1.0
    scan = next(n for n in nodes if n["Node Type"] == "Seq Scan")
    assert scan["Rows Removed by Filter"] == 6 and scan["Shared Hit Blocks"] == 4


def test_disabled_node(shared_dir):
    explain = _plan(shared_dir, "from-text-44-disabled-node.txt")
    assert explain["Plan"]["Disabled"] is True
    assert explain["Plan"]["Filter"] == "((c1 + 0) < 1000000)"
    assert explain["Settings"] == {"enable_seqscan": "off"}


def test_io_timings(shared_dir):
    old = _plan(shared_dir, "io-timings-read-and-write.txt")
    assert (old["Plan"]["I/O Read Time"], old["Plan"]["I/O Write Time"]) == (77240.327, 222.281)
    assert old["Planning"]["I/O Read Time"] == 0.059
    scoped = _plan(shared_dir, "sample-many-options.txt")["Plan"]
    assert scoped["Shared I/O Read Time"] == 22.96 and scoped["Temp I/O Write Time"] == 119.861
    assert scoped["Tuples Inserted"] == 9995 and scoped["WAL Records"] == 5049414
    temp = _plan(shared_dir, "from-text-45-buckets.txt")["Plan"]
    assert temp["Temp I/O Write Time"] == 830.025 and temp["Temp Written Blocks"] == 246065


def test_parallel_workers(shared_dir):
    nodes = _nodes(_plan(shared_dir, "sample-parallel-4-workers.txt"))
    gather = next(n for n in nodes if n["Node Type"] == "Gather Merge")
    assert (gather["Workers Planned"], gather["Workers Launched"]) == (4, 4)
    sort = next(n for n in nodes if n["Node Type"] == "Sort")
    assert [w["Sort Space Used"] for w in sort["Workers"]] == [2064, 2384, 2264, 2336]
    hash_node = next(n for n in nodes if n["Node Type"] == "Hash")
    assert hash_node["Parallel Aware"] and (hash_node["Hash Buckets"], hash_node["Hash Batches"]) == (65536, 256)
    launched = _nodes(_plan(shared_dir, "test-parallel-launched-workers.txt"))
    assert next(n for n in launched if n["Node Type"] == "Gather")["Workers Launched"] == 7
    assert len(next(n for n in launched if n["Node Type"] == "Nested Loop")["Workers"]) == 7
    jit = _nodes(_plan(shared_dir, "test-parallel-jit.txt"))
    worker = next(n for n in jit if n.get("Workers") and "JIT" in n["Workers"][0])["Workers"][0]
    assert worker["JIT"]["Functions"] == 49 and worker["JIT"]["Timing"]["Total"] == 1593.149


def test_quoted_lines_and_subplans(shared_dir):
    explain = _plan(shared_dir, "sample-with-subplan.txt")
    assert explain["Execution Time"] == 2.9
    subplans = [n for n in _nodes(explain) if n.get("Parent Relationship") == "SubPlan"]
    assert [n["Subplan Name"] for n in subplans] == ["SubPlan 1", "SubPlan 2"]
    assert all(n["Node Type"] == "Aggregate" and n["Actual Loops"] == 5 for n in subplans)
    filtered = next(n for n in _nodes(explain) if n.get("Alias") == "filleuls")
    assert filtered["Filter"] == "(is_active AND (id_type = ANY ('{5,14}'::integer[])))"
    trailing = _plan(shared_dir, "from-text-25-trailing-quotes.txt")
    assert not any('"' in n.get("Relation Name", "") for n in _nodes(trailing))


def test_initplans_and_ctes(shared_dir):
    nodes = _nodes(_plan(shared_dir, "from-text-21-initplans.txt"))
    assert [n.get("Subplan Name") for n in nodes[1:3]] == ["InitPlan 2 (returns $1)", "InitPlan 1 (returns $0)"]
    ctes = [n["Subplan Name"] for n in _nodes(_plan(shared_dir, "sample-with-buffers.txt")) if n.get("Subplan Name")]
    assert ctes == ["CTE t2bb", "CTE t2b"]


def test_line_wrapped_psql_output(shared_dir):
    explain = _plan(shared_dir, "line-wrapped-07.txt")
    nodes = _nodes(explain)
    assert explain["Plan"]["Node Type"] == "Gather" and explain["Plan"]["Actual Total Time"] == 9667.185
    append = next(n for n in nodes if n["Node Type"] == "Append")
    assert append["Parallel Aware"] and [c["Actual Rows"] for c in append["Plans"]] == [333497, 333263, 111080]
    scan = next(n for n in nodes if n.get("Alias") == "pgbench_branches_1")
    assert scan["Index Name"] == "pgbench_branches_pkey" and scan["Relation Name"] == "pgbench_branches"
    assert explain["Settings"] == {"work_mem": "100MB"} and explain["Execution Time"] == 12533.236


def test_csv_exported_json(shared_dir):
    explain = _plan(shared_dir, "test-json-csv-doubled-quotes.txt")
    assert explain["Plan"]["Node Type"] == "ModifyTable" and explain["Plan"]["Operation"] == "Delete"
    assert explain["Plan"]["Plans"][0]["Output"] == ["ctid"]
    psql_json = _plan(shared_dir, "test-serialization-parallel.txt")
    assert psql_json["Serialization"]["Output Volume"] == 31251 and psql_json["Plan"]["Actual Rows"] == 100


def test_auto_explain_query_text(shared_dir):
    explain = _plan(shared_dir, "test-auto-explain-query-text.txt")
    assert explain["Query Text"] == "SELECT count(*)\nFROM pg_class;"
    assert explain["Plan"]["Plans"][0]["Schema"] == "pg_catalog"
    assert explain["Settings"] == {"work_mem": "100kB"}


def test_sections_and_triggers(shared_dir):
    explain = _plan(shared_dir, "sample-many-options.txt")
    assert explain["JIT"]["Timing"]["Generation"] == {"Deform": 0.303, "Total": 1.34}
    assert explain["Planning"]["Memory Used"] == 165 and explain["Serialization"]["Format"] == "text"
    assert explain["Triggers"][0] == {
        "Trigger Name": "RI_ConstraintTrigger_a_18153",
        "Constraint Name": "tc1_fkey",
        "Relation": "tb",
        "Time": 4399.335,
        "Calls": 326,
    }
    deleted = _plan(shared_dir, "sample-delete-with-triggers.txt")
    assert len(deleted["Triggers"]) == 7 and deleted["Execution Time"] == 381072.164
    assert {t["Relation"] for t in deleted["Triggers"]} == {"emailmessages"}
    mixed = _nodes(_plan(shared_dir, "test-mixed-tabs-spaces.txt"))
    assert [n["Node Type"] for n in mixed[:3]] == ["Hash Join", "Limit", "Sort"]
    assert mixed[1]["Subplan Name"] == "CTE artist_count" and mixed[2]["Sort Key"] == ["(count(*)) DESC"]


# --- a real round trip: the same statement in FORMAT TEXT and FORMAT JSON ------------------

ROUND_TRIP_SETUP = """
CREATE TABLE t (id int PRIMARY KEY, a int, b int, s text);
INSERT INTO t SELECT g, g % 100, g % 7, md5(g::text) FROM generate_series(1, 5000) g;
CREATE INDEX t_a ON t (a);
CREATE TABLE u (id int PRIMARY KEY, t_id int REFERENCES t (id), v int);
INSERT INTO u SELECT g, (g % 5000) + 1, g FROM generate_series(1, 3000) g;
CREATE TABLE p (k int, v int) PARTITION BY RANGE (k);
CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (100);
CREATE TABLE p2 PARTITION OF p FOR VALUES FROM (100) TO (200);
INSERT INTO p SELECT g % 200, g FROM generate_series(1, 4000) g;
"""
ROUND_TRIP_STATEMENTS = [
    "SELECT t.a, count(*) FROM t JOIN u ON u.t_id = t.id WHERE t.b = 3 GROUP BY t.a ORDER BY 2 DESC, 1",
    "WITH c AS MATERIALIZED (SELECT id, a FROM t WHERE a < 10) SELECT c.id, (SELECT max(v) FROM u "
    "WHERE u.t_id = c.id) FROM c WHERE c.a = (SELECT min(a) FROM t WHERE b = 2) ORDER BY c.id LIMIT 20",
    "SELECT * FROM t WHERE a IN (1, 2, 3) AND b > 3",
    "SELECT * FROM (SELECT * FROM t WHERE id = -1) x JOIN u ON u.t_id = x.id",
    "SELECT * FROM p WHERE v > 10 ORDER BY v DESC, k",
]
COMPARED = (
    SAME_IN_BOTH
    + [
        "Parent Relationship",
        "Scan Direction",
        "Merge Cond",
        "Sort Key",
        "Group Key",
        "Sort Space Used",
        "Hash Buckets",
        "Hash Batches",
        "Original Hash Batches",
        "Heap Fetches",
        "CTE Name",
        "Schema",
        "Output",
        "Inner Unique",
    ]
    + list(BUFFER_KEYS)
)


@pytest.mark.db
def test_text_parse_matches_json_on_a_real_server(empty_db):
    with empty_db.connect() as conn:
        conn.execute(ROUND_TRIP_SETUP)
        conn.execute("VACUUM ANALYZE")  # all-visible pages: no hint-bit writes during the runs
        # Small work_mem: the partition sort spills, so temp buffers are compared too.
        conn.execute("SET work_mem = '64kB'; SET max_parallel_workers_per_gather = 0; SET jit = off")
        seen_never_executed = seen_temp = False
        for statement in ROUND_TRIP_STATEMENTS:
            for _ in range(2):  # warm: hint bits and catalog caches settle, buffers repeat exactly
                conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {statement}").fetchall()
            for options in ("ANALYZE, BUFFERS", "ANALYZE, BUFFERS, VERBOSE"):
                rows = conn.execute(f"EXPLAIN ({options}, FORMAT TEXT) {statement}").fetchall()
                from_text = load_plan("\n".join(row[0] for row in rows))
                from_json = conn.execute(f"EXPLAIN ({options}, FORMAT JSON) {statement}").fetchone()[0][0]
                assert [(d, n["Node Type"]) for d, n in walk(from_text)] == [
                    (d, n["Node Type"]) for d, n in walk(from_json)
                ], statement
                for a, b in zip(_nodes(from_text), _nodes(from_json), strict=True):
                    for key in COMPARED:
                        # Text prints Inner Unique only with VERBOSE, and only when true.
                        if key in b and not (key == "Inner Unique" and (b[key] is False or "VERBOSE" not in options)):
                            assert a.get(key) == b[key], (statement, options, b["Node Type"], key)
                    seen_never_executed |= b["Actual Loops"] == 0
                    seen_temp |= b.get("Temp Written Blocks", 0) > 0
                assert _is_number(from_text["Execution Time"]) and _is_number(from_text["Planning Time"])
    assert seen_never_executed and seen_temp


# --- hostile input: a ValueError or a partial tree, never another exception -----------------

SAMPLE = """                                   QUERY PLAN
--------------------------------------------------------------------------------
 Hash Join  (cost=1.09..2.21 rows=3 width=8) (actual time=0.030..0.034 rows=3 loops=1)
   Hash Cond: (u.t_id = t.id)
   Buffers: shared hit=2
   ->  Seq Scan on u  (cost=0.00..1.06 rows=6 width=8) (actual time=0.005..0.006 rows=6 loops=1)
         Filter: (v > 1)
         Rows Removed by Filter: 1
   ->  Hash  (cost=1.04..1.04 rows=4 width=4) (actual time=0.010..0.010 rows=4 loops=1)
         Buckets: 1024  Batches: 1  Memory Usage: 9kB
         ->  Seq Scan on t  (cost=0.00..1.04 rows=4 width=4) (never executed)
 Planning Time: 0.100 ms
 Execution Time: 0.050 ms
(10 rows)
"""


def _partial_or_value_error(text: str) -> None:
    try:
        explain = load_plan(text)
    except ValueError:
        return
    assert isinstance(explain["Plan"]["Node Type"], str)


def test_empty_and_garbage_inputs():
    for text in ("", "   \n\t\n", "hello world", "SELECT 1;", '{"a": 1}', '[{"Plan": {"Node Type": "Seq', "\x00\x01"):
        with pytest.raises(ValueError) as info:
            load_plan(text)
        assert "\n" not in str(info.value)
    truncated = load_plan(SAMPLE[: SAMPLE.index("->  Hash")])
    assert [n["Node Type"] for n in _nodes(truncated)] == ["Hash Join", "Seq Scan"]
    full = load_plan(SAMPLE)
    assert full["Plan"]["Plans"][1]["Plans"][0]["Actual Loops"] == 0
    assert full["Plan"]["Plans"][0]["Shared Hit Blocks"] == 0  # zero counters, as JSON prints them


@given(st.text(max_size=400) | st.binary(max_size=400).map(lambda b: b.decode("latin-1")))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_text_never_crashes(text):
    _partial_or_value_error(text)


@given(st.integers(0, len(SAMPLE)), st.integers(0, 2**32), st.sampled_from(["", "\t", '"', "  ", "->", ":", "("]))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_damaged_plans_never_crash(cut, seed, noise):
    rng = random.Random(seed)
    lines = SAMPLE[:cut].split("\n")
    for _ in range(rng.randint(0, 3)):
        if lines:
            i = rng.randrange(len(lines))
            lines[i] = lines[i][: rng.randint(0, len(lines[i]))] + noise + lines[i][rng.randint(0, len(lines[i])) :]
    _partial_or_value_error("\n".join(lines))
    _partial_or_value_error(json.dumps([load_plan(SAMPLE)])[:cut])


def test_plan_command(shared_dir, tmp_path):
    result = run_cli("plan", str(shared_dir / "corpora" / "plans" / "from-text-48-memoize.txt"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "Execution Time: 0.375 ms" in lines
    memoize = next(line for line in lines if "Memoize" in line)
    assert "est 1" in memoize and "act 1 x1000" in memoize
    scan = next(line for line in lines if "Index Scan using users_pkey on users u" in line)
    assert re.search(r"excl 0\.006 ms", scan), scan  # 0.003 ms x 2 loops, from queryaudit.plans.model
    as_json = run_cli("plan", "--json", "-", input=SAMPLE)
    assert json.loads(as_json.stdout)[0]["Plan"]["Hash Cond"] == "(u.t_id = t.id)"
    junk = tmp_path / "junk.txt"
    junk.write_text("this is not a plan\n")
    bad = run_cli("plan", str(junk))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "not an EXPLAIN plan" in bad.stderr
