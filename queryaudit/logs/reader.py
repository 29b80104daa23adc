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
from queryaudit.logs.prefix import DEFAULT_PREFIX, SEVERITIES, block_regex

SECONDARY = {
    "DETAIL": "detail",
    "HINT": "hint",
    "CONTEXT": "context",
    "STATEMENT": "statement",
    "QUERY": "internal_query",
    "LOCATION": "location",
}
MAX_FIELD_CHARS = 1_000_000  # a statement longer than this is truncated (counted), not kept whole
MAX_MESSAGE_LINES = 10_000  # a message's next lines kept; beyond, counted as truncated
BLOCK_BYTES = 1 << 20  # read and decode this much at a time, cut at a line boundary


@dataclass
class ReadStats:
    files: list[str] = field(default_factory=list)
    formats: dict[str, str] = field(default_factory=dict)  # file -> stderr | csvlog | jsonlog
    lines: int = 0
    records: int = 0
    malformed_lines: int = 0  # not UTF-8, unparseable, or a continuation with nothing to continue
    truncated_fields: int = 0
    csv_field_counts: dict[int, int] = field(default_factory=dict)  # rows by field count (csvlog)
    first_unmatched: str | None = None  # the first line no parser took, for the error message
    not_utf8: int = 0


class Record:
    """One log entry: the prefix (or csv/json) fields, the severity, the message and the
    secondary fields PostgreSQL attaches to it (DETAIL, HINT, CONTEXT, STATEMENT...).

    Built once per entry in the hot loop, so it holds only what the fast path reads:
    `first` (the message's first line), `more` (its next lines), `key` (timestamp, pid,
    session id, query id as text, None when absent) and the secondaries in `extra`; the
    full header dict (`header`) is only built when an event asks for it."""

    __slots__ = (
        "severity",
        "first",
        "more",
        "extra",
        "key",
        "_match",
        "_fields",
        "file",
        "lineno",
        "phase",
        "duration",
        "cut",
    )

    def __init__(
        self,
        severity: str,
        first: str,
        key: tuple,
        file: str,
        lineno,
        match=None,
        fields=None,
        phase: str | None = None,
        duration: str | None = None,
        cut: int = 0,
    ):
        self.severity = severity
        self.first = first
        # A statement line read by the stderr fast path: its phase, its duration (text) and
        # where the statement starts in `first`; phase None when not known yet.
        self.phase, self.duration, self.cut = phase, duration, cut
        self.more = None
        self.extra = None
        self.key = key
        self._match = match
        self._fields = fields
        self.file = file
        self.lineno = lineno

    @property
    def header(self) -> dict:
        if self._fields is None:
            self._fields = {k: v for k, v in self._match.groupdict().items() if v != ""}
        return self._fields

    @property
    def source(self) -> str:
        where = self.lineno
        if isinstance(where, tuple):  # ([offset, its line, lines before the block], the block, the entry's offset)
            memo, text, start = where
            if start < memo[0]:
                memo[0], memo[1] = 0, memo[2] + 1
            memo[1] += text.count("\n", memo[0], start)  # from the last entry asked: each block is counted once
            memo[0] = start
            where = memo[1]
        return f"{self.file}:{where}"

    @property
    def message(self) -> str:
        return self.first if self.more is None else self.first + "\n" + "\n".join(self.more)

    def _get(self, name: str):
        return self.extra.get(name) if self.extra else None

    detail = property(lambda self: self._get("detail"))
    hint = property(lambda self: self._get("hint"))
    context = property(lambda self: self._get("context"))
    statement = property(lambda self: self._get("statement"))
    internal_query = property(lambda self: self._get("internal_query"))
    location = property(lambda self: self._get("location"))

    def append_line(self, line: str, stats: ReadStats) -> None:
        if line.startswith("\t"):  # stderr indents a message's own next lines with one tab (elog.c)
            line = line[1:]
        if self.extra is None:
            if self.more is None:
                self.more = [line]
            elif len(self.more) < MAX_MESSAGE_LINES:
                self.more.append(line)
            else:
                stats.truncated_fields += 1
            return
        last = self.extra["_last"]
        current = self.extra[last]
        if len(current) > MAX_FIELD_CHARS:
            stats.truncated_fields += 1
            return
        self.extra[last] = current + "\n" + line

    def attach(self, name: str, text: str) -> None:
        if self.extra is None:
            self.extra = {"_last": name, name: text}
            return
        current = self.extra.get(name)
        self.extra[name] = text if current is None else current + "\n" + text
        self.extra["_last"] = name


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
        with open(path, "rb") as f:
            compressed = f.read(2) == b"\x1f\x8b"  # gzip by its magic bytes, whatever the name
        return gzip.open(path, "rb") if compressed else open(path, "rb", buffering=0)
    except OSError as exc:
        raise AuditError(f"cannot read log file {path}: {exc.strerror or exc}") from None


