"""Log ingest speed: queryaudit vs pgBadger, side by side on the same PostgreSQL 15 stderr log.

    .venv/bin/python bench/log_bench.py --size-mb 50 [--keep PATH]

Generates a log shaped like what PostgreSQL 15 writes with `log_min_duration_statement =
0` and `log_lock_waits = on` under an application using the extended protocol: per
request BEGIN, a parent query and its single-row lookups (parse / bind / execute lines,
DETAIL parameters), an UPDATE, COMMIT; sessions interleaved line by line; multi-line
statements, unique violations (ERROR + DETAIL + STATEMENT), lock waits (still waiting /
acquired with CONTEXT and STATEMENT), deadlocks, checkpoints and connection lines.
Then, in the same run, on the same file: queryaudit's one pass (ingest + lock analysis +
N+1, in a child process to measure its peak RSS) and pgBadger `-j 1`. Prints both times,
the ratio, both RSS, and both counts of executions, which must agree.
Needs pgbadger on PATH (Debian: apt-get install pgbadger).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PREFIX = "%m [%p] %q%u@%d "
PARENT = "SELECT id, customer_id, status, total FROM orders WHERE customer_id = $1 ORDER BY id DESC LIMIT 40"
CHILD = "SELECT id, name, price FROM products WHERE id = $1"
UPDATE = "UPDATE customers SET last_seen = now() WHERE id = $1"
INSERT = "INSERT INTO events (kind, payload, created_at) VALUES ($1, $2, now())"
REPORT = ("SELECT c.city, count(o.id), sum(o.total)\n\tFROM customers c JOIN orders o ON o.customer_id = c.id\n"
          "\tWHERE c.city = '{city}' AND o.created_at > now() - interval '1 day'\n\tGROUP BY c.city")


class Session:
    """One backend: a stream of requests, each a few log entries, written one entry at a time."""

    def __init__(self, rng: random.Random, pid: int, user: str, named: bool):
        self.rng, self.pid, self.user, self.named = rng, pid, user, named
        self.entries: list[list[str]] = []  # entries still to write, each a list of (message) lines

    def _extended(self, query: str, params: list[str], name: str, ms: float) -> None:
        p = ", ".join(f"${i} = '{v}'" for i, v in enumerate(params, 1))
        if not self.named or name == "<unnamed>":
            self.entries.append([f"LOG:  duration: {ms * 0.3:.3f} ms  parse {name}: {query}"])
            self.entries.append([f"LOG:  duration: {ms * 0.2:.3f} ms  bind {name}: {query}",
                                 f"DETAIL:  parameters: {p}"])
        else:
            self.entries.append([f"LOG:  duration: {ms * 0.2:.3f} ms  bind {name}: {query}",
                                 f"DETAIL:  parameters: {p}"])
        self.entries.append([f"LOG:  duration: {ms:.3f} ms  execute {name}: {query}", f"DETAIL:  parameters: {p}"])

    def request(self) -> None:
        rng = self.rng
        self.entries.append([f"LOG:  duration: {rng.random() * 0.02:.3f} ms  statement: BEGIN"])
        customer = rng.randrange(1, 100_000)
        self._extended(PARENT, [str(customer)], "S_1" if self.named else "<unnamed>", rng.random() * 2)
        for _ in range(rng.randrange(5, 40)):
            self._extended(CHILD, [str(rng.randrange(1, 50_000))], "S_2" if self.named else "<unnamed>",
                           0.01 + rng.random() * 0.03)
        kind = rng.random()
        if kind < 0.02:  # a unique violation
            self.entries.append([f"LOG:  duration: 0.050 ms  parse <unnamed>: {INSERT}"])
            self.entries.append(["ERROR:  duplicate key value violates unique constraint \"events_pkey\"",
                                 f"DETAIL:  Key (id)=({rng.randrange(10**6)}) already exists.",
                                 f"STATEMENT:  {INSERT}"])
            self.entries.append(["LOG:  duration: 0.012 ms  statement: ROLLBACK"])
            return
        if kind < 0.30:
            self._extended(INSERT, ["view", f'{{"page": {rng.randrange(100)}}}'], "<unnamed>", rng.random() * 0.5)
        self._extended(UPDATE, [str(customer)], "<unnamed>", rng.random() * 0.4)
        if kind > 0.97:
            self.entries.append([f"LOG:  duration: {rng.random() * 900:.3f} ms  statement: "
                                 + REPORT.format(city=f"city{rng.randrange(99)}")])
        self.entries.append([f"LOG:  duration: {rng.random() * 0.05:.3f} ms  statement: COMMIT"])


def _lock_wait(rng: random.Random, pid: int, holder: int, deadlock: bool) -> list[list[str]]:
    tx = rng.randrange(10**6, 10**7)
    row = f"({rng.randrange(100)},{rng.randrange(1, 60)})"
    stmt = "UPDATE customers SET last_seen = now() WHERE id = $1"
    ctx = f"CONTEXT:  while updating tuple {row} in relation \"customers\""
    if deadlock:
        other = f"UPDATE customers SET balance = balance - 1 WHERE id = {rng.randrange(100)}"
        return [[f"LOG:  process {pid} detected deadlock while waiting for ShareLock on transaction {tx} "
                 "after 1000.090 ms",
                 f"DETAIL:  Process holding the lock: {holder}. Wait queue: .", ctx, f"STATEMENT:  {stmt}"],
                ["ERROR:  deadlock detected",
                 f"DETAIL:  Process {pid} waits for ShareLock on transaction {tx}; blocked by process {holder}.",
                 f"\tProcess {holder} waits for ShareLock on transaction {tx + 1}; blocked by process {pid}.",
                 f"\tProcess {pid}: {stmt}", f"\tProcess {holder}: {other}",
                 "HINT:  See server log for query details.", ctx, f"STATEMENT:  {stmt}"]]
    waited = 1000 + rng.random() * 3000
    return [[f"LOG:  process {pid} still waiting for ShareLock on transaction {tx} after 1000.072 ms",
             f"DETAIL:  Process holding the lock: {holder}. Wait queue: {pid}.", ctx, f"STATEMENT:  {stmt}"],
            [f"LOG:  process {pid} acquired ShareLock on transaction {tx} after {waited:.3f} ms", ctx,
             f"STATEMENT:  {stmt}"]]


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
                ts = (time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second))
                      + f".{int((clock - second) * 1000):03d} UTC")
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


def run_queryaudit(log: Path, jobs: int = 1) -> dict:
    """In a child process: its wall time from start (interpreter and imports included), its
    CPU time and its peak RSS."""
    root = Path(__file__).resolve().parent.parent
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", INGEST, str(log), PREFIX, str(jobs)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=root, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    if status != 0:
        raise SystemExit(f"queryaudit failed: {proc.stderr.read().decode()[-2000:]}")
    result = json.loads(proc.stdout.read())
    # wait4 reports the child with the children it waited for (--jobs: the pieces' processes):
    # CPU summed, RSS the largest process's.
    result.update(seconds=seconds, cpu=usage.ru_utime + usage.ru_stime, rss_kb=usage.ru_maxrss)
    return result


def run_pgbadger(log: Path, workdir: Path) -> dict:
    t = time.perf_counter()
    out = workdir / "pgbadger.json"
    proc = subprocess.Popen(["pgbadger", "-j", "1", "-f", "stderr", "--prefix", PREFIX, "-q", "-o", str(out),
                             "-x", "json", str(log)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS and CPU time
    seconds = time.perf_counter() - t
    if status != 0:
        raise SystemExit(f"pgbadger failed: {proc.stderr.read().decode()[-500:]}")
    overall = json.loads(out.read_text()).get("overall_stat", {})
    return {"seconds": seconds, "cpu": usage.ru_utime + usage.ru_stime, "rss_kb": usage.ru_maxrss,
            "executions": int(overall.get("queries_number", 0))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=50)
    ap.add_argument("--keep", type=Path, help="reuse/keep the generated log at this path")
    ap.add_argument("--jobs", type=int, default=1, help="queryaudit --log-jobs (parallel pieces); pgBadger stays -j 1")
    ap.add_argument("--repeat", type=int, default=1, help="run each tool N times (alternating) and keep each "
                    "one's fastest run: on a shared machine, the closest to a quiet one")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="qa-logbench-"))
    log = args.keep or workdir / "postgresql.log"
    try:
        if not log.exists():
            t = time.perf_counter()
            n = generate(log, args.size_mb)
            print(f"generated {log} ({log.stat().st_size / 2**20:.0f} MB, {n:,} lines) "
                  f"in {time.perf_counter() - t:.1f} s")
        size_mb = log.stat().st_size / 2**20
        runs_qa, runs_pg = [], []
        for _ in range(args.repeat):
            runs_qa.append(run_queryaudit(log, args.jobs))
            if shutil.which("pgbadger") is not None:
                runs_pg.append(run_pgbadger(log, workdir))
        qa = min(runs_qa, key=lambda r: r["seconds"])
        qa["cpu"] = min(r["cpu"] for r in runs_qa)
        if qa["errors"]:
            raise SystemExit(f"queryaudit reported errors: {qa['errors']}")
        print(f"queryaudit ({'one process' if args.jobs == 1 else f'--log-jobs {args.jobs}'}): "
              f"{qa['lines']:,} lines in {qa['seconds']:.2f} s wall, {qa['cpu']:.2f} s CPU "
              f"= {qa['lines'] / qa['seconds']:,.0f} lines/s ({size_mb / qa['seconds']:.1f} MB/s), peak RSS "
              f"{qa['rss_kb'] / 1024:.0f} MB; {qa['executions']:,} executions, {qa['n_plus_one']} N+1 patterns, "
              f"{qa['lock_waits']} lock waits, {qa['deadlocks']} deadlocks, {qa['malformed']} malformed lines")
        if not runs_pg:
            print("pgbadger: not installed (Debian: apt-get install pgbadger)")
            return
        pg = min(runs_pg, key=lambda r: r["seconds"])
        pg["cpu"] = min(r["cpu"] for r in runs_pg)
        if args.repeat > 1:
            walls_qa = ", ".join(f"{r['seconds']:.2f}" for r in runs_qa)
            walls_pg = ", ".join(f"{r['seconds']:.1f}" for r in runs_pg)
            print(f"fastest of {args.repeat} runs each; wall times: queryaudit {walls_qa} s, pgbadger {walls_pg} s")
        print(f"pgbadger -j 1: {qa['lines']:,} lines in {pg['seconds']:.2f} s wall, {pg['cpu']:.2f} s CPU = "
              f"{qa['lines'] / pg['seconds']:,.0f} lines/s ({size_mb / pg['seconds']:.1f} MB/s), peak RSS "
              f"{pg['rss_kb'] / 1024:.0f} MB; {pg['executions']:,} executions")
        same = "same" if pg["executions"] == qa["executions"] else "DIFFERENT"
        print(f"executions: queryaudit {qa['executions']:,}, pgbadger {pg['executions']:,} ({same})")
        print(f"speed ratio queryaudit/pgbadger: {pg['seconds'] / qa['seconds']:.1f}x wall, "
              f"{pg['cpu'] / qa['cpu']:.1f}x CPU")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
