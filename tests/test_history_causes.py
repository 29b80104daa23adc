"""Why a statement moved between two stored audits, on real PostgreSQL 15 and 18: each
test runs a workload, stores an audit (plain EXPLAIN plans, `--explain-budget 0`), changes
one thing, runs the same workload again and stores a second audit with `--baseline`.
The causes are asserted from plans, catalog state and settings, never from timings."""

from __future__ import annotations

import json
import textwrap

import pytest

from browser import open_report
from conftest import run_cli
from helpers import validate_report
from queryaudit.advisor.stage import AdvisorOptions
from queryaudit.history.service import attach_history
from queryaudit.pipeline import AuditOptions, audit
from queryaudit.report.html import render
from test_notify import Receiver, dead_url

OPTIONS = AuditOptions(top=8, explain_budget_s=0.0)


def stored_audit(db, store: str, options: AuditOptions = OPTIONS) -> dict:
    """One audit of the database, recorded in the store and compared with the one before."""
    run = audit(db.dsn, options)
    attach_history(run.report, run.snapshot, store, record=True, baseline=True, name="t")
    validate_report(json.loads(json.dumps(run.report, default=str)))
    return run.report


def row_of(report: dict, text: str) -> dict:
    return next(r for r in report["baseline"]["statements"] if text in r["query"])


def kinds(row: dict) -> list[str]:
    return [c["kind"] for c in row.get("causes") or []]


def cause(row: dict, kind: str) -> dict:
    return next(c for c in row["causes"] if c["kind"] == kind)


def setup(db, sql: str) -> None:
    with db.connect() as conn:
        for statement in filter(str.strip, sql.split(";")):
            conn.execute(statement)
        # No parallel plans: a Gather appearing as a table grows would be a plan change.
        conn.execute(f"ALTER DATABASE {db.name} SET max_parallel_workers_per_gather = 0")
        conn.execute("SELECT pg_stat_statements_reset()")


def run(db, statements: list[tuple[str, tuple]], rounds: int) -> None:
    with db.connect() as conn:
        for i in range(rounds):
            for sql, args in statements:
                conn.execute(sql, args if not callable(args) else args(i)).fetchall()


ITEMS = """
CREATE TABLE items (id bigserial PRIMARY KEY, k int NOT NULL, pad text NOT NULL);
INSERT INTO items (k, pad) SELECT g % 5000, repeat('x', 200) FROM generate_series(1, 30000) g;
CREATE INDEX items_k_idx ON items (k);
VACUUM ANALYZE items;
"""
ITEMS_WORKLOAD = [
    ("SELECT id, pad FROM items WHERE k = %s", lambda i: (i * 7 % 5000,)),
    ("SELECT count(*) FROM items WHERE id = %s", lambda i: (i * 13,)),
]


def test_index_dropped_names_the_index_and_both_plans(empty_db, tmp_path):
    store = str(tmp_path / "h.db")
    setup(empty_db, ITEMS)
    run(empty_db, ITEMS_WORKLOAD, 150)
    stored_audit(empty_db, store)
    with empty_db.connect() as conn:
        conn.execute("DROP INDEX items_k_idx")
    run(empty_db, ITEMS_WORKLOAD, 150)
    report = stored_audit(empty_db, store)
    row = row_of(report, "FROM items WHERE k = $1")
    assert row["status"] == "regressed", row
    assert kinds(row)[:2] == ["plan-changed", "index-dropped"] or set(kinds(row)[:2]) == {
        "plan-changed",
        "index-dropped",
    }
    dropped = cause(row, "index-dropped")
    assert dropped["evidence"]["index"] == "public.items_k_idx"
    plan = cause(row, "plan-changed")["evidence"]
    assert "items_k_idx" in plan["before_plan"] and "Seq Scan on items" in plan["after_plan"]
    assert "items_k_idx" not in plan["after_plan"]
    # The primary-key lookup did not move and carries no cause.
    other = row_of(report, "count(*) FROM items")
    assert other["status"] == "unchanged" and "causes" not in other


GROWN = """
CREATE TABLE readings (id bigserial PRIMARY KEY, v float8 NOT NULL, pad text NOT NULL);
INSERT INTO readings (v, pad) SELECT random(), repeat('r', 60) FROM generate_series(1, 20000);
VACUUM ANALYZE readings;
"""
GROWN_WORKLOAD = [
    ("SELECT count(*), max(v) FROM readings", ()),
    ("SELECT v FROM readings WHERE id = %s", lambda i: (i + 1,)),
]


