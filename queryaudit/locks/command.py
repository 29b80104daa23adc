"""`queryaudit locks`: sample lock waits for N seconds and/or read them from logs, then print
blocking chains, top blockers, long and idle transactions. cli.py only declares the options."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console


def run_locks_command(
    dsn: str | None,
    seconds: float | None,
    rate: float,
    json_path: Path | None,
    long_transaction_s: float,
    idle_s: float,
    logs: list[Path] | None,
    log_line_prefix: str | None,
    console: Console,
    err_console: Console,
) -> None:
    # deferred: per-command imports, as in cli.py (the command's start-up pays only for what it runs)
    from queryaudit.connect import resolve_dsn
    from queryaudit.locks.report import locks_result, print_locks
    from queryaudit.locks.sampling import SampleOptions, collect_lock_snapshot

    options = SampleOptions(
        seconds=seconds or 10, rate_hz=rate, long_transaction_s=long_transaction_s, idle_in_transaction_s=idle_s
    )
    if logs:
        from queryaudit.locks.log import lock_log_from_files  # deferred: only with --logs
        from queryaudit.logs.stage import has_server_target, log_only_snapshot

        if has_server_target(dsn):  # names for the relation OIDs the log shows; sampling only when asked
            snap = collect_lock_snapshot(resolve_dsn(dsn), options if seconds else None)
        else:
            snap = log_only_snapshot()
        snap.lock_log = lock_log_from_files(logs, log_line_prefix, snap)
    else:
        status = err_console.status(f"sampling locks for {options.seconds:g} s") if err_console.is_terminal else None
        if status:
            status.start()
        try:
            snap = collect_lock_snapshot(resolve_dsn(dsn), options)
        finally:
            if status:
                status.stop()
    result = locks_result(snap)
    print_locks(result, console)
    if json_path:
        json_path.write_text(json.dumps(result, indent=1, default=str))
        console.print(f"wrote {json_path}", markup=False, highlight=False)
