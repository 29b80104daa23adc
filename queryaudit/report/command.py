"""`queryaudit audit`, `snapshot` and `compare`: run the pipeline, write the reports, print
the summary. The command line (cli.py) only declares their options."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from queryaudit.advisor.command import REAL_WARNING
from queryaudit.before_after import build_comparison, load_report
from queryaudit.connect import resolve_dsn
from queryaudit.pipeline import AuditOptions, is_live, live_snapshot, open_source, run_audit
from queryaudit.redact import redact as redact_values
from queryaudit.report import terminal, write_outputs


def stage_progress(err_console: Console):
    """A line per collection stage (spinner, bar when the stage counts, elapsed time), only on
    an interactive terminal. Returns (display to stop, callback taking (stage name[, done, total]))."""
    if not err_console.is_terminal:
        return None, None
    status = terminal.StageProgress(err_console)
    status.start()
    return status, status


def _say(console: Console, line: str) -> None:
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def save_snapshot_file(snap, path: Path, redact: bool = False) -> None:
    if redact:
        path.write_text(json.dumps(redact_values(snap.to_dict()), indent=1, default=str))
    else:
        snap.save(path)


def run_audit_command(
    dsn: str | None,
    snapshot: Path | None,
    options: AuditOptions,
    outputs: dict[str, Path | None],
    save_snapshot: Path | None,
    store: str | None,
    target_name: str | None,
    baseline: bool,
    console: Console,
    err_console: Console,
) -> None:
    """Collect (or load) a snapshot, run every check and write the reports."""
    live = is_live(dsn, snapshot, options)
    if live and options.verify is not None and options.verify.verify_real:
        err_console.print(REAL_WARNING, markup=False, highlight=False)
    status, progress = stage_progress(err_console) if live else (None, None)
    try:
        source = open_source(dsn, snapshot, options, progress)
    finally:
        if status:
            status.stop()
    if store or baseline:
        from queryaudit.history.service import index_first_seen  # SQLAlchemy: only with a store

        # An index younger than the unused-index window is judged by its age in the store.
        source.extras["index_first_seen"] = index_first_seen(source, store, target_name)
    run = run_audit(source, options, logs_read=live)  # a live source's "logs" stage read them
    if save_snapshot:
        save_snapshot_file(run.snapshot, save_snapshot, options.redact)
    history_lines = []
    if store or baseline:
        from queryaudit.history.service import attach_history  # SQLAlchemy: only with a store

        history_lines = attach_history(
            run.report,
            run.snapshot,
            store,
            record=bool(store),
            baseline=baseline,
            name=target_name,
            redact=options.redact,
        )
    written = write_outputs(run.report, outputs)
    terminal.render(run.report, console)
    for line in history_lines:
        _say(console, line)
    for path in written:
        _say(console, f"wrote {path}")


def run_snapshot_command(dsn: str | None, output: Path, options: AuditOptions, console: Console) -> None:
    """Collect the facts from a server into a JSON file, for auditing later without it."""
    snap = live_snapshot(resolve_dsn(dsn), options)
    save_snapshot_file(snap, output, options.redact)
    _say(
        console,
        f"wrote {output}: {len(snap.statements)} statements, {len(snap.tables)} tables, "
        f"{len(snap.indexes)} indexes{' (partial)' if snap.partial else ''}",
    )


def run_compare_command(before: Path, after: Path, outputs: dict[str, Path | None], console: Console) -> None:
    """Compare two reports of the same database."""
    comparison = build_comparison(load_report(before), load_report(after))
    written = write_outputs(comparison, outputs)
    terminal.render_compare(comparison, console)
    for path in written:
        _say(console, f"wrote {path}")
