"""Log ingest speed: queryaudit vs pgBadger, side by side on the same stderr logs.

    .venv/bin/python bench/log_bench.py [--size-mb 50] [--repeat 3] [--keep DIR]
    .venv/bin/python bench/log_bench.py --log postgresql.log --prefix '%m [%p] %q%u@%d %c %x '

Without --log, benches two differently shaped logs of --size-mb: a real PostgreSQL 15 log
replayed (bench/pg15_log.py: bench/pg15_seed.log with new times, pids, session ids, xids,
durations and literals; prefix `%m [%p] %q%u@%d %c %x `), and one generated here. The
generated one is shaped like what PostgreSQL 15 writes with `log_min_duration_statement =
0` and `log_lock_waits = on` under an application using the extended protocol: per
request BEGIN, a parent query and its single-row lookups (parse / bind / execute lines,
DETAIL parameters), an UPDATE, COMMIT; sessions interleaved line by line; multi-line
statements, unique violations (ERROR + DETAIL + STATEMENT), lock waits (still waiting /
acquired with CONTEXT and STATEMENT), deadlocks, checkpoints and connection lines.
Then, on each log, interleaved --repeat times so that each pair of runs shares the
machine's load: queryaudit's one pass (ingest + lock analysis + N+1, in a child process
from interpreter start, to measure its peak RSS) and pgBadger `-j 1 -x json`. Prints the
median times, the median of the pairs' ratios, both peak RSS, both counts of executions
(they must agree) and the load average during the runs.
Needs pgbadger on PATH (Debian: apt-get install pgbadger).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pg15_log

PREFIX = "%m [%p] %q%u@%d "
PARENT = "SELECT id, customer_id, status, total FROM orders WHERE customer_id = $1 ORDER BY id DESC LIMIT 40"
CHILD = "SELECT id, name, price FROM products WHERE id = $1"
UPDATE = "UPDATE customers SET last_seen = now() WHERE id = $1"
INSERT = "INSERT INTO events (kind, payload, created_at) VALUES ($1, $2, now())"
REPORT = (
    "SELECT c.city, count(o.id), sum(o.total)\n\tFROM customers c JOIN orders o ON o.customer_id = c.id\n"
    "\tWHERE c.city = '{city}' AND o.created_at > now() - interval '1 day'\n\tGROUP BY c.city"
)


class Session:
    """One backend: a stream of requests, each a few log entries, written one entry at a time."""

    def __init__(self, rng: random.Random, pid: int, user: str, named: bool):
        self.rng, self.pid, self.user, self.named = rng, pid, user, named
        self.entries: list[list[str]] = []  # entries still to write, each a list of (message) lines

    def _extended(self, query: str, params: list[str], name: str, ms: float) -> None:
        p = ", ".join(f"${i} = '{v}'" for i, v in enumerate(params, 1))
        if not self.named or name == "<unnamed>":
            self.entries.append([f"LOG:  duration: {ms * 0.3:.3f} ms  parse {name}: {query}"])
            self.entries.append(
                [f"LOG:  duration: {ms * 0.2:.3f} ms  bind {name}: {query}", f"DETAIL:  parameters: {p}"]
            )
        else:
            self.entries.append(
                [f"LOG:  duration: {ms * 0.2:.3f} ms  bind {name}: {query}", f"DETAIL:  parameters: {p}"]
            )
        self.entries.append([f"LOG:  duration: {ms:.3f} ms  execute {name}: {query}", f"DETAIL:  parameters: {p}"])

    def request(self) -> None:
        rng = self.rng
        self.entries.append([f"LOG:  duration: {rng.random() * 0.02:.3f} ms  statement: BEGIN"])
        customer = rng.randrange(1, 100_000)
        self._extended(PARENT, [str(customer)], "S_1" if self.named else "<unnamed>", rng.random() * 2)
        for _ in range(rng.randrange(5, 40)):
            self._extended(
                CHILD, [str(rng.randrange(1, 50_000))], "S_2" if self.named else "<unnamed>", 0.01 + rng.random() * 0.03
            )
        kind = rng.random()
        if kind < 0.02:  # a unique violation
            self.entries.append([f"LOG:  duration: 0.050 ms  parse <unnamed>: {INSERT}"])
            self.entries.append(
                [
                    'ERROR:  duplicate key value violates unique constraint "events_pkey"',
                    f"DETAIL:  Key (id)=({rng.randrange(10**6)}) already exists.",
                    f"STATEMENT:  {INSERT}",
                ]
            )
            self.entries.append(["LOG:  duration: 0.012 ms  statement: ROLLBACK"])
            return
        if kind < 0.30:
            self._extended(INSERT, ["view", f'{{"page": {rng.randrange(100)}}}'], "<unnamed>", rng.random() * 0.5)
        self._extended(UPDATE, [str(customer)], "<unnamed>", rng.random() * 0.4)
        if kind > 0.97:
            self.entries.append(
                [
                    f"LOG:  duration: {rng.random() * 900:.3f} ms  statement: "
                    + REPORT.format(city=f"city{rng.randrange(99)}")
                ]
            )
        self.entries.append([f"LOG:  duration: {rng.random() * 0.05:.3f} ms  statement: COMMIT"])


def _lock_wait(rng: random.Random, pid: int, holder: int, deadlock: bool) -> list[list[str]]:
    tx = rng.randrange(10**6, 10**7)
    row = f"({rng.randrange(100)},{rng.randrange(1, 60)})"
    stmt = "UPDATE customers SET last_seen = now() WHERE id = $1"
    ctx = f'CONTEXT:  while updating tuple {row} in relation "customers"'
    if deadlock:
        other = f"UPDATE customers SET balance = balance - 1 WHERE id = {rng.randrange(100)}"
        return [
            [
                f"LOG:  process {pid} detected deadlock while waiting for ShareLock on transaction {tx} "
                "after 1000.090 ms",
                f"DETAIL:  Process holding the lock: {holder}. Wait queue: .",
                ctx,
                f"STATEMENT:  {stmt}",
            ],
            [
                "ERROR:  deadlock detected",
                f"DETAIL:  Process {pid} waits for ShareLock on transaction {tx}; blocked by process {holder}.",
                f"\tProcess {holder} waits for ShareLock on transaction {tx + 1}; blocked by process {pid}.",
                f"\tProcess {pid}: {stmt}",
                f"\tProcess {holder}: {other}",
                "HINT:  See server log for query details.",
                ctx,
                f"STATEMENT:  {stmt}",
            ],
        ]
    waited = 1000 + rng.random() * 3000
    return [
        [
            f"LOG:  process {pid} still waiting for ShareLock on transaction {tx} after 1000.072 ms",
            f"DETAIL:  Process holding the lock: {holder}. Wait queue: {pid}.",
            ctx,
            f"STATEMENT:  {stmt}",
        ],
        [
            f"LOG:  process {pid} acquired ShareLock on transaction {tx} after {waited:.3f} ms",
            ctx,
            f"STATEMENT:  {stmt}",
        ],
    ]


def generate(path: Path, size_mb: int, seed: int = 1) -> int:
    """Write about size_mb MiB of log; returns the number of lines."""
    rng = random.Random(seed)
    target = size_mb * 2**20
    sessions = [Session(rng, 20000 + i, f"app{i % 3}", named=i % 2 == 0) for i in range(40)]
    clock = 1_709_287_200.0  # 2024-03-01 10:00:00 UTC
    written = lines = 0
    with open(path, "w") as f:
        while written < target:
            out = []
            for _ in range(5000):
                clock += rng.random() * 0.0004
                second = int(clock)
                ts = (
                    time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second)) + f".{int((clock - second) * 1000):03d} UTC"
                )
                r = rng.random()
                if r < 0.0002:
                    out.append(f"{ts} [{rng.randrange(100, 200)}] LOG:  checkpoint starting: time")
                    continue
                s = sessions[rng.randrange(len(sessions))]
                if not s.entries:
                    if r < 0.05:  # between two requests: a lock wait behind another session's row lock
                        holder = sessions[(s.pid - 20000 + 1 + rng.randrange(len(sessions) - 1)) % len(sessions)].pid
                        s.entries.extend(_lock_wait(rng, s.pid, holder, deadlock=r < 0.01))
                    s.request()
                head = f"{ts} [{s.pid}] {s.user}@shop "
                for line in s.entries.pop(0):
                    out.append(line if line.startswith("\t") else head + line)
            text = "\n".join(out) + "\n"
            f.write(text)
            written += len(text)
            lines += text.count("\n")
    return lines


INGEST = """
import json, sys
from queryaudit.logs.stage import read_logs
from queryaudit.snapshot import ServerInfo, Snapshot
snap = Snapshot(server=ServerInfo(version_num=0, version="", database="shop"), collected_at="now")
read_logs(snap, [sys.argv[1]], sys.argv[2], jobs=int(sys.argv[3]))
facts = snap.logs
print(json.dumps({"lines": facts.lines, "errors": [e.message for e in snap.errors],
                  "executions": facts.executions, "n_plus_one": len(facts.n_plus_one),
                  "malformed": facts.malformed_lines, "lock_waits": len(snap.lock_log.waits) if snap.lock_log else 0,
                  "deadlocks": len(snap.lock_log.deadlocks) if snap.lock_log else 0}))
