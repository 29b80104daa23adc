"""Log ingest on logs written by a real server (stderr, csvlog, jsonlog at once), the N+1
found from the log alone, lock-wait / temp-file / auto_explain events, corrupted input."""

import gzip
import json
import threading
import time
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import n_plus_one_workload as wl
from conftest import VERSIONS, _bin_dir, run_cli
from helpers import validate_report
from queryaudit.demo.cluster import start_cluster
from queryaudit.logs import LockEvent, PlanEvent, ReadStats, StatementEvent, TempFileEvent, iter_events
from queryaudit.logs.digest import LatencySketch, ingest
from queryaudit.n_plus_one import MIN_EXECUTIONS

PREFIX = "%m [%p] %q%u@%d %c %l %v %x %a %Q "
LOG_SETTINGS = {
    "logging_collector": "on",
    "log_destination": "'stderr,csvlog,jsonlog'",
    "log_directory": "'log'",
    "log_filename": "'server.log'",
    "log_min_duration_statement": "0",
    "log_line_prefix": f"'{PREFIX}'",
    "log_lock_waits": "on",
    "deadlock_timeout": "'50ms'",
    "log_temp_files": "0",
    "auto_explain.log_min_duration": "'20ms'",
    "auto_explain.log_format": "json",
    "log_min_messages": "warning",
    "autovacuum": "off",
}


class LogFolder(type(Path())):
    dsn = ""
    formats: dict = {}


FORMATS = {"stderr": "server.log", "csvlog": "server.csv", "jsonlog": "server.json"}


@pytest.fixture(scope="module", params=VERSIONS)
def server_log(request, tmp_path_factory):
    """A dedicated cluster logging every statement in the three formats, the workload run
    against it, then destroyed; the log folder is what the tests read."""
    bin_dir = _bin_dir(request.param)
    if bin_dir is None:
        pytest.skip(f"{request.param} binaries not found")
    if int(request.param.removeprefix("pg")) < 14:
        pytest.skip("these tests match log entries by query id (%Q in log_line_prefix), PostgreSQL 14+")
    # jsonlog is PostgreSQL 15+: older servers write stderr and csvlog only.
    formats = {k: v for k, v in FORMATS.items() if k != "jsonlog" or int(request.param.removeprefix("pg")) >= 15}
    cluster = start_cluster(bin_dir, {**LOG_SETTINGS, "log_destination": f"'{','.join(formats)}'"})
    try:
        dsn = cluster.dsn()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
            wl.load(conn)
            conn.execute("SELECT pg_stat_statements_reset()")
            conn.execute("SET application_name = 'loop'")
            wl.run_loop(conn)
        with psycopg.connect(dsn) as conn:  # not autocommit: one transaction per request
            conn.execute("SET application_name = 'requests'")
            conn.commit()
            run_requests(conn)
        # The audit's own statements (marked /* queryaudit */) go to the log too.
        own = run_cli("snapshot", "--dsn", dsn, "--no-explain", "-o", str(tmp_path_factory.mktemp("own") / "s.json"))
        assert own.returncode == 0, own.stderr
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SET application_name = 'batched'")
            wl.run_batched(conn)
            conn.execute("SELECT 'two\nlines' AS multi, 1")
            conn.execute("SET work_mem = '64kB'")
            conn.execute("SELECT * FROM books ORDER BY title").fetchall()  # a temporary file
        _lock_wait(dsn, cluster.pgdata / "log" / FORMATS["stderr"])
        # The logging collector writes asynchronously: wait until a last statement is in
        # every file (a fixed sleep loses the tail on a loaded machine).
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT 'end-of-test-workload' AS sentinel")
        deadline = time.monotonic() + 30
        while not all(
            b"end-of-test-workload" in (cluster.pgdata / "log" / name).read_bytes() for name in formats.values()
        ):
            assert time.monotonic() < deadline, "the server never logged the sentinel"
            time.sleep(0.1)
        folder = tmp_path_factory.mktemp(f"log-{request.param}")
        for name in formats.values():
            (folder / name).write_bytes((cluster.pgdata / "log" / name).read_bytes())
        folder = LogFolder(folder)
        folder.formats = formats
        folder.dsn = dsn  # the same server, still up, for the live audit with --log
        yield folder
    finally:
        cluster.destroy()