_CSV_START = re.compile(rb"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? [^,]*,")


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


def _decode(data: bytes, stats: ReadStats) -> list[str | None]:
    """The block's lines; a line that is not UTF-8 becomes None (counted)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        lines: list[str | None] = []
        for raw in data.split(b"\n"):
            try:
                lines.append(raw.decode("utf-8").rstrip("\r"))
            except UnicodeDecodeError:
                stats.malformed_lines += 1
                stats.not_utf8 += 1
                lines.append(None)
        return lines
    lines = text.split("\n")
    if "\r" in text:
        lines = [line.rstrip("\r") for line in lines]
    return lines


def _chunks(f) -> Iterator[bytes]:
    """The file about BLOCK_BYTES at a time, each chunk whole lines without the last newline
    (the per-line read and decode are what made a line-by-line reader slow)."""
    read = getattr(f, "read1", None) if isinstance(f, gzip.GzipFile) else None
    read = read or f.read  # read1 on gzip: what was decompressed survives a truncated file
    rest = b""
    while True:
        chunk = read(BLOCK_BYTES)
        if not chunk:
            break
        if rest:
            chunk = rest + chunk
        cut = chunk.rfind(b"\n")
        if cut < 0:
            rest = chunk[-MAX_FIELD_CHARS * 8 :]  # one enormous line: keep its end, bounded
            continue
        rest = chunk[cut + 1 :]
        yield chunk[:cut]
    if rest:
        yield rest


def _blocks(f, stats: ReadStats) -> Iterator[list[str | None]]:
    """The file as lists of lines (None for a line that is not UTF-8)."""
    for chunk in _chunks(f):
        lines = _decode(chunk, stats)
        stats.lines += len(lines)
        yield lines


KEY_FIELDS = ("timestamp", "pid", "session_id", "queryid")  # what every record carries in `key`


def _text_blocks(f, stats: ReadStats) -> Iterator[str]:
    """The file as text blocks of whole lines (no final newline); lines that are not UTF-8
    are dropped (counted)."""
    for chunk in _chunks(f):
        stats.lines += chunk.count(b"\n") + 1
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError:
            text = "\n".join(line for line in _decode(chunk, stats) if line is not None)
        yield text.replace("\r\n", "\n") if "\r" in text else text


def _untab(text: str) -> str:
    """A field's text without the tab stderr puts at the start of each next line."""
    return text.replace("\n\t", "\n") if "\n" in text else text


def _next_lines(more: str, stats: ReadStats) -> list[str]:
    """`more` ("\n\tline\n\tline"): the message's next lines, without their tab."""
    lines = more[2:].split("\n\t")
    if len(lines) > MAX_MESSAGE_LINES:
        stats.truncated_fields += len(lines) - MAX_MESSAGE_LINES
        del lines[MAX_MESSAGE_LINES:]
    return lines


