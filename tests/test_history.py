"""Audit history against real PostgreSQL 15 and 18: regressions caught by `check`, resets
and evictions never giving negative deltas, SQLite and PostgreSQL stores, concurrent
writers, schema upgrades, budgets, suppressions and fleets."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap
import time
import tomllib

import pytest
import sqlalchemy as sa

from conftest import run_cli
from helpers import validate_report
from queryaudit.collect import CollectOptions, collect_snapshot
from queryaudit.connect import session
from queryaudit.errors import AuditError
from queryaudit.history import store as store_mod
from queryaudit.history.baseline import AuditView, StatementMetrics, compare
from queryaudit.history.budgets import evaluate, load_config, parse_config
from queryaudit.history.store import Store
from queryaudit.pipeline import analyse

ITEMS = """
CREATE TABLE items (id bigserial PRIMARY KEY, k int NOT NULL, pad text NOT NULL);
INSERT INTO items (k, pad) SELECT g % 5000, repeat('x', 200) FROM generate_series(1, 30000) g;
CREATE INDEX items_k_idx ON items (k);
ANALYZE items;
"""
LOOKUP = "SELECT id, pad FROM items WHERE k = %s"


def workload(db, calls: int = 150, other: int = 20) -> None:
    with db.connect() as conn:
        for i in range(calls):
            conn.execute(LOOKUP, (i * 7 % 5000,)).fetchall()
        for i in range(other):
            conn.execute("SELECT count(*) FROM items WHERE id = %s", (i * 100,)).fetchone()


def items_db(empty_db):
    with empty_db.connect() as conn:
        conn.execute(ITEMS)
        conn.execute("SELECT pg_stat_statements_reset()")  # the test's own server: a clean start
    return empty_db


def snapshot_of(db):
    with session(db.dsn) as conn:
        return collect_snapshot(conn, CollectOptions())


def pg_store_url(server) -> str:
    """A separate database on the test cluster holds the PostgreSQL store."""
    name = f"qa_history_{next(_pg_stores)}"
    with server.admin() as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return server.cluster.dsn(name)


_pg_stores = iter(range(1, 10_000))


def lookup_queryid(snapshot) -> str:
    return next(s.queryid for s in snapshot.statements if "FROM items WHERE k = $1" in s.query)


def test_regression_between_audits_is_caught_by_check(empty_db, tmp_path):
    """Workload, audit+store, drop the index, workload, audit+store: check exits 1 naming the statement."""
    db = items_db(empty_db)
    store = str(tmp_path / "history.db")
    config = tmp_path / "queryaudit.toml"
    config.write_text(
        textwrap.dedent("""
        [budgets]
        mean-time-regression-pct = 50
        fail-on-new-finding = "critical"
        # The default noise floor (0.1 ms on both sides): a lookup by primary key that
        # goes 0.013 -> 0.023 ms because the machine got busier between two windows is
        # not a regression, whatever Welch's test says of the spread within each window.
    """)
    )
    common = ["--store", store, "--target", "items", "--top", "5", "--no-explain"]
    workload(db)
    first = run_cli("audit", "--dsn", db.dsn, *common, "--json", str(tmp_path / "first.json"))
    assert first.returncode == 0, first.stderr
    assert "recorded as audit #1 of items" in first.stdout

    with db.connect() as conn:
        conn.execute("DROP INDEX items_k_idx")
    workload(db)
    out = tmp_path / "second.json"
    second = run_cli("audit", "--dsn", db.dsn, *common, "--baseline", "--json", str(out))
    assert second.returncode == 0, second.stderr
    report = json.loads(out.read_text())
    validate_report(report)
    assert report["history"]["window"]["kind"] == "delta"
    row = next(r for r in report["baseline"]["statements"] if "FROM items WHERE k = $1" in r["query"])
    assert row["status"] == "regressed"
    # Window numbers: the second window holds the 150 calls run after the first audit, not 300.
    assert row["after"]["calls"] == 150 and row["before"]["calls"] == 150
    assert row["after"]["mean_exec_time_ms"] > 2 * row["before"]["mean_exec_time_ms"]

    gate = run_cli("check", "--store", store, "--config", str(config))
    assert gate.returncode == 1, gate.stdout + gate.stderr
    broken = [line for line in gate.stdout.splitlines() if line.startswith("BROKEN")]
    assert any(
        "mean-time-regression-pct" in line and "FROM items WHERE k = $1" in line and "->" in line for line in broken
    ), gate.stdout
    # The statement that did not change (an index lookup by primary key) is not judged.
    assert not any("count(*)" in line for line in broken)

    history = run_cli(
        "history", "--store", store, "--statement", "FROM items WHERE k", "--html", str(tmp_path / "history.html")
    )
    assert history.returncode == 0, history.stderr
    assert "#1" in history.stdout and "#2" in history.stdout
    page = (tmp_path / "history.html").read_text()
    assert "<svg" in page and "<polyline" in page and "items WHERE k = $1" in page

    # Report against report (cumulative numbers): the regression still shows. Cumulative
    # means dilute it (half the calls ran before the drop), so the noise floor is lower.
    cumulative = tmp_path / "cumulative.toml"
    cumulative.write_text(config.read_text())
    gate = run_cli(
        "check", "--report", str(out), "--baseline-report", str(tmp_path / "first.json"), "--config", str(cumulative)
    )
    assert gate.returncode == 1 and "FROM items WHERE k = $1" in gate.stdout, gate.stdout + gate.stderr

    # With the index back, a live check of the next window (recorded) passes.
    with db.connect() as conn:
        conn.execute("CREATE INDEX items_k_idx ON items (k)")
        conn.execute("ANALYZE items")
    workload(db)
    gate = run_cli("check", "--dsn", db.dsn, "--store", store, "--target", "items", "--config", str(config), "--record")
    assert gate.returncode == 0, gate.stdout + gate.stderr
    assert "recorded as audit #3 of items" in gate.stdout and "ok: all budgets hold" in gate.stdout


def test_reset_between_audits_gives_no_negative_deltas(empty_db, tmp_path):
    if empty_db.server.version_num < 140000:
        pytest.skip("a reset of the whole view shows in pg_stat_statements_info.stats_reset, PostgreSQL 14+")
    db = items_db(empty_db)
    store = Store(str(tmp_path / "h.db"))
    workload(db, calls=120)
    snap1 = snapshot_of(db)
    rec1 = store.record(snap1, analyse(snap1), "items")
    assert rec1.window.kind == "first"

    # The whole view is reset (by the DBA, not by queryaudit), then less work runs.
    with db.connect() as conn:
        conn.execute("SELECT pg_stat_statements_reset()")
    workload(db, calls=30, other=5)
    snap2 = snapshot_of(db)
    rec2 = store.record(snap2, analyse(snap2), "items")
    assert rec2.window.kind == "reset" and "reset" in rec2.window.note
    assert rec2.window.start == snap2.server.pgss_stats_reset
    view = store.audit_view(rec2.audit_id)
    assert view.statements[lookup_queryid(snap2)].calls == 30

    # One entry reset on its own (as an eviction would): it restarts, the others keep differencing.
    queryid = lookup_queryid(snap2)
    with db.connect() as conn:
        conn.execute("SELECT pg_stat_statements_reset(0, 0, %s::bigint)", (int(queryid),))
    # More calls than before the restart on 17+ (stats_since tells), fewer before 17 (counters went down).
    restarted_calls = 45 if db.server.version_num >= 170000 else 10
    workload(db, calls=restarted_calls, other=5)
    snap3 = snapshot_of(db)
    rec3 = store.record(snap3, analyse(snap3), "items")
    assert rec3.window.kind == "delta"
    kinds = {e.sample.queryid: e for e in rec3.window.entries}
    assert kinds[queryid].kind == "restarted"
    assert kinds[queryid].delta["calls"] == restarted_calls
    other = next(e for e in rec3.window.entries if "count(*)" in e.sample.query)
    assert other.kind == "delta" and other.delta["calls"] == 5

    stmts = store_mod.T["qa_statements"]
    with store.engine.connect() as conn:
        negative = conn.execute(
            sa.select(sa.func.count()).where(
                sa.or_(
                    stmts.c.d_calls < 0,
                    stmts.c.d_total_exec_time_ms < 0,
                    stmts.c.d_rows < 0,
                    stmts.c.d_shared_blks_hit < 0,
                    stmts.c.d_shared_blks_read < 0,
                )
            )
        ).scalar()
        windows = (
            conn.execute(sa.select(store_mod.T["qa_audits"].c.window_kind).order_by(store_mod.T["qa_audits"].c.id))
            .scalars()
            .all()
        )
    assert negative == 0
    assert windows == ["first", "reset", "delta"]
    store.close()


WRITER = textwrap.dedent("""
    import sys, datetime as dt
    from queryaudit.history.store import Store
    from queryaudit.snapshot import Snapshot
    url, snap_path, offset, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    snap = Snapshot.load(snap_path)
    base = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    store = Store(url)
    for i in range(count):
        snap.collected_at = (base + dt.timedelta(minutes=2 * i + offset)).isoformat()
        for s in snap.statements:
            s.calls += 1
        store.record(snap, {"findings": [{"id": f"x:{offset}", "check": "x", "severity": "low", "title": "t"}]},
                     name="shared")
    print("done")