def test_table_grown_tenfold_is_data_growth_not_a_plan_change(empty_db, tmp_path):
    store = str(tmp_path / "h.db")
    setup(empty_db, GROWN)
    run(empty_db, GROWN_WORKLOAD, 40)
    stored_audit(empty_db, store)
    with empty_db.connect() as conn:
        conn.execute("INSERT INTO readings (v, pad) SELECT random(), repeat('r', 60) FROM generate_series(1, 180000)")
        conn.execute("VACUUM ANALYZE readings")
    run(empty_db, GROWN_WORKLOAD, 40)
    report = stored_audit(empty_db, store)
    row = row_of(report, "max(v) FROM readings")
    assert row["status"] == "regressed", row
    assert kinds(row)[0] == "data-growth"
    growth = cause(row, "data-growth")["evidence"]
    assert growth["table"] == "public.readings" and 9 <= growth["growth_factor"] <= 11
    assert "plan-changed" not in kinds(row) and "statistics-changed" not in kinds(row)


# NOT IN (subquery) is hashed only while the hash table fits in work_mem (x hash_mem_multiplier);
# below that, the subquery is materialized (spilling to temp files) and rescanned per outer row.
SPILLED = """
CREATE TABLE visits (id int NOT NULL, page int NOT NULL);
INSERT INTO visits SELECT i, i FROM generate_series(1, 300) i;
CREATE TABLE bots (id int NOT NULL);
INSERT INTO bots SELECT i * 2 FROM generate_series(1, 10000) i;
VACUUM ANALYZE visits;
VACUUM ANALYZE bots;
"""
SPILLED_WORKLOAD = [
    ("SELECT count(*) FROM visits WHERE id NOT IN (SELECT id FROM bots)", ()),
    ("SELECT page FROM visits WHERE id = %s", lambda i: (i + 1,)),
]


def test_work_mem_lowered_for_the_role_spills_and_names_work_mem(empty_db, tmp_path):
    store = str(tmp_path / "h.db")
    setup(empty_db, SPILLED)
    # Per role and database: the shared test cluster's other databases keep their work_mem.
    role = empty_db.execute("SELECT current_user")[0][0]
    with empty_db.connect() as conn:
        conn.execute(f"ALTER ROLE {role} IN DATABASE {empty_db.name} SET work_mem = '64MB'")
    run(empty_db, SPILLED_WORKLOAD, 8)
    stored_audit(empty_db, store)
    with empty_db.connect() as conn:
        conn.execute(f"ALTER ROLE {role} IN DATABASE {empty_db.name} SET work_mem = '64kB'")
    run(empty_db, SPILLED_WORKLOAD, 8)
    report = stored_audit(empty_db, store)
    row = row_of(report, "NOT IN (SELECT id FROM bots)")
    assert row["status"] == "regressed", row
    setting = cause(row, "setting-changed")
    assert setting["explained_share"] == max(c["explained_share"] for c in row["causes"])
    assert setting["evidence"]["setting"] == "work_mem"
    changes = setting["evidence"]["changes"]
    assert any(c["before"] == "64MB" and c["after"] == "64kB" and role in c["scope"] for c in changes), changes
    before_temp, after_temp = setting["evidence"]["temp_blks_written_per_call"]
    assert before_temp == 0 and after_temp > 0  # the spill


SKEWED = """
CREATE TABLE events (id bigserial PRIMARY KEY, k int NOT NULL, pad text NOT NULL);
INSERT INTO events (k, pad) SELECT g % 5000, repeat('e', 100) FROM generate_series(1, 50000) g;
CREATE INDEX events_k_idx ON events (k);
VACUUM ANALYZE events;
"""
SKEWED_WORKLOAD = [
    ("SELECT count(*), max(pad) FROM events WHERE k = %s", (1,)),
    ("SELECT pad FROM events WHERE id = %s", lambda i: (i + 1,)),
]