"""


def run_queryaudit(log: Path, prefix: str, jobs: int = 1) -> dict:
    """In a child process: its wall time from start (interpreter and imports included), its
    CPU time and its peak RSS."""
    root = Path(__file__).resolve().parent.parent
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", INGEST, str(log), prefix, str(jobs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    if status != 0:
        raise SystemExit(f"queryaudit failed: {proc.stderr.read().decode()[-2000:]}")
    result = json.loads(proc.stdout.read())
    if result["errors"]:
        raise SystemExit(f"queryaudit reported errors: {result['errors']}")
    # wait4 reports the child with the children it waited for (--jobs: the pieces' processes):
    # CPU summed, RSS the largest process's.
    result.update(seconds=seconds, cpu=usage.ru_utime + usage.ru_stime, rss_kb=usage.ru_maxrss)
    return result


def run_pgbadger(log: Path, prefix: str, workdir: Path) -> dict:
    t = time.perf_counter()
    out = workdir / "pgbadger.json"
    proc = subprocess.Popen(
        [
            "pgbadger",
            "-j",
            "1",
            "-f",
            "stderr",
            "--prefix",
            prefix,
            "-q",
            "-o",
            str(out),
            "--pid-dir",
            str(workdir),  # not /tmp/pgbadger.pid, which another run may hold
            "-x",
            "json",
            str(log),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS and CPU time
    seconds = time.perf_counter() - t
    if status != 0:
        raise SystemExit(f"pgbadger failed: {proc.stderr.read().decode()[-500:]}")
    overall = json.loads(out.read_text()).get("overall_stat", {})
    return {
        "seconds": seconds,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_kb": usage.ru_maxrss,
        "executions": int(overall.get("queries_number", 0)),
    }


def bench_log(log: Path, prefix: str, repeat: int, jobs: int, workdir: Path) -> dict:
    """Both tools on one log, interleaved (queryaudit, pgBadger, queryaudit, ...) so that each
    pair of runs shares the machine's load; the ratio is taken per pair, then the median."""
    pairs = []
    for _ in range(repeat):
        load = os.getloadavg()[0]
        qa = run_queryaudit(log, prefix, jobs)
        pg = run_pgbadger(log, prefix, workdir) if shutil.which("pgbadger") else None
        load = (load + os.getloadavg()[0]) / 2
        pairs.append((qa, pg, load))
        ratio = f"{pg['seconds'] / qa['seconds']:.1f}x" if pg else "-"
        print(
            f"  run {len(pairs)}: queryaudit {qa['seconds']:.2f} s, pgbadger "
            f"{pg['seconds'] if pg else float('nan'):.1f} s, ratio {ratio}, load {load:.1f}",
            flush=True,
        )
    return {"log": log, "prefix": prefix, "pairs": pairs}


