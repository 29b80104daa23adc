"""What one scheduled audit costs the server: the server time of the audit's own statements.

    .venv/bin/python bench/hourly_audit_cost.py [--dsn DSN] [--rounds 3] [--audits 3]

Without --dsn it starts a throwaway cluster (the embedded PostgreSQL 18) and loads the
shop fixture (scale 1). Each round runs the shop workload, then one audit per mode,
recorded in a SQLite store as the README's cron line does:
- `--no-explain` (no plan: what the cron example ran before plans were kept);
- `--explain --explain-budget 0` (plain EXPLAIN of the top statements with the values plan
  capture chose, no ANALYZE: the hourly setting the README recommends);
- `--explain-budget 10` (EXPLAIN ANALYZE within 10 s, for comparison).
The auditor's statements carry the `/* queryaudit */` comment (queryaudit.connect.MARKER):
their calls and server time (pg_stat_statements total_exec_time, plus plan time when
pg_stat_statements.track_planning is on) are read before and after each audit; the
difference is the audit's cost. pg_stat_statements is never reset. Not a test: run it on
demand and quote the load average beside the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from queryaudit.connect import OWN_STATEMENT_PATTERN
from queryaudit.demo import fixtures

MODES = {
    "no plans (--no-explain)": ["--no-explain"],
    "plain EXPLAIN (--explain-budget 0)": ["--explain", "--explain-budget", "0"],
    "EXPLAIN ANALYZE (--explain-budget 10)": ["--explain", "--explain-budget", "10"],
}


def own_cost(admin: psycopg.Connection) -> tuple[int, float]:
    # The audit's statements on any nesting level (EXPLAIN ANALYZE's inner statement included).
    calls, ms = admin.execute(
        "SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0) FROM pg_stat_statements WHERE query LIKE %s",
        (OWN_STATEMENT_PATTERN,),
    ).fetchone()
    return int(calls), float(ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cluster = None
    dsn = args.dsn
    if dsn is None:
        from queryaudit.demo.cluster import embedded_bin_dir, start_cluster

        cluster = start_cluster(embedded_bin_dir())
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE shop")
        dsn = cluster.dsn("shop")
        fixtures.load("shop", dsn)
    results: dict[str, list[tuple[int, float, float]]] = {m: [] for m in MODES}
    store = Path(tempfile.mkdtemp(prefix="qa-bench-")) / "history.db"
    try:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            for _ in range(args.rounds):
                for mode, flags in MODES.items():
                    fixtures.run_workload("shop", dsn)
                    calls0, ms0 = own_cost(admin)
                    started = time.monotonic()
                    done = subprocess.run(
                        [
                            sys.executable,
                            "-m",
                            "queryaudit",
                            "audit",
                            "--dsn",
                            dsn,
                            "--top",
                            "20",
                            "--store",
                            str(store),
                            "--target",
                            "shop",
                            *flags,
                            "--json",
                            os.devnull,
                        ],
                        capture_output=True,
                        text=True,
                    )
                    wall = time.monotonic() - started
                    if done.returncode != 0:
                        raise SystemExit(f"{mode}: audit failed: {done.stderr.strip()}")
                    calls1, ms1 = own_cost(admin)
                    results[mode].append((calls1 - calls0, ms1 - ms0, wall))
            version = admin.execute("SHOW server_version").fetchone()[0]
    finally:
        if cluster:
            cluster.destroy()
    print(
        f"PostgreSQL {version}, shop fixture (scale 1), top 20 statements, {args.rounds} audits per mode; "
        f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} "
        f"on {os.cpu_count()} cores"
    )
    for mode, runs in results.items():
        server = [ms for _, ms, _ in runs]
        print(
            f"{mode:40} statements {statistics.median(c for c, _, _ in runs):5.0f}  "
            f"server time median {statistics.median(server):8.1f} ms (min {min(server):.1f}, max {max(server):.1f})"
            f"  wall {statistics.median(w for _, _, w in runs):5.1f} s"
        )


if __name__ == "__main__":
    main()