REQUESTS, LOOKUPS = 15, 38
REQUEST_PARENT = "SELECT id, author_id FROM books WHERE id > %s ORDER BY id LIMIT %s"
REQUEST_CHILD = "SELECT id, name FROM authors WHERE id = %s"


def run_requests(conn):
    """15 requests, each one transaction: a parent query, then one primary-key lookup per
    row it returned (38): fast on the server (~0.015 ms), a round trip each for the app."""
    for request in range(REQUESTS):
        for _book, author_id in conn.execute(REQUEST_PARENT, (request * 100, LOOKUPS)).fetchall():
            conn.execute(REQUEST_CHILD, (author_id,)).fetchone()
        conn.commit()


def _needs(server_log, fmt: str) -> None:
    if fmt not in server_log.formats:
        pytest.skip(f"{fmt} is not written by this server version (jsonlog is PostgreSQL 15+)")


def _lock_wait(dsn: str, log: Path) -> None:
    """One session holds a row lock until another, updating the same row, has waited past
    deadlock_timeout and the log says so (not a fixed 300 ms: a busy machine may not even
    have started the waiter by then)."""
    holder = psycopg.connect(dsn)
    holder.execute("UPDATE authors SET name = 'held' WHERE id = 1")
    waiter = threading.Thread(
        target=lambda: psycopg.connect(dsn, autocommit=True).execute("UPDATE authors SET name = 'waited' WHERE id = 1")
    )
    waiter.start()
    deadline = time.monotonic() + 30
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'")]
            if pids and f"process {pids[0]} still waiting for".encode() in log.read_bytes():
                break
            assert time.monotonic() < deadline, f"waiting: {pids}, not logged"
            time.sleep(0.05)
    holder.commit()
    holder.close()
    waiter.join()


@pytest.mark.parametrize("fmt", FORMATS)
def test_events_from_each_format(server_log, fmt):
    _needs(server_log, fmt)
    stats = ReadStats()
    events = list(iter_events([server_log / FORMATS[fmt]], prefix=PREFIX, stats=stats))
    assert stats.formats[str(server_log / FORMATS[fmt])] == fmt
    assert stats.malformed_lines == 0 and stats.records > 100
    child = [
        e
        for e in events
        if isinstance(e, StatementEvent)
        and e.phase == "execute"
        and e.query == "SELECT id, title FROM books WHERE author_id = $1"
    ]
    assert len(child) == 60
    first = child[0]
    assert first.duration_ms > 0 and first.parameters == ["'1'"] and first.user == "postgres"
    assert first.database == "postgres" and first.session_id and first.pid and first.vxid
    assert first.queryid and first.queryid != "0" and first.timestamp.startswith("20")
    assert {e.application for e in child} == {"loop"}
    multi = [e for e in events if isinstance(e, StatementEvent) and "AS multi" in e.query]
    assert multi and multi[0].query == "SELECT 'two\nlines' AS multi, 1"  # continuation lines joined
    temp = [e for e in events if isinstance(e, TempFileEvent)]
    assert temp and temp[0].size_bytes > 0 and "ORDER BY title" in temp[0].statement
    plans = [e for e in events if isinstance(e, PlanEvent)]
    assert any(p.plan_json and p.plan_json["Plan"]["Node Type"] for p in plans)
    waits = [e for e in events if isinstance(e, LockEvent)]
    kinds = {e.kind for e in waits}
    assert {"waiting", "acquired"} <= kinds, waits
    waiting = next(e for e in waits if e.kind == "waiting")
    assert waiting.lock_mode == "ShareLock" and waiting.lock_type == "transaction" and len(waiting.holders) == 1
    assert waiting.waited_ms >= 50 and waiting.statement.startswith("UPDATE authors")
    assert waiting.relation_name == "authors"


def test_percentiles_and_n_plus_one_from_the_log(server_log):
    facts = ingest([server_log / "server.log"], PREFIX)
    child = next(s for s in facts.statements if s.query == "SELECT id, title FROM books WHERE author_id = $1")
    assert child.count == 60 and child.min_ms <= child.p50_ms <= child.p95_ms <= child.p99_ms
    assert child.p99_ms <= child.max_ms * 1.03
    loops = {loop.query: loop for loop in facts.n_plus_one}
    assert set(loops) == {child.query, "SELECT id, name FROM authors WHERE id = $1"}  # not the batched pages
    loop = loops[child.query]
    assert loop.runs == 3 and loop.executions == 60 and loop.max_run == 20 and loop.transactions == 3
    assert loop.parent_query == "SELECT id, name FROM authors ORDER BY id LIMIT 20 OFFSET $1"
    assert loop.example_parameters[:2] == ["'1'", "'2'"]


