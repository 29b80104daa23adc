"""Scale benchmark: 2,000 tables and 10,000 distinct statements in pg_stat_statements;
the audit (collect + checks + report, EXPLAIN excluded) must finish in under 3 s wall
and 150 MB peak RSS on 2 cores.

Run from a checkout:  .venv/bin/python bench/scale_bench.py  [--tables 2000 --statements 10000]
It starts its own embedded PostgreSQL 18 (pg_stat_statements.max = 10000), builds the
schema, runs the statements once each, then times `queryaudit audit` as a user runs it
and prints the audit's own server cost from pg_stat_statements.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from queryaudit.connect import OWN_STATEMENT_PATTERN  # noqa: E402
from queryaudit.demo.cluster import embedded_bin_dir, start_cluster  # noqa: E402


def build(dsn: str, tables: int, statements: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        with conn.transaction():
            for t in range(tables):
                conn.execute(f"CREATE TABLE t{t} (id bigint PRIMARY KEY, a int, b int, c text, d timestamptz)")
                if t % 4 == 0:
                    conn.execute(f"CREATE INDEX ON t{t} (a)")
                if t % 10 == 0 and t > 0:
                    conn.execute(f"ALTER TABLE t{t} ADD COLUMN parent_id bigint REFERENCES t{t - 1} (id)")
        conn.execute("ANALYZE")
        conn.execute("SELECT pg_stat_statements_reset()")
        # Distinct statements: table x shape x column choice. Constants are normalized by
        # pg_stat_statements, so distinctness comes from structure.
        shapes = [
            "SELECT id, c FROM t{t} WHERE a = {v}",
            "SELECT count(*) FROM t{t} WHERE b > {v}",
            "SELECT * FROM t{t} WHERE id = {v} AND a = {v}",
            "SELECT a, count(*) FROM t{t} GROUP BY a ORDER BY a LIMIT {v}",
            "UPDATE t{t} SET b = b + 1 WHERE id = {v}",
        ]
        n = 0
        for t in range(tables):
            for shape in shapes:
                if n >= statements:
                    return
                conn.execute(shape.format(t=t, v=t % 97 + 1))
                n += 1
        # More distinct statements than tables x shapes: vary the expression's structure
        # (constants are normalized, so only structure makes a statement distinct).
        k = 0
        while n < statements:
            t = n % tables
            k = n // tables
            conn.execute(f"SELECT id FROM t{t} WHERE b = a{' + b' * k} + {n}")
            n += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=2000)
    parser.add_argument("--statements", type=int, default=10000)
    parser.add_argument(
        "--save-snapshot",
        type=Path,
        help="also save the audited snapshot here (to profile the "
        "checks and the report without the server: audit --snapshot PATH)",
    )
    parser.add_argument("--profile", type=Path, help="run the audit under cProfile, stats written here")
    args = parser.parse_args()

    cluster = start_cluster(
        embedded_bin_dir(), {"pg_stat_statements.max": "10000", "max_locks_per_transaction": "4096"}
    )
    try:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE scale")
        dsn = cluster.dsn("scale")
        started = time.monotonic()
        build(dsn, args.tables, args.statements)
        with psycopg.connect(dsn) as conn:
            count = conn.execute(
                "SELECT count(*) FROM pg_stat_statements WHERE dbid = "
                "(SELECT oid FROM pg_database WHERE datname = 'scale')"
            ).fetchone()[0]
        print(
            f"built {args.tables} tables, {count} statements in pg_stat_statements in "
            f"{time.monotonic() - started:.1f} s"
        )

        out = Path(tempfile.mkdtemp()) / "scale.json"
        cmd = [sys.executable, "-m", "queryaudit.cli", "audit", "--dsn", dsn, "--top", "20", "--json", str(out)]
        help_text = subprocess.run(
            [sys.executable, "-m", "queryaudit.cli", "audit", "--help"], capture_output=True, text=True
        ).stdout
        if "--no-explain" in help_text:
            cmd.append("--no-explain")  # the EXPLAIN budget is excluded from this target
        if args.save_snapshot:
            cmd += ["--save-snapshot", str(args.save_snapshot)]
        if args.profile:
            cmd[1:1] = ["-m", "cProfile", "-o", str(args.profile)]  # python -m cProfile -o P -m queryaudit.cli
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "120"})
        wall = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if result.returncode != 0:
            print(result.stderr)
            sys.exit(1)
        report = json.loads(out.read_text())
        peak_mb = after.ru_maxrss / 1024  # Linux: KiB
        print(
            f"audit: {wall:.2f} s wall, "
            f"{after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime:.2f} s CPU, "
            f"peak RSS {peak_mb:.0f} MB, {report['window']['statement_count']} statements, "
            f"{len(report['findings'])} findings"
        )
        print(
            f"targets: wall < 3 s {'OK' if wall < 3 else 'MISSED'}, RSS < 150 MB {'OK' if peak_mb < 150 else 'MISSED'}"
        )
        with psycopg.connect(dsn) as conn:
            own = conn.execute(
                "SELECT count(*), coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0) "
                "FROM pg_stat_statements WHERE query LIKE %s",
                (OWN_STATEMENT_PATTERN,),
            ).fetchone()
            rows = conn.execute(
                "SELECT calls, round(total_exec_time::numeric, 1), "
                "left(regexp_replace(query, '\\s+', ' ', 'g'), 90) "
                "FROM pg_stat_statements WHERE query LIKE %s ORDER BY total_exec_time DESC LIMIT 5",
                (OWN_STATEMENT_PATTERN,),
            ).fetchall()
        cost = report.get("extras", {}).get("audit_cost", {})
        print(
            f"the audit's own server cost (client-side count): {cost.get('statements')} statements, "
            f"{cost.get('ms')} ms round trip"
        )
        print(
            f"  still in pg_stat_statements (max 10000, so it evicts): {own[0]} distinct statements, "
            f"{own[1]} calls, {own[2]:.1f} ms server time"
        )
        for calls, ms, text in rows:
            print(f"  {ms:>8} ms  {calls:>4} calls  {text}")
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
