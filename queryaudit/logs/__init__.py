"""PostgreSQL log ingest: stderr, csvlog and jsonlog files as a stream of typed events.

Event API (for the N+1 detection here and the lock-contention code):

    from queryaudit.logs import iter_events, LockEvent, StatementEvent

    for event in iter_events(["/var/log/postgresql/*.log*"], prefix="%m [%p] %q%u@%d "):
        if isinstance(event, LockEvent): ...

`iter_events(paths, prefix=None, stats=None, log_format=None)` yields events in log
order, reading each file line by line (globs, directories and `.gz` accepted; the
format is detected per file: `.csv`/`.json` names or the first line). `prefix` is the
server's `log_line_prefix` for stderr files (default `%m [%p] `). Pass a
`ReadStats()` as `stats` to get the counts of lines, records and malformed lines
(which are skipped, never raised).

Every event (`LogEvent`) has: timestamp (text as logged), pid, session_id (`%c`),
line_num, vxid, xid, user, database, application, host, queryid (`%Q`, None when 0),
sqlstate, severity, source (file:line) and `session_key` (session_id, else pid).

- `StatementEvent`: query, duration_ms (None under log_statement), phase (simple,
  execute; parse and bind from csvlog/jsonlog only: the stderr reader skips them, the
  execute line that follows carries the statement), prepared_name, parameters (logged
  values, quoted, in $n order).
- `PlanEvent`: auto_explain output: query, duration_ms, plan_text or plan_json.
- `LockEvent`: kind (waiting, acquired, deadlock, deadlock-avoided, detected, timeout),
  lock_mode, lock_object (as logged), lock_type, relation_oid, relation_name (from
  CONTEXT), database_oid, waited_ms, holders and wait_queue (pids from DETAIL; for a
  deadlock, the blocking and waiting pids of the cycle), statement, detail, context.
- `TempFileEvent`: path, size_bytes, statement.
- `SessionEndEvent`: a `disconnection:` line (log_disconnections).

`ingest(paths, prefix, options)` (queryaudit.logs.digest) aggregates the same stream into
`queryaudit.logs.facts.LogFacts` for the snapshot: per-statement latency percentiles and
the N+1 loops.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from queryaudit.logs.digest import ingest as _ingest
from queryaudit.logs.events import LockEvent, LogEvent, PlanEvent, SessionEndEvent, StatementEvent, TempFileEvent
from queryaudit.logs.messages import to_events
from queryaudit.logs.prefix import DEFAULT_PREFIX
from queryaudit.logs.reader import ReadStats, expand_paths, read_records

__all__ = [
    "iter_events",
    "ingest",
    "ReadStats",
    "LogEvent",
    "StatementEvent",
    "PlanEvent",
    "LockEvent",
    "TempFileEvent",
    "SessionEndEvent",
    "DEFAULT_PREFIX",
    "expand_paths",
    "prefix_from_settings",
]


def iter_events(
    paths: Iterable[str | Path],
    prefix: str | None = None,
    stats: ReadStats | None = None,
    log_format: str | None = None,
) -> Iterator[LogEvent]:
    for record in read_records(paths, prefix, stats, log_format):
        yield from to_events(record)


def prefix_from_settings(settings: dict[str, str] | None) -> str | None:
    """The server's log_line_prefix from the snapshot's settings (pg_settings text)."""
    value = (settings or {}).get("log_line_prefix")
    return value if value else None


def ingest(paths, prefix=None, options=None, log_format=None):
    return _ingest(paths, prefix, options, log_format)
