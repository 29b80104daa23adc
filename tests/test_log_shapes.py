"""Log ingest on two differently shaped stderr logs, the ones bench/log_bench.py times: a real
PostgreSQL 15 log (bench/pg15_seed.log, prefix `%m [%p] %q%u@%d %c %x `: bind parameters,
multi-line statements, lock waits, a deadlock, connections) replayed into a bigger one, and
the bench's generated log. The executions and their total time must be what a line-by-line
count finds, and what pgBadger counts."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from queryaudit.logs import ReadStats
from queryaudit.logs.digest import ingest
from queryaudit.logs.prefix import line_regex
from queryaudit.logs.reader import read_records

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import log_bench  # noqa: E402
import pg15_log  # noqa: E402

EXECUTED = re.compile(r"duration: (\d+\.\d+) ms  (?:statement|execute[^:]*): (.*)")


def _line_by_line(path: Path, prefix: str) -> tuple[int, float, int]:
    """(executions, their total ms, lines) counted one line at a time with the one-line regex,
    apart from the reader's block regex: what pgBadger counts (DEALLOCATE left out)."""
    match = line_regex(prefix).match
    executions, total, lines = 0, 0.0, 0
    with open(path) as f:
        for line in f:
            lines += 1
            m = match(line.rstrip("\n"))
            if m is None or m.group("severity") != "LOG":
                continue
            executed = EXECUTED.match(m.group("message"))
            if executed and not executed.group(2).startswith("DEALLOCATE"):
                executions += 1
                total += float(executed.group(1))
    return executions, total, lines


def _shapes(tmp_path: Path, size_mb: float) -> list[tuple[Path, str]]:
    replayed, generated = tmp_path / "pg15.log", tmp_path / "generated.log"
    pg15_log.replay(pg15_log.SEED_LOG, replayed, size_mb)
    log_bench.generate(generated, size_mb)
    return [(replayed, pg15_log.PREFIX), (generated, log_bench.PREFIX)]


def test_every_execution_is_counted_on_both_shapes(tmp_path):
    for path, prefix in _shapes(tmp_path, 1):
        executions, total, lines = _line_by_line(path, prefix)
        facts = ingest([path], prefix)
        assert executions > 2000
        assert (facts.executions, facts.lines, facts.malformed_lines) == (executions, lines, 0), path.name
        assert facts.total_ms == pytest.approx(total, abs=0.01), path.name


def test_pgbadger_counts_the_same_executions(tmp_path):
    if shutil.which("pgbadger") is None:
        pytest.skip("pgbadger is not installed (Debian: apt-get install pgbadger)")
    for path, prefix in _shapes(tmp_path, 1):
        out = tmp_path / f"{path.stem}.json"
        # (its own pid file: pgBadger refuses to start beside another run using /tmp/pgbadger.pid)
        subprocess.run(
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
                str(tmp_path),
                "-x",
                "json",
                str(path),
            ],
            check=True,
            capture_output=True,
        )
        counted = json.loads(out.read_text())["overall_stat"]["queries_number"]
        assert ingest([path], prefix).executions == counted, path.name


# The bench's prefix, and one with %l: each line of a message then has its own number, so a
# DETAIL's prefix is not its message's (the reader attaches it by pid instead).
HEADS = {
    pg15_log.PREFIX: "2026-12-07 01:21:35.{ms:03d} UTC [{pid}] app@shop 6b160a1f.{pid:x} {xid} ",
    "%m [%p] %l %q%u@%d %c %x ": "2026-12-07 01:21:35.{ms:03d} UTC [{pid}] {n} app@shop 6b160a1f.{pid:x} {xid} ",
}


