"""Reading log files line by line into records (one log entry each), for the three formats.

Nothing here loads a file: files are iterated line by line (`.gz` through gzip), and a
record is handed on as soon as the next entry starts, so memory is one entry whatever
the log size. Lines that are not UTF-8, do not parse, or continue nothing are counted
in `ReadStats` and skipped.
"""
from __future__ import annotations

import csv
import glob
import gzip
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from queryaudit.errors import AuditError
from queryaudit.logs.prefix import DEFAULT_PREFIX, line_regex

SECONDARY = {"DETAIL": "detail", "HINT": "hint", "CONTEXT": "context", "STATEMENT": "statement",
             "QUERY": "internal_query", "LOCATION": "location"}
MAX_FIELD_CHARS = 1_000_000  # a statement longer than this is truncated (counted), not kept whole


@dataclass
class ReadStats:
    files: list[str] = field(default_factory=list)
    formats: dict[str, str] = field(default_factory=dict)  # file -> stderr | csvlog | jsonlog
    lines: int = 0
    records: int = 0
    malformed_lines: int = 0  # not UTF-8, unparseable, or a continuation with nothing to continue
    truncated_fields: int = 0


class Record:
    """One log entry: the prefix (or csv/json) fields, the severity, the message and the
    secondary fields PostgreSQL attaches to it (DETAIL, HINT, CONTEXT, STATEMENT...)."""

    __slots__ = ("header", "severity", "message", "detail", "hint", "context", "statement", "internal_query",
                 "location", "source", "_last")

    def __init__(self, header: dict, severity: str, message: str, source: str):
        self.header = header
        self.severity = severity
        self.message = message
        self.detail = self.hint = self.context = self.statement = self.internal_query = self.location = None
        self.source = source
        self._last = "message"

    def append_line(self, line: str, stats: ReadStats) -> None:
        if line.startswith("\t"):  # stderr indents a message's own next lines with one tab
            line = line[1:]
        current = getattr(self, self._last) or ""
        if len(current) > MAX_FIELD_CHARS:
            stats.truncated_fields += 1
            return
        setattr(self, self._last, current + "\n" + line)

    def attach(self, name: str, text: str) -> None:
        current = getattr(self, name)
        setattr(self, name, text if current is None else current + "\n" + text)
        self._last = name


def expand_paths(patterns: Iterable[str | Path]) -> list[Path]:
    """--log values: files, directories (every file in them) and globs, in a stable order."""
    out: list[Path] = []
    for pattern in patterns:
        text = os.path.expanduser(str(pattern))
        if glob.has_magic(text):
            matches = sorted(Path(p) for p in glob.glob(text, recursive=True))
            if not matches:
                raise AuditError(f"no log file matches {text}")
        elif Path(text).is_dir():
            matches = sorted(p for p in Path(text).iterdir() if p.is_file())
        elif Path(text).exists():
            matches = [Path(text)]
        else:
            raise AuditError(f"log file not found: {text}")
        out.extend(p for p in matches if p.is_file() and p not in out)
    return out


def _open(path: Path):
    try:
        return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb", buffering=1 << 20)
    except OSError as exc:
        raise AuditError(f"cannot read log file {path}: {exc.strerror or exc}") from None


_CSV_START = re.compile(rb'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? [^,]*,')


def detect_format(path: Path) -> str:
    """csvlog / jsonlog by extension, else by the first line."""
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    if name.endswith(".csv"):
        return "csvlog"
    if name.endswith(".json"):
        return "jsonlog"
    with _open(path) as f:
        try:
            head = f.read(4096)
        except (OSError, EOFError):
            return "stderr"
    first = head.lstrip().split(b"\n", 1)[0]
    if first.startswith(b"{"):
        return "jsonlog"
    if _CSV_START.match(first) and first.count(b",") >= 20:
        return "csvlog"
    return "stderr"


def _decoded_lines(f, stats: ReadStats, keepends: bool = False) -> Iterator[str | None]:
    """Lines as text; a line that is not UTF-8 yields None (counted by the caller's parser)."""
    for raw in f:
        stats.lines += 1
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            stats.malformed_lines += 1
            yield None
            continue
        yield line if keepends else line.rstrip("\r\n")