""")


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_two_writers_at_once_lose_nothing(kind, empty_db, tmp_path):
    db = items_db(empty_db)
    workload(db, calls=10, other=2)
    snap_path = tmp_path / "snap.json"
    snapshot_of(db).save(snap_path)
    statements = len(json.loads(snap_path.read_text())["statements"])
    url = str(tmp_path / "h.db") if kind == "sqlite" else pg_store_url(db.server)
    per_writer = 12
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url, str(snap_path), str(offset), str(per_writer)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for offset in (0, 1)
    ]
    for w in writers:
        out, err = w.communicate(timeout=120)
        assert w.returncode == 0, err
    store = Store(url)
    target = store.resolve_target("shared")
    audits = store.audits(target["id"])
    assert len(audits) == 2 * per_writer
    stmts = store_mod.T["qa_statements"]
    with store.engine.connect() as conn:
        per_audit = dict(conn.execute(sa.select(stmts.c.audit_id, sa.func.count()).group_by(stmts.c.audit_id)).all())
        negative = conn.execute(sa.select(sa.func.count()).where(stmts.c.d_calls < 0)).scalar()
    assert sorted(per_audit) == sorted(a["id"] for a in audits)
    assert set(per_audit.values()) == {statements}
    assert negative == 0
    assert sum(a["findings"].get("low", 0) for a in audits) == 2 * per_writer
    store.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_store_upgrades_from_schema_1(kind, empty_db, tmp_path):
    """A store created by schema 1 (cumulative numbers only) is migrated on open and keeps
    its audits; the next audit's window differences against the old audit's counters."""
    db = items_db(empty_db)
    url = str(tmp_path / "old.db") if kind == "sqlite" else pg_store_url(db.server)
    old = Store(url, target_version=1)
    assert old.schema_version() == 1
    workload(db, calls=40, other=0)
    snap1 = snapshot_of(db)
    v1 = store_mod.build_metadata(1).tables
    identity = store_mod.target_identity(snap1.server)
    with old.engine.begin() as conn:  # what queryaudit with schema 1 wrote
        target_id = conn.execute(
            v1["qa_targets"]
            .insert()
            .values(key=identity.key, name=identity.name, database=identity.database)
            .returning(v1["qa_targets"].c.id)
        ).scalar_one()
        audit_id = conn.execute(
            v1["qa_audits"]
            .insert()
            .values(
                target_id=target_id,
                collected_at=snap1.collected_at,
                pgss_stats_reset=snap1.server.pgss_stats_reset,
                pgss_dealloc=snap1.server.pgss_dealloc,
                samples_complete=True,
                statement_count=snap1.statement_count,
            )
            .returning(v1["qa_audits"].c.id)
        ).scalar_one()
        conn.execute(
            v1["qa_statements"].insert(),
            [
                {
                    "audit_id": audit_id,
                    "queryid": s.queryid,
                    "userid": s.userid,
                    "toplevel": s.toplevel,
                    "calls": s.calls,
                    "total_exec_time_ms": s.total_exec_time_ms,
                    "rows": s.rows,
                    "shared_blks_hit": s.shared_blks_hit,
                    "shared_blks_read": s.shared_blks_read,
                    "temp_blks_written": s.temp_blks_written,
                }
                for s in snap1.statements
            ],
        )
        conn.execute(
            v1["qa_query_texts"].insert(),
            [{"target_id": target_id, "queryid": s.queryid, "query": s.query} for s in snap1.statements],
        )
    old.close()

    store = Store(url)  # upgrade on open
    assert store.schema_version() == store_mod.CURRENT_VERSION == 4
    with store.engine.connect() as conn:
        versions = conn.execute(sa.select(store_mod.VERSION_TABLE.c.version)).scalars().all()
    assert sorted(versions) == [1, 2, 3, 4]
    assert store.audit_view(audit_id).window_kind == "cumulative"
    assert store.audit_view(audit_id).evidence is None  # kept nothing that explains a change
    workload(db, calls=25, other=0)
    snap2 = snapshot_of(db)
    rec = store.record(snap2, analyse(snap2))
    assert rec.previous_audit_id == audit_id and rec.window.kind == "delta"
    lookup = store.audit_view(rec.audit_id).statements[lookup_queryid(snap2)]
    assert lookup.calls == 25
    assert lookup.stddev_ms is None  # schema 1 kept no spread: the window has none (no Welch test)
    # Schema 4: the new audit keeps its evidence (settings at least: no plan was captured here).
    assert "work_mem" in store.audit_view(rec.audit_id).evidence["settings"]
    workload(db, calls=30, other=0)
    snap3 = snapshot_of(db)
    rec = store.record(snap3, analyse(snap3))
    lookup = store.audit_view(rec.audit_id).statements[lookup_queryid(snap3)]
    assert lookup.calls == 30 and lookup.stddev_ms is not None and lookup.stddev_ms >= 0
    store.close()


def test_config_errors_exit_2_with_one_line(tmp_path):
    bad = tmp_path / "queryaudit.toml"
    bad.write_text("[budgets]\nmean-regression = 20\n")
    result = run_cli("check", "--config", str(bad), "--store", str(tmp_path / "none.db"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "budgets.mean-regression" in result.stderr

    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.queryaudit.budgets]\nfail-on-new-finding = "severe"\n')
    result = run_cli("check", "--config", str(pyproject))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "budgets.fail-on-new-finding" in result.stderr and "[tool.queryaudit]" in result.stderr

    for text, key in [
        ('[[suppress]]\nid = "x:1"\nexpires = 2030-01-01\n', "suppress[0].reason"),
        ('[[suppress]]\nid = "x:1"\nreason = "r"\nexpires = "soon"\n', "suppress[0].expires"),
        ('[[budgets.statement]]\npattern = "(unclosed"\nmax-calls = 3\n', "budgets.statement[0].pattern"),
        ('[[budgets.statement]]\npattern = "x"\nqueryid = "1"\nmax-calls = 3\n', "budgets.statement[0]"),
        ("[budgets]\nmax-calls = -1\n", "budgets.max-calls"),
        ("[budget]\nmax-calls = 1\n", "budget"),
    ]:
        with pytest.raises(AuditError, match=key.replace("[", r"\[").replace("]", r"\]")):
            parse_config(tomllib.loads(text), "queryaudit.toml")


def _view(label, mean_ms, findings):
    return AuditView(
        label=label,
        collected_at="2030-01-01T00:00:00+00:00",
        window_kind="delta",
        statements={"7": StatementMetrics("7", "SELECT 1 FROM t WHERE a = $1", 100, 100 * mean_ms)},
        findings=findings,
    )


def test_suppression_with_expiry(tmp_path):
    finding = {"check": "missing-index", "severity": "high", "title": "t.a has no index", "object": "public.t (a)"}
    before = _view("before", 1.0, {})
    after = _view("after", 1.1, {"missing-index:abc": finding})
    config_path = tmp_path / "queryaudit.toml"
    config_path.write_text(
        textwrap.dedent("""
        [budgets]
        fail-on-new-finding = "high"
        mean-time-regression-pct = 50

        [[suppress]]
        id = "missing-index:*"
        reason = "the index lands with the next release"
        expires = 2030-06-30
    """)
    )
    config = load_config(config_path)
    comparison = compare(before, after)
    live = evaluate(config, comparison, today=dt.date(2030, 6, 30))
    assert live.ok and live.suppressed[0]["id"] == "missing-index:abc" and not live.expired
    lapsed = evaluate(config, comparison, today=dt.date(2030, 7, 1))
    assert not lapsed.ok and [s.id for s in lapsed.expired] == ["missing-index:*"]
    assert lapsed.violations[0].budget == "fail-on-new-finding"
    assert "expired on 2030-06-30" in lapsed.violations[0].message
    # The 10 % slower statement holds a 50 % budget; a per-statement budget can be stricter.
    config_path.write_text(
        config_path.read_text() + '\n[[budgets.statement]]\npattern = "FROM t WHERE a"\nmean-time-regression-pct = 5\n'
    )
    strict = evaluate(load_config(config_path), comparison, today=dt.date(2030, 6, 1))
    assert [v.budget for v in strict.violations] == ["mean-time-regression-pct"]
    assert strict.violations[0].queryid == "7" and strict.violations[0].before == 1.0


def test_fleet_audits_targets_concurrently_and_lists_failures(empty_db, tmp_path):
    db = items_db(empty_db)
    workload(db, calls=20, other=2)
    other = db.server.create_database()
    targets = tmp_path / "targets.toml"
    targets.write_text(
        textwrap.dedent(f"""
        workers = 2
        [[target]]
        name = "items"
        dsn = "{db.dsn}"
        [[target]]
        name = "empty"
        dsn-env = "QA_TEST_EMPTY_DSN"
        [[target]]
        name = "down"
        dsn = "postgresql://nobody@127.0.0.1:1/none"
    """)
    )
    out = tmp_path / "fleet"
    store = tmp_path / "fleet.db"
    result = run_cli(
        "audit",
        "--targets",
        str(targets),
        "--out-dir",
        str(out),
        "--top",
        "5",
        "--store",
        str(store),
        env={"QA_TEST_EMPTY_DSN": other.dsn},
    )
    assert result.returncode == 2  # one target failed
    assert "down" in result.stderr and result.stderr.count("\n") == 1
    for name in ("items", "empty"):
        report = json.loads((out / f"{name}.json").read_text())
        assert report["history"]["target"] == name
    assert not (out / "down.json").exists()
    index = (out / "index.html").read_text()
    assert 'href="items.json"' in index and 'href="empty.json"' in index
    assert "cannot reach the PostgreSQL server" in index and "failed" in index
    assert "| down | failed |" in (out / "index.md").read_text()
    assert {t["name"] for t in Store(str(store)).targets()} == {"items", "empty"}


def test_window_rules_for_truncated_evicted_and_moved_targets():
    """The cases a live cluster cannot stage cheaply: a previous audit that kept only the top
    entries, evictions, and another cluster answering at the same address."""
    from queryaudit.history.windows import AuditPoint, Sample, compute_window

    def point(at, samples, complete=True, sysid="1", dealloc=0):
        return AuditPoint(
            collected_at=at,
            samples={s.key: s for s in samples},
            pgss_stats_reset="2030-01-01T00:00:00Z",
            pgss_dealloc=dealloc,
            system_identifier=sysid,
            complete=complete,
        )

    old = [Sample("a", calls=10, total_exec_time_ms=10.0)]
    now = [Sample("a", calls=15, total_exec_time_ms=20.0), Sample("b", calls=3, total_exec_time_ms=3.0)]
    # b was not in a previous audit that kept every entry: created since, its whole count is the window.
    w = compute_window(point("2030-01-02T00:00:00+00:00", old), point("2030-01-03T00:00:00+00:00", now, dealloc=4))
    assert [(e.sample.queryid, e.kind, e.delta and e.delta["calls"]) for e in w.entries] == [
        ("a", "delta", 5),
        ("b", "new", 3),
    ]
    assert w.evicted == 4 and "4 entries were evicted" in w.note
    # The previous audit kept only the top entries: where b started is unknown, so no numbers.
    w = compute_window(point("2030-01-02T00:00:00+00:00", old, complete=False), point("2030-01-03T00:00:00+00:00", now))
    assert [(e.kind, e.delta) for e in w.entries][1] == ("unknown", None)
    # ... unless its stats_since (17+) shows it began after that audit.
    now[1].stats_since = "2030-01-02T12:00:00+00:00"
    w = compute_window(point("2030-01-02T00:00:00+00:00", old, complete=False), point("2030-01-03T00:00:00+00:00", now))
    assert w.entries[1].kind == "new"
    # Another cluster at the same target: counting starts again, nothing differenced.
    w = compute_window(point("2030-01-02T00:00:00+00:00", old), point("2030-01-03T00:00:00+00:00", now, sysid="2"))
    assert w.kind == "reset" and "system identifier" in w.note
    assert all(e.delta == {c: getattr(e.sample, c) for c in e.delta} for e in w.entries)


def _unused(report: dict) -> tuple[set[str], set[str]]:
    """(indexes called unused, indexes listed as 'not enough history')."""
    findings = [f for f in report["findings"] if f["check"] == "unused-index"]
    called = {f["index"] for f in findings if f["severity"] != "info"}
    young = {i["index"] for f in findings if f["severity"] == "info" for i in f["evidence"]["indexes"]}
    return called, young


def test_an_index_a_few_seconds_old_is_not_called_unused(empty_db, tmp_path):
    empty_db.execute("CREATE TABLE t (id int PRIMARY KEY, v int, w int)")
    empty_db.execute("INSERT INTO t SELECT g, g, -g FROM generate_series(1, 100000) g")  # distinct keys: > 1 MiB
    empty_db.execute("CREATE INDEX t_v_idx ON t (v)")

    def audit(name: str, *extra: str) -> dict:
        out = tmp_path / f"{name}.json"
        result = run_cli("audit", "--dsn", empty_db.dsn, "--no-explain", "--json", str(out), *extra)
        assert result.returncode == 0, result.stderr
        report = json.loads(out.read_text())
        validate_report(report)
        return report

    # The server's statistics are minutes old at most: under the default 7 days, no verdict.
    called, young = _unused(audit("default"))
    assert "public.t_v_idx" not in called and "public.t_v_idx" in young
    info = next(f for f in audit("again")["findings"] if f["check"] == "unused-index")
    assert info["severity"] == "info" and info["fix_sql"] is None and "Not enough history" in info["title"]
    assert "public.t_v_idx" in _unused(audit("no-minimum", "--unused-index-min-days", "0"))[0]

    # With a history store, an index is also judged by its own age: one created after the
    # target's first stored audit is as old as the audit that first saw it.
    started = empty_db.execute(
        "SELECT extract(epoch FROM now() - coalesce(stats_reset, pg_postmaster_start_time())) "
        "FROM pg_stat_database WHERE datname = current_database()"
    )[0][0]
    time.sleep(max(0.0, 3.0 - float(started)))  # the server window is past the 2 s asked below
    two_seconds = str(2 / 86400)
    store = ["--store", str(tmp_path / "history.db"), "--unused-index-min-days", two_seconds]
    called, _ = _unused(audit("first", *store))
    assert "public.t_v_idx" in called  # present at the first audit: the server window (> 2 s) counts
    empty_db.execute("CREATE INDEX t_w_idx ON t (w)")
    called, young = _unused(audit("second", *store))
    assert "public.t_v_idx" in called
    assert "public.t_w_idx" not in called and "public.t_w_idx" in young