def _report(result: dict, jobs: int) -> None:
    log, pairs = result["log"], result["pairs"]
    qa_runs = [qa for qa, _, _ in pairs]
    qa = qa_runs[0]
    size_mb = log.stat().st_size / 2**20
    wall_qa = statistics.median(r["seconds"] for r in qa_runs)
    cpu_qa = statistics.median(r["cpu"] for r in qa_runs)
    rss_qa = max(r["rss_kb"] for r in qa_runs) / 1024
    loads = [load for _, _, load in pairs]
    size = f"{size_mb:.{0 if size_mb >= 10 else 1}f}"
    print(
        f"{log.name} ({size} MB, {qa['lines']:,} lines, prefix '{result['prefix']}'), "
        f"{len(pairs)} interleaved runs, load average {min(loads):.1f}-{max(loads):.1f}"
    )
    print(
        f"  queryaudit ({'one process' if jobs == 1 else f'--log-jobs {jobs}'}): median {wall_qa:.2f} s wall, "
        f"{cpu_qa:.2f} s CPU ({qa['lines'] / wall_qa:,.0f} lines/s), peak RSS {rss_qa:.0f} MB; "
        f"{qa['executions']:,} executions, {qa['n_plus_one']} N+1 patterns, {qa['lock_waits']} lock waits, "
        f"{qa['deadlocks']} deadlocks, {qa['malformed']} malformed lines"
    )
    if pairs[0][1] is None:
        print("  pgbadger: not installed (Debian: apt-get install pgbadger)")
        return
    pg_runs = [pg for _, pg, _ in pairs]
    pg = pg_runs[0]
    wall_pg = statistics.median(r["seconds"] for r in pg_runs)
    cpu_pg = statistics.median(r["cpu"] for r in pg_runs)
    rss_pg = max(r["rss_kb"] for r in pg_runs) / 1024
    print(
        f"  pgbadger -j 1: median {wall_pg:.2f} s wall, {cpu_pg:.2f} s CPU, peak RSS {rss_pg:.0f} MB; "
        f"{pg['executions']:,} executions"
    )
    counts = {r["executions"] for r in qa_runs} | {r["executions"] for r in pg_runs}
    print(
        f"  executions: queryaudit {qa['executions']:,}, pgbadger {pg['executions']:,} "
        f"({'same' if len(counts) == 1 else 'DIFFERENT'})"
    )
    ratios = sorted(p["seconds"] / q["seconds"] for q, p, _ in pairs)
    cpu_ratios = sorted(p["cpu"] / q["cpu"] for q, p, _ in pairs)
    print(
        f"  ratio pgbadger/queryaudit: median {statistics.median(ratios):.1f}x wall "
        f"(runs {', '.join(f'{r:.1f}' for r in ratios)}), median {statistics.median(cpu_ratios):.1f}x CPU"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--log", type=Path, action="append", help="bench this log (repeatable) instead of the generated ones"
    )
    ap.add_argument("--prefix", action="append", help="its log_line_prefix (one per --log, or one for all)")
    ap.add_argument(
        "--shape",
        choices=("generated", "pg15", "both"),
        default="both",
        help="without --log: the logs to generate (default both)",
    )
    ap.add_argument("--size-mb", type=int, default=50)
    ap.add_argument("--keep", type=Path, help="a folder to keep (and reuse) the generated logs in")
    ap.add_argument("--jobs", type=int, default=1, help="queryaudit --log-jobs (parallel pieces); pgBadger stays -j 1")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each tool per log, interleaved (default 3)")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="qa-logbench-"))
    try:
        if args.log:
            prefixes = args.prefix or [PREFIX]
            if len(prefixes) not in (1, len(args.log)):
                raise SystemExit("give one --prefix for all the logs, or one per --log")
            logs = list(zip(args.log, prefixes * len(args.log) if len(prefixes) == 1 else prefixes, strict=True))
        else:
            folder = args.keep or workdir
            folder.mkdir(parents=True, exist_ok=True)
            logs = []
            if args.shape in ("generated", "both"):
                logs.append((folder / f"generated-{args.size_mb}mb.log", PREFIX))
            if args.shape in ("pg15", "both"):
                logs.append((folder / f"pg15-replayed-{args.size_mb}mb.log", pg15_log.PREFIX))
            for log, _prefix in logs:
                if log.exists():
                    continue
                t = time.perf_counter()
                if log.name.startswith("pg15"):
                    n = pg15_log.replay(pg15_log.SEED_LOG, log, args.size_mb)
                else:
                    n = generate(log, args.size_mb)
                print(
                    f"generated {log} ({log.stat().st_size / 2**20:.0f} MB, {n:,} lines) "
                    f"in {time.perf_counter() - t:.1f} s",
                    flush=True,
                )
        results = []
        for log, prefix in logs:
            print(f"{log.name}:", flush=True)
            results.append(bench_log(log, prefix, args.repeat, args.jobs, workdir))
        print(f"({os.cpu_count()} CPUs; load average now {' '.join(f'{x:.1f}' for x in os.getloadavg())})")
        for result in results:
            _report(result, args.jobs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
