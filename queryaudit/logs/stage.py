"""The audit's log stage: ingest --log files into snapshot.logs (live or saved snapshot)."""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

from queryaudit import __version__
from queryaudit.errors import AuditError
from queryaudit.locks.log import _catalog, for_snapshot
from queryaudit.logs import prefix_from_settings
from queryaudit.logs.digest import DigestOptions, ingest
from queryaudit.logs.parallel import ingest_parallel
from queryaudit.logs.prefix import DEFAULT_PREFIX
from queryaudit.logs.reader import CSV_VERSIONS, ReadStats
from queryaudit.snapshot import ServerInfo, Snapshot


def read_logs(
    snapshot: Snapshot,
    paths: list[str | Path],
    prefix: str | None = None,
    options: DigestOptions | None = None,
    jobs: int = 1,
) -> None:
    """The audit's log stage: one read of each file feeds the statistics, the N+1 loops and
    the lock analysis (snapshot.logs, snapshot.lock_log). Prefix: --log-line-prefix, else
    the audited server's log_line_prefix, else PostgreSQL's default. A log that cannot be
    read is a stage error; the audit goes on."""

    chosen = prefix or prefix_from_settings(snapshot.server.settings) or DEFAULT_PREFIX
    locks = for_snapshot(snapshot)
    stats = ReadStats()
    try:
        if jobs > 1:  # big stderr files in parallel pieces, merged
            snapshot.logs, locks, stats = ingest_parallel(paths, chosen, options, jobs, _catalog(snapshot))
        else:
            snapshot.logs = ingest(paths, chosen, options, listeners=[locks], stats=stats)
    except AuditError as exc:
        snapshot.record_error("logs", str(exc))
        return
    logs = snapshot.logs
    if logs.lines and not logs.records:
        snapshot.record_error("logs", why_unread(stats, chosen))
    if logs.lock_events:
        snapshot.lock_log = locks.result(logs.first_timestamp, logs.last_timestamp)


def why_unread(stats: ReadStats, prefix: str) -> str:
    """Why no entry was read from files that have lines: the real cause, in one line."""
    lines = f"{stats.lines} lines of {', '.join(stats.files)}"
    formats = set(stats.formats.values())
    if stats.not_utf8 >= stats.lines * 0.5:
        return (
            f"{lines}: not UTF-8 text ({stats.not_utf8} lines): is it compressed or binary? PostgreSQL logs "
            "are text (gzip files are read whatever their name)"
        )
    if formats == {"csvlog"}:
        widths = ", ".join(f"{n} rows of {w} fields" for w, n in sorted(stats.csv_field_counts.items()))
        known = ", ".join(f"{w} ({v})" for w, v in CSV_VERSIONS.items())
        return f"{lines}: not PostgreSQL csvlog rows ({widths or 'no row'}); csvlog has {known} fields" + (
            f"; first row: {stats.first_unmatched[:120]!r}" if stats.first_unmatched else ""
        )
    if formats == {"jsonlog"}:
        return f'{lines}: no line is a jsonlog entry (a JSON object with a "message" key, PostgreSQL 15+)' + (
            f"; first line: {stats.first_unmatched[:120]!r}" if stats.first_unmatched else ""
        )
    first = stats.first_unmatched or ""
    if first.lstrip().startswith("{"):
        return f"{lines}: these look like jsonlog lines: name the file .json"
    if _CSV_LIKE.match(first) and first.count(",") >= 20:
        return f"{lines}: these look like csvlog rows ({first.count(',') + 1} fields): name the file .csv"
    return (
        f"no log entry matched log_line_prefix {prefix!r} in {lines} (first line: {first[:120]!r}): "
        "pass the server's prefix with --log-line-prefix"
    )


_CSV_LIKE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? [^,]*,")


def log_only_snapshot() -> Snapshot:
    """A snapshot with no server facts, for auditing logs without a database."""
    return Snapshot(
        server=ServerInfo(version_num=0, version="unknown (logs only)", database="(logs)"),
        collected_at=dt.datetime.now(dt.UTC).isoformat(),
        tool_version=__version__,
    )


def has_server_target(dsn: str | None) -> bool:
    """Whether the user named a server (--dsn, DATABASE_URL or libpq's PG* variables)."""
    return bool(dsn) or any(os.environ.get(v) for v in ("DATABASE_URL", "PGHOST", "PGDATABASE", "PGSERVICE", "PGPORT"))