def read_stderr(f, source: str, prefix: str, stats: ReadStats) -> Iterator[Record]:
    regex = line_regex(prefix)
    match = regex.match
    has_pid = "pid" in regex.groupindex
    pending: Record | None = None
    lineno = 0
    for line in _decoded_lines(f, stats):
        lineno += 1
        if line is None:
            continue
        m = match(line)
        if m is None:
            # A statement's or a plan's next line (PostgreSQL writes the message's own newlines).
            if pending is None:
                if line.strip():
                    stats.malformed_lines += 1
            else:
                pending.append_line(line, stats)
            continue
        severity = m.group("severity")
        secondary = SECONDARY.get(severity)
        if secondary is not None:
            # DETAIL, CONTEXT, STATEMENT... follow their entry, from the same backend.
            if pending is not None and (not has_pid or pending.header.get("pid") == m.group("pid")):
                pending.attach(secondary, m.group("message"))
            else:
                stats.malformed_lines += 1
            continue
        if pending is not None:
            yield pending
        stats.records += 1
        pending = Record(m.groupdict(), severity, m.group("message"), f"{source}:{lineno}")
    if pending is not None:
        yield pending


CSV_COLUMNS = ["timestamp", "user", "database", "pid", "remote", "session_id", "line_num", "command_tag",
               "session_start", "vxid", "xid", "severity", "sqlstate", "message", "detail", "hint",
               "internal_query", "internal_query_pos", "context", "statement", "query_pos", "location",
               "application", "backend_type", "leader_pid", "queryid"]


def _record_from_fields(fields: dict, source: str) -> Record:
    rec = Record(fields, fields.get("severity") or "LOG", fields.get("message") or "", source)
    for name in ("detail", "hint", "context", "statement", "internal_query", "location"):
        value = fields.get(name)
        if value:
            setattr(rec, name, value)
    return rec


def read_csvlog(f, source: str, stats: ReadStats) -> Iterator[Record]:
    lines = (line for line in _decoded_lines(f, stats, keepends=True) if line is not None)
    reader = csv.reader(lines)
    n = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error:
            stats.malformed_lines += 1
            continue
        n += 1
        if len(row) < 23 or not row[11]:
            stats.malformed_lines += 1
            continue
        fields = {name: (value if value != "" else None) for name, value in zip(CSV_COLUMNS, row)}
        stats.records += 1
        yield _record_from_fields(fields, f"{source}:record {n}")


JSON_KEYS = {"timestamp": "timestamp", "user": "user", "dbname": "database", "pid": "pid",
             "remote_host": "host", "session_id": "session_id", "line_num": "line_num", "vxid": "vxid",
             "txid": "xid", "error_severity": "severity", "state_code": "sqlstate", "message": "message",
             "detail": "detail", "hint": "hint", "internal_query": "internal_query", "context": "context",
             "statement": "statement", "application_name": "application", "backend_type": "backend_type",
             "query_id": "queryid", "leader_pid": "leader_pid"}


def read_jsonlog(f, source: str, stats: ReadStats) -> Iterator[Record]:
    lineno = 0
    for line in _decoded_lines(f, stats):
        lineno += 1
        if line is None or not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            stats.malformed_lines += 1
            continue
        if not isinstance(obj, dict) or "message" not in obj:
            stats.malformed_lines += 1
            continue
        fields = {JSON_KEYS[k]: (str(v) if v is not None else None) for k, v in obj.items() if k in JSON_KEYS}
        stats.records += 1
        yield _record_from_fields(fields, f"{source}:{lineno}")


def read_records(paths: Iterable[str | Path], prefix: str | None = None, stats: ReadStats | None = None,
                 log_format: str | None = None) -> Iterator[Record]:
    """Every record of every file, in file order; `stats` counts lines and what was skipped."""
    stats = stats if stats is not None else ReadStats()
    for path in expand_paths(paths):
        fmt = log_format or detect_format(path)
        stats.files.append(str(path))
        stats.formats[str(path)] = fmt
        with _open(path) as f:
            try:
                if fmt == "csvlog":
                    yield from read_csvlog(f, path.name, stats)
                elif fmt == "jsonlog":
                    yield from read_jsonlog(f, path.name, stats)
                else:
                    yield from read_stderr(f, path.name, prefix or DEFAULT_PREFIX, stats)
            except (OSError, EOFError, gzip.BadGzipFile) as exc:  # a truncated .gz: keep what was read
                stats.malformed_lines += 1
                stats.files[-1] = f"{path} (read stopped: {exc})"
