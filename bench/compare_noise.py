"""How far two runs of one unchanged workload drift apart, and what `queryaudit compare` calls it.

Loads the shop fixture into a fresh cluster, warms it up, then runs the shop's workload
`--runs` times (VACUUM and a pg_stat_statements reset before each, an audit after each) and
compares each run with the one before, as `queryaudit compare` does. Nothing changed
between the runs, so every "improved" or "regressed" is a false alarm. Per statement it
prints the largest change of the mean time, of the fastest call and of the work per call
(shared and temp blocks, rows) seen between consecutive runs. Under `tests/busy.py` busy
loops hold the cores meanwhile, as a developer's machine may be:

    .venv/bin/python tests/busy.py --cores 2 -- .venv/bin/python bench/compare_noise.py --runs 6
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

from queryaudit.before_after import match_statements, work_per_call
from queryaudit.demo.cluster import embedded_bin_dir, start_cluster, system_bin_dir
from queryaudit.demo.fixtures import load, run_workload


def audit(dsn: str, path: Path) -> dict:
    cli = Path(sys.executable).with_name("queryaudit")
    subprocess.run(
        [str(cli), "audit", "--dsn", dsn, "--no-explain", "--json", str(path)], check=True, capture_output=True
    )
    return json.loads(path.read_text())


def measure(bin_dir: Path, runs: int, out: Path) -> list[list[dict]]:
    """The compare rows of each consecutive pair of runs."""
    cluster = start_cluster(bin_dir, {"autovacuum": "off", "checkpoint_timeout": "1h"})
    try:
        dsn = cluster.dsn()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        load("shop", dsn)
        run_workload("shop", dsn, rounds=3)
        audit(dsn, out / "warm-up.json")
        reports = []
        for i in range(runs):
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("VACUUM")
                conn.execute("SELECT pg_stat_statements_reset()")
            run_workload("shop", dsn)
            reports.append(audit(dsn, out / f"run{i}.json"))
        return [match_statements(b, a) for b, a in zip(reports, reports[1:], strict=False)]
    finally:
        cluster.destroy()


def factor(x: float, y: float) -> float:
    """How many times one of x and y is the other, whichever way: 2.0 for 1 -> 2 and 2 -> 1."""
    return math.exp(abs(math.log(y / x)))


def summarise(pairs: list[list[dict]]) -> None:
    worst: dict[str, dict] = {}
    for rows in pairs:
        for r in rows:
            b, a = r["before"], r["after"]
            if not b or not a or not b["mean_exec_time_ms"] or not a["mean_exec_time_ms"]:
                continue
            time = factor(b["mean_exec_time_ms"], a["mean_exec_time_ms"])
            fb, fa = b.get("min_exec_time_ms"), a.get("min_exec_time_ms")
            fastest = factor(fb, fa) if fb and fa else 1.0
            wb, wa = work_per_call(b) or (), work_per_call(a) or ()
            ratios = [factor(x, y) for x, y in zip(wb, wa, strict=True) if x > 0 and y > 0]
            work = max(ratios, default=1.0)
            entry = worst.setdefault(
                " ".join(r["query"].split())[:58], {"time": 1.0, "fastest": 1.0, "work": 1.0, "called": 0}
            )
            entry["time"] = max(entry["time"], time)
            entry["fastest"] = max(entry["fastest"], fastest)
            entry["work"] = max(entry["work"], work)
            entry["called"] += r["status"] in ("improved", "regressed")
    print(f"{'statement':58}  {'time x':>7}  {'fastest x':>9}  {'work x':>7}  called")
    for query, e in sorted(worst.items(), key=lambda kv: -kv[1]["time"]):
        print(f"{query:58}  {e['time']:7.2f}  {e['fastest']:9.2f}  {e['work']:7.2f}  {e['called']}/{len(pairs)}")
    alarms = sum(r["status"] in ("improved", "regressed") for rows in pairs for r in rows)
    print(f"false alarms: {alarms} in {len(pairs)} comparisons; load average {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--version", choices=("pg15", "pg18"), default="pg18")
    args = parser.parse_args()
    bin_dir = system_bin_dir(15) if args.version == "pg15" else embedded_bin_dir()
    if bin_dir is None:
        sys.exit(f"{args.version}: binaries not found")
    with tempfile.TemporaryDirectory() as tmp:
        summarise(measure(bin_dir, args.runs, Path(tmp)))


if __name__ == "__main__":
    main()
