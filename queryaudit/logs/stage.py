"""The audit's log stage: ingest --log files into snapshot.logs (live or saved snapshot)."""
from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from queryaudit import __version__
from queryaudit.errors import AuditError
from queryaudit.logs import prefix_from_settings
from queryaudit.logs.digest import DigestOptions, ingest
from queryaudit.logs.prefix import DEFAULT_PREFIX
from queryaudit.snapshot import ServerInfo, Snapshot


def attach_logs(snapshot: Snapshot, paths: list[str | Path], prefix: str | None = None,
                options: DigestOptions | None = None) -> None:
    """Prefix: --log-line-prefix, else the audited server's log_line_prefix, else PostgreSQL's
    default. A log that cannot be read is a stage error; the audit goes on."""
    chosen = prefix or prefix_from_settings(snapshot.server.settings) or DEFAULT_PREFIX
    try:
        snapshot.logs = ingest(paths, chosen, options)
    except AuditError as exc:
        snapshot.record_error("logs", str(exc))
        return
    logs = snapshot.logs
    if logs.lines and not logs.records:
        snapshot.record_error("logs", f"no log entry matched log_line_prefix {chosen!r} in {logs.lines} lines: "
                                      "pass the server's prefix with --log-line-prefix")


def log_only_snapshot() -> Snapshot:
    """A snapshot with no server facts, for auditing logs without a database."""
    return Snapshot(server=ServerInfo(version_num=0, version="unknown (logs only)", database="(logs)"),
                    collected_at=dt.datetime.now(dt.timezone.utc).isoformat(), tool_version=__version__)


def has_server_target(dsn: str | None) -> bool:
    """Whether the user named a server (--dsn, DATABASE_URL or libpq's PG* variables)."""
    return bool(dsn) or any(os.environ.get(v) for v in ("DATABASE_URL", "PGHOST", "PGDATABASE", "PGSERVICE",
                                                          "PGPORT"))
