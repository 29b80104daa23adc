"""Run a command while other processes keep the machine's cores busy, the way CI may find a
developer's machine: `python tests/busy.py [--cores N] -- COMMAND ...` (`make test-busy`).

The spinners are plain CPU loops at normal priority, each in a session of its own as other
jobs' processes are; they stop when the command ends, and the command's exit code is
returned."""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys


def spin() -> None:
    # A session of its own: with the kernel's autogroup scheduling (sched_autogroup_enabled)
    # CPU is shared between sessions first, and PostgreSQL's postmaster runs in its own. In
    # this command's session the loops would mostly slow the command's Python, not the
    # server (a sort 1.27x slower, against 3.6x with each loop in its own session).
    os.setsid()
    while True:
        pass


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2, help="busy loops to run (default: all cores)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.cores)]
    for p in spinners:
        p.start()
    try:
        return subprocess.call(command)
    finally:
        for p in spinners:
            p.terminate()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
