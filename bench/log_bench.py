"""Log ingest speed: queryaudit vs pgBadger on the same PostgreSQL stderr log.

    .venv/bin/python bench/log_bench.py --size-mb 500 [--keep PATH]

Generates a `log_min_duration_statement = 0` style log (durations, execute lines with
DETAIL parameters, simple statements, multi-line statements, N+1 loops), then runs
queryaudit's ingest (in a child process, to measure its peak RSS) and pgBadger
(`-j 1`, single process) on it, and prints lines/second for both. Needs pgbadger on
PATH (Debian: apt-get install pgbadger). Goal: at least pgBadger's speed, under 300 MB.
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PREFIX = "%m [%p] %q%u@%d "
STATEMENTS = [
    "SELECT id, email, city FROM customers WHERE id = $1",
    "SELECT id, customer_id FROM orders WHERE status = $1 ORDER BY id LIMIT 40 OFFSET $2",
    "UPDATE orders SET status = $1 WHERE id = $2",
    "SELECT product_id, quantity FROM order_items WHERE order_id = $1",
    "INSERT INTO events (kind, payload, created_at) VALUES ($1, $2, now())",
]


def generate(path: Path, size_mb: int) -> int:
    rng = random.Random(1)
    target = size_mb * 1024 * 1024
    lines = 0
    with open(path, "w") as f:
        written, second = 0, 0
        while written < target:
            second += 1
            ts = f"2024-03-01 {second // 3600 % 24:02d}:{second // 60 % 60:02d}:{second % 60:02d}"
            chunk = []
            for n in range(2000):
                pid = 1000 + rng.randrange(50)
                head = f"{ts}.{n % 1000:03d} UTC [{pid}] app@shop "
                kind = rng.random()
                if kind < 0.7:
                    i = rng.randrange(len(STATEMENTS))
                    q = STATEMENTS[i]
                    params = ", ".join(f"${k} = '{rng.randrange(100000)}'" for k in range(1, q.count("$") + 1))
                    chunk.append(f"{head}LOG:  duration: {rng.random() * 5:.3f} ms  execute <unnamed>: {q}")
                    chunk.append(f"{head}DETAIL:  parameters: {params}")
                elif kind < 0.95:
                    chunk.append(f"{head}LOG:  duration: {rng.random() * 50:.3f} ms  statement: SELECT c.id, count(o.id) "
                                 f"FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.city = 'city{rng.randrange(99)}' "
                                 "GROUP BY c.id")
                else:
                    chunk.append(f"{head}LOG:  duration: {rng.random() * 900:.3f} ms  statement: SELECT order_id,")
                    chunk.append("\tsum(price * quantity)")
                    chunk.append(f"\tFROM order_items WHERE order_id > {rng.randrange(1000)} GROUP BY order_id")
            text = "\n".join(chunk) + "\n"
            f.write(text)
            written += len(text)
            lines += len(chunk)
    return lines


INGEST = """
import sys, time, resource
from queryaudit.logs.digest import ingest
t = time.perf_counter()
facts = ingest([sys.argv[1]], sys.argv[2])
dt = time.perf_counter() - t
print(facts.lines, dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, facts.executions, len(facts.n_plus_one),
      facts.malformed_lines)
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=500)
    ap.add_argument("--keep", type=Path, help="reuse/keep the generated log at this path")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="qa-logbench-"))
    log = args.keep or workdir / "postgresql.log"
    try:
        if not log.exists():
            t = time.perf_counter()
            n = generate(log, args.size_mb)
            print(f"generated {log} ({log.stat().st_size / 2**20:.0f} MB, {n} lines) in {time.perf_counter() - t:.1f} s")
        size_mb = log.stat().st_size / 2**20
        out = subprocess.run([sys.executable, "-c", INGEST, str(log), PREFIX], capture_output=True, text=True,
                             check=True).stdout.split()
        lines, seconds, rss_kb = int(out[0]), float(out[1]), int(out[2])
        print(f"queryaudit: {lines} lines in {seconds:.1f} s = {lines / seconds:,.0f} lines/s "
              f"({size_mb / seconds:.1f} MB/s), peak RSS {rss_kb / 1024:.0f} MB, {out[3]} executions, "
              f"{out[4]} N+1 patterns, {out[5]} malformed lines")
        if shutil.which("pgbadger") is None:
            print("pgbadger: not installed (Debian: apt-get install pgbadger)")
            return
        t = time.perf_counter()
        subprocess.run(["pgbadger", "-j", "1", "-f", "stderr", "--prefix", PREFIX, "-q", "-o",
                        str(workdir / "out.txt"), "-x", "text", str(log)], check=True, capture_output=True)
        pg_seconds = time.perf_counter() - t
        print(f"pgbadger -j 1: {lines} lines in {pg_seconds:.1f} s = {lines / pg_seconds:,.0f} lines/s "
              f"({size_mb / pg_seconds:.1f} MB/s)")
        print(f"speed ratio queryaudit/pgbadger: {pg_seconds / seconds:.2f}x")
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
