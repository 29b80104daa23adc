"""Plan coverage on TPC-H: how many of the 22 queries the audit plans, and with EXPLAIN ANALYZE.

The 22 specification queries (bench/tpch.py, validation parameters) run once each as an
application runs them, literals in the text, so pg_stat_statements normalizes them
(`date $1 - interval $2 day`, `substring(c_phone FROM $3 FOR $4) IN ($5, ...)`). Then
`queryaudit audit` reads pg_stat_statements with the default EXPLAIN budget, and this
prints, per query, how it was planned and where its values came from, the totals and
the audit's wall time.

    .venv/bin/python bench/tpch_coverage.py                 # throwaway PostgreSQL 15 cluster, SF1
    .venv/bin/python bench/tpch_coverage.py --pg 18 --sf 0.1
    .venv/bin/python bench/tpch_coverage.py --dsn postgresql://.../empty_db   # an empty database to load
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import tpch  # noqa: E402

from queryaudit.demo.cluster import embedded_bin_dir, start_cluster, system_bin_dir  # noqa: E402


def run_workload(dsn: str) -> dict[str, str]:
    """Each query once, literals in the text; returns query name -> queryid."""
    queryids = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        for name, text in tpch.QUERIES.items():
            plan = conn.execute("EXPLAIN (VERBOSE, FORMAT JSON) " + text).fetchone()[0][0]
            queryids[name] = str(plan["Query Identifier"])
        conn.execute("SELECT pg_stat_statements_reset()")
        for name, text in tpch.QUERIES.items():
            started = time.monotonic()
            conn.execute(text).fetchall()
            print(f"  {name} ran in {time.monotonic() - started:.2f} s", flush=True)
    return queryids


def audit(dsn: str, out: Path, top: int) -> float:
    """`queryaudit audit` as a user runs it: default budget; returns wall seconds."""
    started = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "queryaudit.cli",
            "audit",
            "--dsn",
            dsn,
            "--top",
            str(top),
            "--json",
            str(out / "report.json"),
            "--save-snapshot",
            str(out / "snapshot.json"),
        ],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    return time.monotonic() - started


def coverage(out: Path, queryids: dict[str, str]) -> dict:
    report = json.loads((out / "report.json").read_text())
    snapshot = json.loads((out / "snapshot.json").read_text())
    by_id = {q["queryid"]: q for q in report["queries"]}
    captures = {p["queryid"]: p for p in snapshot["plans"]}
    rows = []
    for name, queryid in queryids.items():
        entry, capture = by_id.get(queryid) or {}, captures.get(queryid) or {}
        plan = capture.get("plan") or {}
        rows.append(
            {
                "query": name,
                "coverage": entry.get("plan_coverage", "not-reported"),
                "explain_ms": capture.get("duration_ms"),
                "execution_ms": plan.get("Execution Time"),
                "why": capture.get("skipped_reason") or "",
                "values": capture.get("parameter_source") or "",
                "match": entry.get("workload_match") or {},
            }
        )
    planned = sum(1 for r in rows if r["coverage"] in ("analyzed", "generic", "explained"))
    analyzed = sum(1 for r in rows if r["coverage"] == "analyzed")
    return {
        "rows": rows,
        "planned": planned,
        "analyzed": analyzed,
        "report_summary": report["plan_coverage"]["summary"],
        "explain_s": sum((r["explain_ms"] or 0) for r in rows) / 1000,
        "workload": report["plan_coverage"].get("workload") or {},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sf", type=float, default=1)
    parser.add_argument("--pg", choices=["15", "18"], default="15", help="throwaway cluster version (without --dsn)")
    parser.add_argument("--dsn", help="an empty database to load instead of a throwaway cluster")
    parser.add_argument("--top", type=int, default=25, help="statements the audit reports on (22 queries + a few)")
    args = parser.parse_args()
    cluster = None
    if args.dsn is None:
        bin_dir = system_bin_dir(15) if args.pg == "15" else embedded_bin_dir()
        cluster = start_cluster(bin_dir, {"shared_buffers": "512MB", "work_mem": "64MB", "max_parallel_workers": "2"})
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE tpch")
        dsn = cluster.dsn("tpch")
    else:
        dsn = args.dsn
    try:
        with psycopg.connect(dsn) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
        print(f"TPC-H SF{args.sf:g} on PostgreSQL {version}: loading", flush=True)
        print(f"  loaded in {tpch.load(dsn, args.sf, fk_indexes=True):.1f} s", flush=True)
        queryids = run_workload(dsn)
        with tempfile.TemporaryDirectory(prefix="tpch-coverage-") as tmp:
            seconds = audit(dsn, Path(tmp), args.top)
            result = coverage(Path(tmp), queryids)
    finally:
        if cluster is not None:
            cluster.destroy()
    print(
        f"\n{'query':6} {'plan':10} {'EXPLAIN ms':>10} {'exec ms':>9} {'workload':>15} {'rows':>7}  "
        "values / why not ANALYZE"
    )
    for r in result["rows"]:
        note = r["why"] or r["values"]
        match = r["match"]
        verdict = (match.get("verdict") or "") + ("*" if match.get("first_sample") else "")
        rows = f"x{match['rows_ratio']:.3g}" if match.get("rows_ratio") is not None else ""
        print(
            f"{r['query']:6} {r['coverage']:10} {r['explain_ms'] or 0:10.0f} {r['execution_ms'] or 0:9.0f} "
            f"{verdict:>15} {rows:>7}  {note[:110]}"
        )
    print(
        f"\nTPC-H: planned {result['planned']}/22, {result['analyzed']} with EXPLAIN ANALYZE; "
        f"EXPLAINs took {result['explain_s']:.1f} s, the whole audit {seconds:.1f} s (default budget)"
    )
    print(f"report header: {result['report_summary']}")
    w = result["workload"]
    if w:
        print(
            f"plans against the workload (pg_stat_statements per call): {w['representative']}/{w['compared']} "
            f"representative within 2x, {w['found_by_search']} of them found by the search (* above), "
            f"{w['unlike']} unlike"
        )


if __name__ == "__main__":
    main()