def test_n_plus_one_of_fast_lookups_found_by_round_trips(server_log, tmp_path):
    """Lookups of 0.015 ms each: the server's time says nothing, the round trips do. Each
    request's loop is one run, and the loop comes back in all 15 transactions."""
    facts = ingest([server_log / "server.log"], PREFIX)
    loop = next(p for p in facts.n_plus_one if p.query == "SELECT id, name FROM authors WHERE id = $1")
    assert loop.runs == REQUESTS and loop.executions == REQUESTS * LOOKUPS and loop.max_run == LOOKUPS
    assert loop.transactions == REQUESTS
    assert loop.parent_query == "SELECT id, author_id FROM books WHERE id > $1 ORDER BY id LIMIT $2"
    assert loop.total_ms / loop.executions < 1  # cheap on the server: no server-time threshold would see it

    out = tmp_path / "report.json"
    result = run_cli(
        "audit",
        "--log",
        str(server_log / "server.log"),
        "--log-line-prefix",
        PREFIX,
        "--json",
        str(out),
        "--round-trip-ms",
        "2",
        env={"DATABASE_URL": "", "PGHOST": "", "PGDATABASE": ""},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    validate_report(report)
    [finding] = [f for f in report["findings"] if f["check"] == "n-plus-one" and f["table"] == "public.authors"]
    ev = finding["evidence"]
    assert ev["log"]["runs"] == REQUESTS and ev["log"]["executions_per_run"] == LOOKUPS
    assert ev["log"]["parent_query"].startswith("SELECT id, author_id FROM books")
    assert ev["batched_query"] == "SELECT id, name FROM authors WHERE id = ANY($1)"
    # 37 round trips saved per request at 2 ms each: ~74 ms a request, medium.
    assert ev["log"]["round_trip_ms"] == 2 and 70 < ev["log"]["saved_per_run_ms"] < 80
    assert finding["severity"] == "medium"


def test_the_audits_own_statements_are_left_out(server_log):
    text = (server_log / "server.log").read_text()
    assert "/* queryaudit */" in text  # the snapshot run in the fixture is in the log
    for name in FORMATS.values():
        facts = ingest([server_log / name], PREFIX)
        assert facts.statements and not [s.query for s in facts.statements if "queryaudit" in s.query]
        assert not [p for p in facts.n_plus_one if "queryaudit" in p.query]
        logged = sum(
            1
            for e in iter_events([server_log / name], PREFIX)
            if isinstance(e, StatementEvent) and e.duration_ms is not None and e.phase in ("simple", "execute")
        )
        own = sum(
            1
            for e in iter_events([server_log / name], PREFIX)
            if isinstance(e, StatementEvent)
            and e.duration_ms is not None
            and e.phase in ("simple", "execute")
            and "/* queryaudit */" in e.query
        )
        assert own > 10 and facts.executions == logged - own


def test_one_read_per_log_file(server_log, monkeypatch):
    """The statistics, the N+1 loops and the lock analysis come from one read of each file."""
    from queryaudit.logs import reader
    from queryaudit.logs.stage import log_only_snapshot, read_logs

    reads = []
    chunks = reader._chunks  # every reader reads its file through it

    def counted(f):
        reads.append(getattr(f, "name", f))
        yield from chunks(f)

    monkeypatch.setattr(reader, "_chunks", counted)
    snap = log_only_snapshot()
    read_logs(snap, [server_log / "server.log", server_log / "server.csv"], PREFIX)
    assert len(reads) == 2 and len(set(reads)) == 2
    assert snap.logs.executions > 0 and snap.logs.n_plus_one
    assert snap.lock_log is not None and snap.lock_log.waits  # the row lock wait, from the same read
    assert any(w.relation == "public.authors" for w in snap.lock_log.waits)


@pytest.mark.parametrize("fmt", FORMATS)
def test_audit_from_log_alone(server_log, fmt, tmp_path):
    _needs(server_log, fmt)
    out = tmp_path / "report.json"
    args = ["audit", "--log", str(server_log / FORMATS[fmt]), "--json", str(out)]
    result = run_cli(*args, "--log-line-prefix", PREFIX, env={"DATABASE_URL": "", "PGHOST": "", "PGDATABASE": ""})
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    validate_report(report)
    [finding] = [f for f in report["findings"] if f["check"] == "n-plus-one" and f["table"] == "public.books"]
    assert finding["columns"] == ["author_id"]
    assert finding["evidence"]["log"]["executions"] == 60
    assert finding["evidence"]["batched_query"] == "SELECT id, title, author_id FROM books WHERE author_id = ANY($1)"
    assert len(finding["queryids"]) == 2  # child, then parent
    assert report["logs"]["malformed_lines"] == 0
    top = {s["query"]: s for s in report["logs"]["statements"]}
    assert top["SELECT id, title FROM books WHERE author_id = $1"]["p95_ms"] > 0


def test_log_read_in_parallel_pieces_matches_one_process(server_log, monkeypatch):
    """--log-jobs: the file cut into pieces at entry starts, read by separate processes,
    merged: the same executions, percentiles, loops and lock waits as one process."""
    from queryaudit.logs import parallel
    from queryaudit.logs.stage import log_only_snapshot, read_logs

    paths = [server_log / "server.log", server_log / "server.csv"]
    one = log_only_snapshot()
    read_logs(one, paths, PREFIX)
    monkeypatch.setattr(parallel, "MIN_CHUNK_BYTES", 16 << 10)  # pieces of a small test log
    cuts = len(parallel.cut_points(server_log / "server.log", PREFIX, 4)) - 2
    assert cuts == 3
    many = log_only_snapshot()
    read_logs(many, paths, PREFIX, jobs=4)
    a, b = one.logs, many.logs
    assert (b.lines, b.records, b.executions, b.statement_count, b.lock_events, b.malformed_lines) == (
        a.lines,
        a.records,
        a.executions,
        a.statement_count,
        a.lock_events,
        a.malformed_lines,
    )
    assert abs(b.total_ms - a.total_ms) < 0.01
    assert [(s.key, s.count, s.p50_ms, s.p95_ms, s.p99_ms) for s in b.statements] == [
        (s.key, s.count, s.p50_ms, s.p95_ms, s.p99_ms) for s in a.statements
    ]
    assert {p.query for p in b.n_plus_one} == {p.query for p in a.n_plus_one}
    # A loop a cut splits is two runs, one at each side (the module says so): a side
    # shorter than the N+1 minimum is not a loop, so each cut may lose that many.
    lost = sum(p.executions for p in a.n_plus_one) - sum(p.executions for p in b.n_plus_one)
    assert 0 <= lost <= cuts * (MIN_EXECUTIONS - 1)
    assert many.lock_log and {w.relation for w in many.lock_log.waits} == {w.relation for w in one.lock_log.waits}


def test_wrong_prefix_is_reported_not_crashed(server_log, tmp_path):
    result = run_cli(
        "audit",
        "--log",
        str(server_log / "server.log"),
        "--log-line-prefix",
        "%t <%u> ",
        "--json",
        str(tmp_path / "r.json"),
        env={"DATABASE_URL": "", "PGHOST": "", "PGDATABASE": ""},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["partial"] and "log_line_prefix" in report["errors"][0]["message"]


def test_log_matched_to_pg_stat_statements_adds_percentiles(server_log, tmp_path):
    """--log with a live audit of the server that wrote it: query entries get p50/p95/p99,
    and the N+1 found in pg_stat_statements carries the log's evidence."""
    out = tmp_path / "report.json"
    result = run_cli(
        "audit",
        "--dsn",
        server_log.dsn,
        "--no-explain",
        "--json",
        str(out),
        "--log",
        str(server_log / ("server.json" if "jsonlog" in server_log.formats else "server.csv")),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    child = next(q for q in report["queries"] if q["query"].startswith("SELECT id, title FROM books"))
    assert child["p95_ms"] > 0 and child["log_calls"] == 60
    [finding] = [f for f in report["findings"] if f["check"] == "n-plus-one" and f["table"] == "public.books"]
    assert finding["evidence"]["source"] == ["pg_stat_statements", "log"]


def test_every_format_shows_tail_latency_from_the_log(server_log, tmp_path):
    """p50/p95/p99 in the workload table of the terminal, HTML and Markdown reports, under a
    line saying which figures come from pg_stat_statements and which from the log."""
    paths = {fmt: tmp_path / f"report.{fmt}" for fmt in ("json", "html", "md")}
    result = run_cli(
        "audit",
        "--dsn",
        server_log.dsn,
        "--no-explain",
        "--log",
        str(server_log / "server.csv"),
        "--json",
        str(paths["json"]),
        "--html",
        str(paths["html"]),
        "--markdown",
        str(paths["md"]),
        env={"COLUMNS": "220"},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(paths["json"].read_text())
    sources = report["workload_sources"]
    assert sources.startswith("calls, total and mean: pg_stat_statements; p50/p95/p99 and log calls: the server log")
    top = report["queries"][0]
    assert top["p50_ms"] <= top["p95_ms"] <= top["p99_ms"] and top["p95_ms"] > 0
    from queryaudit.report.html import _ms

    shown = [_ms(top[k]) for k in ("p50_ms", "p95_ms", "p99_ms")]
    html = paths["html"].read_text()
    workload = html[html.index('id="workload"') : html.index('id="fixes"')]
    assert '<th class="n">p95</th>' in workload and sources.split(";")[0] in workload
    assert all(f'<td class="n">{v}</td>' in workload for v in shown)
    md = paths["md"].read_text()
    table = md[md.index("## Workload") :]
    from queryaudit.report.markdown import text as md_text

    assert "| p50 | p95 | p99 |" in table and f"_{md_text(sources)}_" in table
    assert f"| {shown[0]} | {shown[1]} | {shown[2]} |" in table
    from queryaudit.report.terminal import _ms as term_ms

    out = result.stdout
    assert "p95" in out and sources.split(";")[0] in out
    assert term_ms(top["p95_ms"]) in out


def test_truncated_and_corrupted_logs(server_log, tmp_path):
    data = (server_log / "server.log").read_bytes()
    good = ingest([server_log / "server.log"], PREFIX)
    broken = tmp_path / "broken.log"
    # Invalid UTF-8, a line of noise, and the file cut in the middle of a line.
    lines = data.split(b"\n")
    lines.insert(50, b"\xff\xfe not utf-8 \xc3")
    lines.insert(10, b"garbage line without a prefix")
    broken.write_bytes(b"\n".join(lines)[:-37])
    facts = ingest([broken], PREFIX)
    assert facts.malformed_lines >= 1 and facts.n_plus_one and facts.executions >= good.executions - 3
    gz = tmp_path / "cut.log.gz"
    gz.write_bytes(gzip.compress(data)[: len(gzip.compress(data)) // 2])
    facts = ingest([str(tmp_path / "*.gz")], PREFIX)
    assert facts.lines > 0 and "read stopped" in facts.files[0]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=200),
            st.text(max_size=200).map(str.encode),
            st.sampled_from(
                [
                    b"2024-01-01 00:00:00.000 UTC [1] LOG:  duration: x ms",
                    b"2024-01-01 00:00:00.000 UTC [1] DETAIL:  parameters: $1 = '",
                    b"\tcontinued",
                    b'{"message": 1}',
                    b"2024-01-01 00:00:00 UTC,,,",
                ]
            ),
        ),
        max_size=40,
    ),
    st.sampled_from(["stderr", "csvlog", "jsonlog"]),
)
@example(lines=[b"\x1f\x8b"], fmt="stderr")  # gzip's magic bytes alone: a compressed file cut at once
def test_random_bytes_never_crash(tmp_path, lines, fmt):
    path = tmp_path / f"fuzz-{fmt}.log"
    data = b"\n".join(lines)
    path.write_bytes(data)
    facts = ingest([path], "%m [%p] ", log_format=fmt)
    assert facts.lines <= data.count(b"\n") + 1 and facts.malformed_lines <= facts.lines


def test_sketch_quantiles_are_within_the_relative_error():
    sketch = LatencySketch()
    values = [0.05 * 1.01**i for i in range(2000)]
    for v in values:
        sketch.add(v)
    for q in (0.5, 0.95, 0.99):
        exact = sorted(values)[int(q * (len(values) - 1))]
        assert abs(sketch.quantile(q) - exact) / exact < 0.03
    assert len(sketch.buckets) < 600