def _log(tmp_path: Path, head: str, entries: list[tuple[int, int, str]]) -> Path:
    """Entries of one millisecond per message (a DETAIL, CONTEXT or STATEMENT shares its message's)."""
    path = tmp_path / "postgresql.log"
    lines, ms = [], 0
    for n, (pid, xid, text) in enumerate(entries, 1):
        if text.startswith("\t"):
            lines.append(text)
            continue
        ms += not text.startswith(("DETAIL", "CONTEXT", "STATEMENT"))
        lines.append(head.format(ms=ms, pid=pid, xid=xid, n=n) + text)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("prefix", list(HEADS))
def test_parse_and_bind_lines_and_their_details_are_skipped_and_execute_keeps_its_parameters(tmp_path, prefix):
    path = _log(
        tmp_path,
        HEADS[prefix],
        [
            (4242, 0, "LOG:  duration: 0.031 ms  parse <unnamed>: SELECT o.id"),
            (0, 0, "\t  FROM orders o WHERE o.customer_id = $1"),
            (4242, 0, "LOG:  duration: 0.020 ms  bind <unnamed>: SELECT o.id"),
            (0, 0, "\t  FROM orders o WHERE o.customer_id = $1"),
            (4242, 0, "DETAIL:  parameters: $1 = '17'"),
            (4243, 731, "LOG:  process 4243 still waiting for ShareLock on transaction 730 after 100.072 ms"),
            (4243, 731, "DETAIL:  Process holding the lock: 4244. Wait queue: 4243."),
            (4243, 731, 'CONTEXT:  while updating tuple (6,12) in relation "customers"'),
            (4243, 731, "STATEMENT:  UPDATE customers"),
            (0, 0, "\t   SET balance = balance + $1 WHERE id = $2"),
            (4242, 0, "LOG:  duration: 0.105 ms  execute <unnamed>: SELECT o.id"),
            (0, 0, "\t  FROM orders o WHERE o.customer_id = $1"),
            (4242, 0, "DETAIL:  parameters: $1 = '17'"),
            (4245, 0, "LOG:  duration: 0.025 ms  statement: DEALLOCATE ALL"),
            (4245, 0, "LOG:  connection authorized: user=app database=shop"),
        ],
    )
    stats = ReadStats()
    records = list(read_records([path], prefix, stats))
    assert [r.first[:30] for r in records] == [
        "process 4243 still waiting for",
        "duration: 0.105 ms  execute <u",
        "duration: 0.025 ms  statement:",
        "connection authorized: user=ap",
    ]
    wait, execute = records[0], records[1]
    assert wait.detail == "Process holding the lock: 4244. Wait queue: 4243."
    assert wait.statement == "UPDATE customers\n   SET balance = balance + $1 WHERE id = $2"
    assert wait.header["xid"] == "731" and wait.header["session_id"] == f"6b160a1f.{4243:x}"
    assert execute.message.endswith("\n  FROM orders o WHERE o.customer_id = $1")
    assert execute.detail == "parameters: $1 = '17'"
    assert stats.malformed_lines == 0
    facts = ingest([path], prefix)
    assert (facts.executions, facts.total_ms, facts.lock_events) == (1, 0.105, 1)  # DEALLOCATE left out
    assert facts.statements[0].query == "SELECT o.id\n  FROM orders o WHERE o.customer_id = $1"
    assert facts.statements[0].example_parameters == ["'17'"]


def test_the_replay_is_the_same_file_each_time_and_keeps_each_session_id_with_its_pid(tmp_path):
    a, b, c = tmp_path / "a.log", tmp_path / "b.log", tmp_path / "c.log"
    pg15_log.replay(pg15_log.SEED_LOG, a, 1.5)
    pg15_log.replay(pg15_log.SEED_LOG, b, 1.5)
    pg15_log.replay(pg15_log.SEED_LOG, c, 1.5, rng_seed=2)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    session_lines = 0
    for line in a.read_text().splitlines():
        m = re.match(r"\S+ \S+ UTC \[(\d+)\] \S+@\S+ [0-9a-f]+\.([0-9a-f]+) \d+ ", line)
        if m:
            session_lines += 1
            assert int(m.group(2), 16) == int(m.group(1)), line
    assert session_lines > 10_000