def test_new_statistics_after_a_distribution_change_flip_the_plan(empty_db, tmp_path):
    store = str(tmp_path / "h.db")
    setup(empty_db, SKEWED)
    run(empty_db, SKEWED_WORKLOAD, 60)
    stored_audit(empty_db, store)
    with empty_db.connect() as conn:
        conn.execute("UPDATE events SET k = 1")
        conn.execute("VACUUM ANALYZE events")
    run(empty_db, SKEWED_WORKLOAD, 60)
    report = stored_audit(empty_db, store)
    row = row_of(report, "FROM events WHERE k = $1")
    assert row["status"] == "regressed", row
    assert {"statistics-changed", "plan-changed"} <= set(kinds(row)), row
    stats = cause(row, "statistics-changed")["evidence"]
    assert stats["table"] == "public.events" and stats["analyzed"]
    assert stats["estimate_after"]["estimated_rows"] > 10 * stats["estimate_before"]["estimated_rows"]
    plan = cause(row, "plan-changed")["evidence"]
    assert "events_k_idx" in plan["before_plan"] and "Seq Scan on events" in plan["after_plan"]
    assert "index-dropped" not in kinds(row) and "data-growth" not in kinds(row)


# Statements of a few tenths of a millisecond to a few milliseconds, interleaved: a busier
# machine slows them together, which the comparison's run drift (queryaudit.before_after) absorbs.
STEADY_WORKLOAD = (
    ITEMS_WORKLOAD
    + GROWN_WORKLOAD
    + [
        ("SELECT count(*) FROM items WHERE k BETWEEN %s AND %s", lambda i: (i % 100, i % 100 + 200)),
        ("SELECT k, count(*) FROM items WHERE k < %s GROUP BY k", lambda i: (50 + i % 20,)),
        ("SELECT avg(v) FROM readings WHERE v > %s", lambda i: (0.5 + (i % 10) / 100,)),
        ("SELECT id FROM readings ORDER BY v DESC LIMIT %s", lambda i: (5 + i % 5,)),
        ("SELECT max(length(pad)) FROM items WHERE id < %s", lambda i: (2000 + i % 50,)),
    ]
)


def test_the_same_workload_twice_has_no_regression_and_no_cause(empty_db, tmp_path):
    """Five pairs of audits of one unchanged workload: never a regression, never a cause."""
    store = str(tmp_path / "h.db")
    setup(empty_db, ITEMS + GROWN)
    run(empty_db, STEADY_WORKLOAD, 60)
    stored_audit(empty_db, store)
    for _ in range(5):
        run(empty_db, STEADY_WORKLOAD, 60)
        report = stored_audit(empty_db, store)
        statements = report["baseline"]["statements"]
        assert len([r for r in statements if r["status"] == "unchanged"]) >= 7
        moved = [r for r in statements if r["status"] in ("regressed", "improved")]
        assert not moved, [(r["query"], r["mean_change_text"]) for r in moved]
        assert not [r for r in statements if "causes" in r]


def test_check_broken_lines_carry_the_causes(empty_db, tmp_path):
    store = str(tmp_path / "h.db")
    config = tmp_path / "queryaudit.toml"
    config.write_text(
        textwrap.dedent("""
        [budgets]
        mean-time-regression-pct = 50
        min-mean-ms = 0.0
    """)
    )
    setup(empty_db, ITEMS)
    run(empty_db, ITEMS_WORKLOAD, 150)
    stored_audit(empty_db, store)
    with empty_db.connect() as conn:
        conn.execute("DROP INDEX items_k_idx")
    run(empty_db, ITEMS_WORKLOAD, 150)
    stored_audit(empty_db, store)
    out = tmp_path / "check.json"
    gate = run_cli("check", "--store", store, "--config", str(config), "--json", str(out))
    assert gate.returncode == 1, gate.stdout + gate.stderr
    broken = [line for line in gate.stdout.splitlines() if line.startswith("BROKEN")]
    assert any(
        "items WHERE k = $1" in line and "index-dropped public.items_k_idx" in line and "plan-changed" in line
        for line in broken
    ), gate.stdout
    violation = json.loads(out.read_text())["verdict"]["violations"][0]
    assert {"index-dropped", "plan-changed"} <= {c["kind"] for c in violation["causes"]}

    # --notify: delivered to a local webhook; a dead endpoint leaves the exit code as it was.
    receiver = Receiver()
    try:
        notified = run_cli("check", "--store", store, "--config", str(config), "--notify", receiver.url)
    finally:
        receiver.close()
    assert notified.returncode == 1 and "notify: delivered to 127.0.0.1" in notified.stdout, notified.stdout
    sent = receiver.bodies[0]
    assert "items WHERE k = $1" in sent["text"] and "index-dropped public.items_k_idx" in sent["text"]
    assert sent["queryaudit"]["violations"][0]["causes"][0]["kind"] in ("plan-changed", "index-dropped")
    dead = run_cli("check", "--store", store, "--config", str(config), "--notify", dead_url(), "--notify-retries", "0")
    assert dead.returncode == 1 and "notify: not delivered" in dead.stdout, dead.stdout + dead.stderr


