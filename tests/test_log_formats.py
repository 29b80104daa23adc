"""csvlog of every server version (22 fields up to 8.4, 23 for 9.0-12, 24 for 13, 26 for 14-18)
and jsonlog (15+), from sample lines shaped as each version writes them; and a log the
reader cannot take gets an error naming the real cause. (Logs written by real PostgreSQL
15 and 18 servers, in the three formats, are read in test_logs.py.)"""

from __future__ import annotations

import gzip
import json

import pytest

from queryaudit.logs import LockEvent, ReadStats, StatementEvent, iter_events
from queryaudit.logs.digest import ingest
from queryaudit.logs.stage import log_only_snapshot, read_logs

EXECUTE = '"duration: 0.045 ms  execute <unnamed>: SELECT id, name FROM authors WHERE id = $1","parameters: $1 = \'7\'"'
WAIT = (
    '"process 4242 still waiting for ShareLock on transaction 731 after 1000.072 ms",'
    '"Process holding the lock: 4243. Wait queue: 4242."'
)


def _row(version: str, message: str, pid: int = 4242) -> str:
    """One csvlog row as `version` writes it: the 22 columns of 8.3-8.4, then
    application_name (9.0), backend_type (13), leader_pid and query_id (14)."""
    head = (
        f'2024-03-01 10:00:00.123 UTC,"app","shop",{pid},"127.0.0.1:51234",65e1a6c0.1092,3,"SELECT",'
        f"2024-03-01 09:59:58 UTC,3/42,0,LOG,00000,{message},,,,,\"UPDATE authors SET name = 'x' WHERE id = 1\",,"
    )
    if message.startswith('"duration'):  # no DETAIL/HINT... after the message: drop the STATEMENT column's value
        head = (
            f'2024-03-01 10:00:00.123 UTC,"app","shop",{pid},"127.0.0.1:51234",65e1a6c0.1092,3,"SELECT",'
            f"2024-03-01 09:59:58 UTC,3/42,0,LOG,00000,{message},,,,,,,"
        )
    # 22 columns so far (location is the empty last one)
    extra = {
        "8.4": [],
        "9.6": ['"psql"'],
        "12": ['"psql"'],
        "13": ['"psql"', '"client backend"'],
        "14": ['"psql"', '"client backend"', "", "-6022358287443093498"],
        "18": ['"psql"', '"client backend"', "", "-6022358287443093498"],
    }[version]
    return ",".join([head] + extra) if extra else head


@pytest.mark.parametrize("version,fields", [("8.4", 22), ("9.6", 23), ("12", 23), ("13", 24), ("14", 26), ("18", 26)])
def test_csvlog_of_each_version(tmp_path, version, fields):
    path = tmp_path / f"pg{version}.csv"
    rows = [_row(version, EXECUTE) for _ in range(3)] + [_row(version, WAIT)]
    path.write_text("\n".join(rows) + "\n")
    stats = ReadStats()
    events = list(iter_events([path], stats=stats))
    assert stats.csv_field_counts == {fields: 4} and stats.malformed_lines == 0 and stats.records == 4
    statements = [e for e in events if isinstance(e, StatementEvent)]
    assert len(statements) == 3
    first = statements[0]
    assert first.query == "SELECT id, name FROM authors WHERE id = $1" and first.duration_ms == 0.045
    assert first.parameters == ["'7'"] and first.pid == 4242 and first.session_id == "65e1a6c0.1092"
    assert first.user == "app" and first.database == "shop"
    assert first.application == (None if version == "8.4" else "psql")
    assert first.queryid == ("-6022358287443093498" if fields == 26 else None)
    [wait] = [e for e in events if isinstance(e, LockEvent)]
    assert wait.kind == "waiting" and wait.holders == [4243] and wait.waited_ms == 1000.072
    assert wait.statement == "UPDATE authors SET name = 'x' WHERE id = 1"
    facts = ingest([path])
    assert facts.executions == 3 and facts.statements[0].count == 3 and facts.lock_events == 1


