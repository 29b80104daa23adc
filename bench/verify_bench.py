"""Fix verification on the demo's data (issue 14), run on demand, not in CI.

Loads the shop fixture on a throwaway cluster (embedded PostgreSQL 18, or the system
PostgreSQL 15 with --pg15), runs its workload, audits it with fix verification on, and
prints for each fix what the check estimated and what was measured: the fix tried, the
timed runs before and after (EXPLAIN ANALYZE, interleaved), the verdict, and the
saving the finding is ranked by. --repeat N audits N times, to see the verdict hold.

Run from a checkout:  .venv/bin/python bench/verify_bench.py [--pg15] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from queryaudit.advisor.stage import AdvisorOptions  # noqa: E402
from queryaudit.demo import fixtures  # noqa: E402
from queryaudit.demo.cluster import embedded_bin_dir, start_cluster, system_bin_dir  # noqa: E402
from queryaudit.pipeline import AuditOptions, analyse, collect_live  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pg15", action="store_true")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    cluster = start_cluster(system_bin_dir(15) if args.pg15 else embedded_bin_dir())
    try:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE shop")
            version = conn.execute("SHOW server_version").fetchone()[0]
        dsn = cluster.dsn("shop")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        fixtures.load("shop", dsn)
        print(f"PostgreSQL {version}, shop fixture, workload 2 rounds")
        for n in range(args.repeat):
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("SELECT pg_stat_statements_reset()")
            fixtures.run_workload("shop", dsn, rounds=2)
            started = time.monotonic()
            snap = collect_live(dsn, AuditOptions(top=20, advisor=AdvisorOptions(enabled=False)))
            report = analyse(snap)
            fv = snap.fix_verification
            print(
                f"\naudit {n + 1}: {time.monotonic() - started:.1f} s, verification {fv.duration_ms / 1000:.1f} s "
                f"of the {fv.budget_s:.1f} s left of the EXPLAIN budget"
            )
            by_id = {f["id"]: f for f in report["findings"]}
            rank = {f["id"]: i for i, f in enumerate(report["findings"], 1)}
            for m in fv.measurements:
                f = by_id.get(m.finding_id, {})
                heuristic = (f.get("heuristic_saving") or f.get("predicted_saving") or {}).get("share_of_total_time")
                saving = (f.get("predicted_saving") or {}).get("share_of_total_time")
                print(f"- {m.check} (rank {rank.get(m.finding_id)}, {f.get('severity')}): {m.fix or '-'}")
                print(
                    f"    {m.method}/{m.outcome}: before {m.before_ms} ms, after {m.after_ms} ms"
                    + (
                        f"; {m.before.get('round_trips'):.0f} -> {m.after.get('round_trips'):.0f} round trips"
                        if m.before.get("round_trips")
                        else ""
                    )
                    + (
                        f"; temp blocks written {m.before['temp_written']:.0f} -> {m.after['temp_written']:.0f}"
                        if "temp_written" in m.before
                        else ""
                    )
                )
                if m.steps and m.kind == "work_mem":
                    print(
                        "    work_mem steps: "
                        + ", ".join(
                            f"{s['work_mem']} spills {s['spilled_kb']} kB"
                            if s["spilled_kb"]
                            else f"{s['work_mem']} fits in {s['in_memory_kb']} kB"
                            for s in m.steps
                        )
                    )
                print(
                    f"    saving: check's estimate {heuristic if heuristic is None else f'{heuristic:.1%}'}, "
                    f"ranked by {saving if saving is None else f'{saving:.1%}'} ({f.get('saving_method')})"
                )
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