@pytest.mark.browser
def test_trends_predictions_and_track_record_render_in_chromium(empty_db, tmp_path):
    """Six stored audits (with the index advisor), the index dropped before the fourth and
    created again before the sixth: the sixth audit's HTML draws a sparkline per top
    statement, the plan changes, the findings' lifecycle with the missing-index finding
    resolved, its prediction against what the index realized, and the track record."""
    store = str(tmp_path / "h.db")
    setup(empty_db, ITEMS)
    options = AuditOptions(top=8, explain_budget_s=0.0, advisor=AdvisorOptions())
    for n in range(6):
        with empty_db.connect() as conn:
            if n == 3:
                conn.execute("DROP INDEX items_k_idx")
            if n == 5:
                conn.execute("CREATE INDEX items_k_idx ON items (k)")
        run(empty_db, ITEMS_WORKLOAD, 40 + 10 * n)
        report = stored_audit(empty_db, store, options)
    trends = report["history"]["trends"]
    assert trends["audits"] == 6
    lookup = next(s for s in trends["statements"] if "FROM items WHERE k = $1" in s["query"])
    assert [p["calls"] for p in lookup["points"]] == [40, 50, 60, 70, 80, 90]
    assert [p["changed"] for p in lookup["plans"]] == [False, True, True]
    assert [p["audit_id"] for p in lookup["plans"][1:]] == [
        lookup["points"][3]["audit_id"],
        lookup["points"][5]["audit_id"],
    ]
    resolved = [f for f in trends["findings"] if f["state"] == "resolved" and f["check"] == "missing-index"]
    assert resolved and resolved[0]["open_days"] is not None, trends["findings"]
    # The index the finding asked for was created: its prediction held against the lookup's change.
    line = next(
        p
        for p in report["baseline"]["predictions"]
        if p["finding"] == resolved[0]["id"] and "FROM items WHERE k = $1" in (p["query"] or "")
    )
    assert line["fix_kind"] == "missing-index" and line["predicted_saving_ms"] > 0
    assert line["realized_saving_ms"] == round(line["mean_before_ms"] - line["mean_after_ms"], 4) > 0
    assert report["history"]["track_record"]["missing-index"]["predictions"] >= 1
    html = tmp_path / "trends.html"
    html.write_text(render(report))

    def probe(driver):
        probe.sparks = driver.execute_script(
            "return [...document.querySelectorAll('#trends svg.spark polyline')]"
            ".map(p => p.getAttribute('points').trim().split(' ').length)"
        )
        probe.box = driver.execute_script(
            "const s = document.querySelector('#trends svg.spark');"
            "const r = s.getBoundingClientRect(); return [r.width, r.height]"
        )
        probe.lifecycle = driver.execute_script(
            "return [...document.querySelectorAll('#lifecycle + table tbody tr')].map(r => r.className)"
        )
        probe.trends = driver.execute_script("return document.getElementById('trends').innerText")
        probe.method = driver.execute_script("return document.getElementById('method').innerText")
        probe.predictions = driver.execute_script("return document.getElementById('predictions').innerText")

    page = open_report(html, screenshot_name=f"trends-{empty_db.server.version}.png", actions=probe)
    assert not [m for m in page.console if m.get("level") == "SEVERE"], page.console
    assert not [u for u in page.requests if u != html.resolve().as_uri() and not u.startswith("data:")]
    assert len(probe.sparks) >= 2 * 2 and max(probe.sparks) == 6  # mean time and calls, six windows
    assert probe.box[0] > 100 and probe.box[1] > 20  # drawn, not collapsed
    assert "lc-resolved" in probe.lifecycle
    assert "changed" in probe.trends and "Seq Scan on items" in probe.trends
    assert "Track record of predictions" in probe.method and "missing-index" in probe.method
    assert "missing-index" in probe.predictions and "FROM items WHERE k = $1" in probe.predictions