def read_stderr(f, source: str, prefix: str, stats: ReadStats) -> Iterator[Record]:
    """Entries of a stderr log. One regex call finds every entry in a block (re.M): its first
    line, its tab-led next lines and the DETAIL written after it with the same prefix
    (prefix.block_regex); other text between two matches (next lines that fall in the next block,
    foreign lines) continues the previous entry. That keeps the Python work per entry, not
    per line."""
    regex = block_regex(prefix)
    finditer = regex.finditer
    groups = regex.groupindex
    # The severity first (a DETAIL of a skipped bind needs nothing more), then one m.group()
    # call for what the entry needs: most entries of an extended-protocol log are skipped.
    severity_group, phase_group = groups["severity"], groups["phase"]
    secondary_wanted = tuple(groups[name] for name in ("message", "pid", "more", "detail"))
    wanted = tuple(groups[name] for name in ("message", "more", "detail", "head", "duration") + KEY_FIELDS)
    other_wanted = tuple(groups[name] for name in ("message", "more", "detail") + KEY_FIELDS)
    secondary_of = SECONDARY.get
    pending: Record | None = None
    skipping = False  # in a parse or bind line (and its DETAIL): the execute line follows, with the duration
    base = records = malformed = 0  # base: lines before the block

    def between(text: str) -> None:
        nonlocal malformed
        if skipping:  # a parse or bind line's own next lines
            return
        for line in text.split("\n"):
            # A statement's or a plan's next line (PostgreSQL writes the message's own newlines).
            if pending is not None:
                pending.append_line(line, stats)
            elif line.strip():
                malformed += 1
                if stats.first_unmatched is None:
                    stats.first_unmatched = line[:300]

    try:
        for text in _text_blocks(f, stats):
            pos = 0
            where = [0, base + 1, base]  # shared by the block's entries: their line numbers, counted lazily
            for m in finditer(text):
                start, end = m.span()
                if start != pos and not skipping:
                    between(text[pos : start - 1])
                pos = end + 1
                severity = m.group(severity_group)
                secondary = secondary_of(severity)
                if secondary is not None:
                    # DETAIL, CONTEXT, STATEMENT... follow their entry, from the same backend.
                    if skipping:
                        continue
                    message, pid, more, detail = m.group(*secondary_wanted)
                    if pending is not None and pending.key[1] == pid:
                        if more:
                            message += more.replace("\n\t", "\n")
                        if pending.extra is None:
                            pending.extra = {"_last": secondary, secondary: message}
                        else:
                            pending.attach(secondary, message)
                        if detail is not None:
                            pending.attach("detail", _untab(detail))
                    else:
                        malformed += 1 + more.count("\n") + (detail is not None)
                    continue
                if pending is not None:
                    yield pending
                records += 1
                phase = m.group(phase_group)
                if phase is not None and severity == "LOG":
                    if phase == "parse" or phase == "bind":
                        pending, skipping = None, True
                        continue
                    message, more, detail, head, duration, ts, pid, session_id, queryid = m.group(*wanted)
                    pending = Record(
                        severity,
                        message,
                        (ts, pid, session_id, queryid),
                        source,
                        (where, text, start),
                        m,
                        None,
                        phase,
                        duration,
                        len(head),
                    )
                else:
                    message, more, detail, ts, pid, session_id, queryid = m.group(*other_wanted)
                    pending = Record(severity, message, (ts, pid, session_id, queryid), source, (where, text, start), m)
                if more:
                    pending.more = _next_lines(more, stats)
                if detail is not None:
                    pending.extra = {"_last": "detail", "detail": _untab(detail)}
                skipping = False
            if pos <= len(text):
                between(text[pos:])
            base += text.count("\n") + 1
        if pending is not None:
            yield pending
    finally:
        stats.records += records
        stats.malformed_lines += malformed