def test_csvlog_detected_by_its_first_line_whatever_the_name(tmp_path):
    path = tmp_path / "postgresql-Mon.log"
    path.write_text("\n".join(_row("12", EXECUTE) for _ in range(2)) + "\n")
    facts = ingest([path])
    assert facts.formats[str(path)] == "csvlog" and facts.executions == 2


def test_jsonlog(tmp_path):
    """PostgreSQL 15+: one JSON object per line (elog.c write_jsonlog's keys)."""
    path = tmp_path / "server.json"
    entry = {
        "timestamp": "2024-03-01 10:00:00.123 UTC",
        "user": "app",
        "dbname": "shop",
        "pid": 4242,
        "remote_host": "127.0.0.1",
        "remote_port": 51234,
        "session_id": "65e1a6c0.1092",
        "line_num": 3,
        "ps": "SELECT",
        "session_start": "2024-03-01 09:59:58 UTC",
        "vxid": "3/42",
        "txid": 0,
        "error_severity": "LOG",
        "message": "duration: 0.045 ms  execute <unnamed>: SELECT id FROM authors WHERE id = $1",
        "detail": "parameters: $1 = '7'",
        "application_name": "psql",
        "backend_type": "client backend",
        "query_id": -6022358287443093498,
    }
    path.write_text("\n".join(json.dumps(entry) for _ in range(4)) + "\n")
    stats = ReadStats()
    [first, *_] = list(iter_events([path], stats=stats))
    assert stats.records == 4 and stats.malformed_lines == 0
    assert first.query == "SELECT id FROM authors WHERE id = $1" and first.parameters == ["'7'"]
    assert first.queryid == "-6022358287443093498" and first.pid == 4242 and first.application == "psql"


def _error(tmp_path, name: str, data: bytes, prefix: str | None = None) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    snap = log_only_snapshot()
    read_logs(snap, [path], prefix)
    assert snap.partial and len(snap.errors) == 1, snap.errors
    message = snap.errors[0].message
    assert "\n" not in message
    return message


def test_an_unreadable_log_gets_an_error_naming_the_real_cause(tmp_path):
    # A csvlog whose rows have a field count no version writes: the counts, not the prefix.
    bad_csv = "\n".join(",".join(["2024-03-01 10:00:00 UTC"] + ["x"] * 24) for _ in range(3)) + "\n"
    message = _error(tmp_path, "odd.csv", bad_csv.encode())
    assert "3 rows of 25 fields" in message and "23 (9.0-12)" in message and "26 (14-18)" in message
    assert "log_line_prefix" not in message
    # jsonlog lines that are not entries
    message = _error(tmp_path, "odd.json", b'["not", "an", "entry"]\n[1]\n')
    assert "jsonlog entry" in message and "log_line_prefix" not in message
    # Binary: not text at all
    message = _error(tmp_path, "postgresql.log", bytes(range(128, 256)) * 40 + b"\n" + bytes(range(200, 256)) + b"\n")
    assert "not UTF-8" in message
    # A stderr log written with another prefix: then, and only then, the prefix
    stderr = b"LOG 2024-03-01 10:00:00 pid=12 LOG:  duration: 0.1 ms  statement: SELECT 1\n" * 3
    message = _error(tmp_path, "other.log", stderr, "%m [%p] ")
    assert "log_line_prefix '%m [%p] '" in message and "pid=12" in message and "--log-line-prefix" in message


def test_gzip_is_read_by_its_content_whatever_its_name(tmp_path):
    path = tmp_path / "postgresql.log.1"  # logrotate's compress without the .gz extension
    path.write_bytes(gzip.compress(("\n".join(_row("14", EXECUTE) for _ in range(5)) + "\n").encode()))
    facts = ingest([path], log_format="csvlog")
    assert facts.executions == 5 and facts.malformed_lines == 0


def test_the_log_reader_knows_the_audits_marker():
    from queryaudit.connect import MARKER
    from queryaudit.logs import digest

    assert digest.MARKER == MARKER
