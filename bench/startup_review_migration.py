"""Start-up of `queryaudit review-migration` on one small file, one process per run (as a
pre-commit hook runs it), side by side with squawk 2.70 on the same file in the same run.

    PYTHONPATH=$PWD python bench/startup_review_migration.py [RUNS]

For each command: wall time (median and minimum) and the CPU time the process used (user +
system, from wait4), which a busy machine inflates far less than wall time. squawk comes from
squawk-cli on PyPI (`pip install squawk-cli`).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SQL = "SET lock_timeout = '2s';\nALTER TABLE orders ADD COLUMN note text;\n"


def measure(cmd: list[str], runs: int, env: dict) -> tuple[list[float], list[float]]:
    walls, cpus = [], []
    for i in range(runs + 2):
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        if i >= 2:  # two warm-up runs: the OS file cache, .pyc files
            walls.append(wall)
            cpus.append(usage.ru_utime + usage.ru_stime)
    return walls, cpus


def main(argv: list[str]) -> int:
    runs = int(argv[0]) if argv else 30
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "0001_add_note.sql"
        path.write_text(SQL)
        commands = {
            "queryaudit review-migration (python -m queryaudit)": [
                sys.executable,
                "-m",
                "queryaudit",
                "review-migration",
                str(path),
            ],
            "queryaudit.cli review-migration (through typer)": [
                sys.executable,
                "-m",
                "queryaudit.cli",
                "review-migration",
                str(path),
            ],
            "python -c pass (interpreter alone)": [sys.executable, "-c", "pass"],
        }
        squawk = shutil.which("squawk") or str(Path(sys.executable).parent / "squawk")
        if Path(squawk).exists():
            commands["squawk 2.70 (squawk-cli)"] = [squawk, str(path)]
        print(f"{runs} runs each, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"{'command':55} {'wall median':>12} {'wall min':>10} {'CPU median':>11}")
        for name, cmd in commands.items():
            walls, cpus = measure(cmd, runs, env)
            print(
                f"{name:55} {statistics.median(walls) * 1000:10.0f} ms {min(walls) * 1000:7.0f} ms "
                f"{statistics.median(cpus) * 1000:8.0f} ms"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