# csvlog columns in PostgreSQL's order; each version adds at the end (verified against the
# `CREATE TABLE postgres_log` of each version's manual, "Using CSV-Format Log Output").
CSV_COLUMNS = [
    "timestamp",
    "user",
    "database",
    "pid",
    "remote",
    "session_id",
    "line_num",
    "command_tag",
    "session_start",
    "vxid",
    "xid",
    "severity",
    "sqlstate",
    "message",
    "detail",
    "hint",
    "internal_query",
    "internal_query_pos",
    "context",
    "statement",
    "query_pos",
    "location",
    "application",
    "backend_type",
    "leader_pid",
    "queryid",
]
# field count -> the versions that write it
CSV_VERSIONS = {22: "8.3-8.4", 23: "9.0-12", 24: "13", 26: "14-18"}
_SEVERITY_NAMES = frozenset(SEVERITIES)


def _record_from_fields(fields: dict, source: str, n: int) -> Record:
    key = (fields.get("timestamp"), fields.get("pid"), fields.get("session_id"), fields.get("queryid"))
    message = fields.get("message") or ""
    rec = Record(fields.get("severity") or "LOG", message, key, source, n, fields=fields)
    for name in ("detail", "hint", "context", "statement", "internal_query", "location"):
        value = fields.get(name)
        if value:
            rec.attach(name, value)
    return rec


def _csv_lines(f, stats: ReadStats) -> Iterator[str]:
    for lines in _blocks(f, stats):
        for line in lines:
            if line is not None:
                yield line + "\n"


def read_csvlog(f, source: str, stats: ReadStats) -> Iterator[Record]:
    reader = csv.reader(_csv_lines(f, stats))
    n = 0
    counts = stats.csv_field_counts
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error:
            stats.malformed_lines += 1
            continue
        n += 1
        width = len(row)
        counts[width] = counts.get(width, 0) + 1
        if width not in CSV_VERSIONS or row[11] not in _SEVERITY_NAMES:
            stats.malformed_lines += 1
            if stats.first_unmatched is None:
                stats.first_unmatched = ",".join(row)[:300]
            continue
        fields = {name: value for name, value in zip(CSV_COLUMNS, row, strict=False) if value != ""}
        stats.records += 1
        yield _record_from_fields(fields, source, f"record {n}")


JSON_KEYS = {
    "timestamp": "timestamp",
    "user": "user",
    "dbname": "database",
    "pid": "pid",
    "remote_host": "host",
    "session_id": "session_id",
    "line_num": "line_num",
    "vxid": "vxid",
    "txid": "xid",
    "error_severity": "severity",
    "state_code": "sqlstate",
    "message": "message",
    "detail": "detail",
    "hint": "hint",
    "internal_query": "internal_query",
    "context": "context",
    "statement": "statement",
    "application_name": "application",
    "backend_type": "backend_type",
    "query_id": "queryid",
    "leader_pid": "leader_pid",
}


def read_jsonlog(f, source: str, stats: ReadStats) -> Iterator[Record]:
    lineno = 0
    loads = json.loads
    for lines in _blocks(f, stats):
        for line in lines:
            lineno += 1
            if line is None or not line.strip():
                continue
            try:
                obj = loads(line)
            except ValueError:
                obj = None
            if not isinstance(obj, dict) or "message" not in obj:
                stats.malformed_lines += 1
                if stats.first_unmatched is None:
                    stats.first_unmatched = line[:300]
                continue
            fields = {JSON_KEYS[k]: str(v) for k, v in obj.items() if k in JSON_KEYS and v is not None}
            stats.records += 1
            yield _record_from_fields(fields, source, lineno)


def read_records(
    paths: Iterable[str | Path],
    prefix: str | None = None,
    stats: ReadStats | None = None,
    log_format: str | None = None,
) -> Iterator[Record]:
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
                # Said in the file's entry, not counted as a malformed line: no line was read.
                stats.files[-1] = f"{path} (read stopped: {exc})"
