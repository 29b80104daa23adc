"""The queryaudit command line: parse options, run the pipeline, map errors to exit codes.

Exit codes: 0 success, 1 a gate failed (budgets, --fail-on), 2 an error the user can
act on (printed as one line; the traceback only with --debug).
"""
from __future__ import annotations

import functools
import sys
import traceback
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from queryaudit import __version__
from queryaudit.errors import AuditError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="PostgreSQL query performance auditor: find what costs database time, and the fix.")
console = Console(stderr=False)
err_console = Console(stderr=True)
STATE = {"debug": False}

DsnOption = typer.Option(None, "--dsn", help="libpq connection string or URI; default DATABASE_URL, then PG* variables")
TopOption = typer.Option(20, "--top", min=1, help="statements to report on (by total time)")


def fail(message: str, code: int = 2) -> None:
    # Plain write: rich would wrap a long message onto several lines.
    sys.stderr.write(f"queryaudit: error: {' '.join(message.split())}\n")
    raise typer.Exit(code)


def handle_errors(fn):
    """One line and exit 2 for anything the user can fix; never a traceback unless --debug."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except AuditError as exc:
            if STATE["debug"]:
                traceback.print_exc()
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except Exception as exc:  # a bug: still one line, with a way to see more
            if STATE["debug"]:
                traceback.print_exc()
            fail(f"internal error: {type(exc).__name__}: {exc} (re-run with --debug for the traceback)")

    return wrapper


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="print tracebacks"),
         version: bool = typer.Option(False, "--version", help="print the version and exit")) -> None:
    STATE["debug"] = debug
    if version:
        console.print(f"queryaudit {__version__}")
        raise typer.Exit(0)


def _progress():
    """A spinner naming the collection stage, only on an interactive terminal."""
    if not err_console.is_terminal:
        return None, None
    status = err_console.status("collecting")
    status.start()
    return status, lambda name: status.update(f"collecting: {name}")


@app.command()
@handle_errors
def audit(
    dsn: Optional[str] = DsnOption,
    snapshot: Optional[Path] = typer.Option(None, "--snapshot", help="audit a saved snapshot instead of a server"),
    top: int = TopOption,
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the JSON report here"),
    save_snapshot: Optional[Path] = typer.Option(None, "--save-snapshot", help="also save the collected facts"),
) -> None:
    """Collect (or load) a snapshot, run every check and write the reports."""
    from queryaudit.connect import resolve_dsn
    from queryaudit.pipeline import AuditOptions, analyse, collect_live
    from queryaudit.report import terminal, write_outputs
    from queryaudit.snapshot import Snapshot

    if snapshot is not None:
        snap = Snapshot.load(snapshot)
    else:
        status, progress = _progress()
        try:
            snap = collect_live(resolve_dsn(dsn), AuditOptions(top=top), progress)
        finally:
            if status:
                status.stop()
    if save_snapshot:
        snap.save(save_snapshot)
    report = analyse(snap, top)
    written = write_outputs(report, {"json": json_path})
    terminal.render(report, console)
    for path in written:
        console.print(f"wrote {path}", markup=False, highlight=False)


@app.command("snapshot")
@handle_errors
def snapshot_cmd(
    dsn: Optional[str] = DsnOption,
    output: Path = typer.Option(..., "-o", "--output", help="where to write the snapshot JSON"),
    top: int = TopOption,
) -> None:
    """Collect the facts from a server into a JSON file, for auditing later without it."""
    from queryaudit.connect import resolve_dsn
    from queryaudit.pipeline import AuditOptions, collect_live

    snap = collect_live(resolve_dsn(dsn), AuditOptions(top=top))
    snap.save(output)
    console.print(f"wrote {output}: {len(snap.statements)} statements, {len(snap.tables)} tables, "
                  f"{len(snap.indexes)} indexes{' (partial)' if snap.partial else ''}", markup=False)


@app.command("checks")
def list_checks() -> None:
    """List the checks with their ids."""
    from queryaudit.checks import all_checks

    for check in all_checks():
        console.print(f"{check.id:24} {check.title}", markup=False, highlight=False)


@app.command()
@handle_errors
def docs(
    out: Path = typer.Option(Path("checks"), "--out", help="folder for the generated check pages"),
    check_only: bool = typer.Option(False, "--check", help="exit 1 when a page is missing or stale"),
) -> None:
    """Generate checks/<id>.md from each check's docstring."""
    from queryaudit.docs import write_pages

    stale = write_pages(out, dry_run=check_only)
    if check_only and stale:
        err_console.print(f"stale check pages: {', '.join(stale)} (run: queryaudit docs)")
        raise typer.Exit(1)


@app.command()
@handle_errors
def demo(
    out_dir: Path = typer.Option(Path("reports"), "--out-dir", help="where the demo reports go"),
    scale: int = typer.Option(1, "--scale", min=1, help="fixture size multiplier"),
    rounds: int = typer.Option(2, "--rounds", min=1, help="workload rounds before the audit"),
) -> None:
    """Start the embedded PostgreSQL 18, load the shop fixture, run its workload and audit it."""
    from queryaudit.demo import run_demo

    run_demo(out_dir, scale=scale, rounds=rounds, console=console)


def run() -> None:  # console script entry point
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    run()
