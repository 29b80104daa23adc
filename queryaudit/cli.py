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
StoreOption = typer.Option(None, "--store", help="audit history: a SQLite file path or sqlite:/// URL, or "
                           "postgresql://user@host/db (default for reading: $QUERYAUDIT_STORE, else "
                           "~/.local/share/queryaudit/history.db)")
# Plan capture (queryaudit.collect.plans), shared by audit and snapshot.
ExplainOption = typer.Option(True, "--explain/--no-explain", help="EXPLAIN the top statements (ANALYZE for read-only ones)")
ExplainBudgetOption = typer.Option(60.0, "--explain-budget", min=0, help="seconds all EXPLAINs may take together")
ExplainTimeoutOption = typer.Option(10.0, "--explain-timeout", min=0.1,
                                    help="seconds one EXPLAIN ANALYZE may take (its statement_timeout); statements "
                                         "whose mean time exceeds it get a plain EXPLAIN")
AnalyzeDmlOption = typer.Option(False, "--analyze-dml", help="also EXPLAIN ANALYZE INSERT/UPDATE/DELETE, in a "
                                "transaction that is rolled back (refused on a standby)")
QueriesOption = typer.Option(None, "--queries", exists=True, dir_okay=False,
                             help="a file of concrete statements (';'-separated) to explain and report too")


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


def _print_version(value: bool) -> None:
    # Eager: runs while the options are parsed, before typer asks for a command.
    if value:
        console.print(f"queryaudit {__version__}", markup=False, highlight=False)
        raise typer.Exit(0)


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="print tracebacks"),
         version: bool = typer.Option(False, "--version", help="print the version and exit", is_eager=True,
                                      callback=_print_version)) -> None:
    STATE["debug"] = debug


def _progress():
    """A line per collection stage (spinner, bar when the stage counts, elapsed time), only on
    an interactive terminal. The callback takes (stage name[, done, total])."""
    if not err_console.is_terminal:
        return None, None
    from queryaudit.report.terminal import StageProgress

    status = StageProgress(err_console)
    status.start()
    return status, status


@app.command()
@handle_errors
def audit(
    dsn: Optional[str] = DsnOption,
    snapshot: Optional[Path] = typer.Option(None, "--snapshot", help="audit a saved snapshot instead of a server"),
    top: int = TopOption,
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the JSON report here"),
    save_snapshot: Optional[Path] = typer.Option(None, "--save-snapshot", help="also save the collected facts"),
    html_path: Optional[Path] = typer.Option(None, "--html", help="write the HTML report here (one self-contained file)"),
    markdown_path: Optional[Path] = typer.Option(None, "--markdown", help="write the Markdown report here"),
    redact: bool = typer.Option(False, "--redact", help="replace literals (strings, numbers, parameter values) "
                                                       "in every output"),
    sample_seconds: float = typer.Option(0, "--sample-seconds", min=0,
                                         help="also sample lock waits and open transactions for N seconds (0: off)"),
    explain: bool = ExplainOption,
    explain_budget: float = ExplainBudgetOption,
    explain_timeout: float = ExplainTimeoutOption,
    analyze_dml: bool = AnalyzeDmlOption,
    queries: Optional[Path] = QueriesOption,
    logs: Optional[list[Path]] = typer.Option(None, "--log", help="PostgreSQL log files to read too (stderr, csvlog, "
                                              "jsonlog; globs, directories, .gz); repeatable; no server needed"),
    log_line_prefix: Optional[str] = typer.Option(None, "--log-line-prefix", help="the log_line_prefix of the "
                                                  "stderr logs (default: the server's, else PostgreSQL's default)"),
    n1_min_executions: int = typer.Option(5, "--n-plus-one-min-executions", min=2,
                                          help="N+1 in logs: executions of one statement in a loop"),
    n1_min_ms: float = typer.Option(50.0, "--n-plus-one-min-ms", min=0,
                                    help="N+1 in logs: total milliseconds of one loop"),
    store: Optional[str] = StoreOption,
    target_name: Optional[str] = typer.Option(None, "--target", help="name this target in the history "
                                              "(default host:port/database)"),
    baseline: bool = typer.Option(False, "--baseline", help="compare with the last stored audit of the same "
                                  "target (per-statement change, new and resolved findings): report['baseline']"),
    targets: Optional[Path] = typer.Option(None, "--targets", help="audit every database of this targets.toml "
                                           "concurrently: one report each and an index page in --out-dir"),
    out_dir: Path = typer.Option(Path("queryaudit-reports"), "--out-dir", help="with --targets: where the reports go"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="with --targets: audits at once "
                                          "(default: the file's workers, else 4)"),
) -> None:
    """Collect (or load) a snapshot, run every check and write the reports."""
    from queryaudit.pipeline import AuditOptions, audit as audit_run
    from queryaudit.report import terminal, write_outputs

    options = AuditOptions(
        top=top, sample_seconds=sample_seconds, explain=explain, explain_budget_s=explain_budget,
        explain_statement_ms=int(explain_timeout * 1000), analyze_dml=analyze_dml, queries_file=queries,
        logs=list(logs or []), log_line_prefix=log_line_prefix, n_plus_one_min_executions=n1_min_executions,
        n_plus_one_min_run_ms=n1_min_ms, redact=redact)
    if targets is not None:
        from queryaudit.history.fleet import FleetOptions, output_formats

        if snapshot is not None or queries or save_snapshot or target_name:
            raise AuditError("--targets audits the databases of its file: --snapshot, --queries, "
                             "--save-snapshot and --target do not combine with it")
        return _audit_fleet(targets, out_dir, FleetOptions(
            audit=options, formats=output_formats({"json": json_path, "html": html_path, "markdown": markdown_path})),
            workers, store, baseline)
    status, progress = _progress() if snapshot is None else (None, None)
    try:
        run = audit_run(dsn, options, snapshot, progress)
    finally:
        if status:
            status.stop()
    snap, report = run.snapshot, run.report
    if save_snapshot:
        save_snapshot_file(snap, save_snapshot, redact)
    history_lines = []
    if store or baseline:
        from queryaudit.history.service import attach_history

        history_lines = attach_history(report, snap, store, record=bool(store), baseline=baseline,
                                       name=target_name, redact=redact)
    written = write_outputs(report, {"json": json_path, "html": html_path, "markdown": markdown_path})
    terminal.render(report, console)
    for line in history_lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    for path in written:
        console.print(f"wrote {path}", markup=False, highlight=False)


def _audit_fleet(targets: Path, out_dir: Path, options, workers: Optional[int], store: Optional[str],
                 baseline: bool) -> None:
    from queryaudit.history.fleet import run_fleet

    def done(result) -> None:
        if result.ok:
            console.print(f"ok      {result.target.name} ({result.seconds:.1f} s): "
                          + ", ".join(str(p) for p in result.outputs.values()), markup=False, highlight=False, soft_wrap=True)
        else:
            console.print(f"FAILED  {result.target.name} ({result.seconds:.1f} s): {result.error}",
                          markup=False, highlight=False, soft_wrap=True)

    results = run_fleet(targets, out_dir, options, workers=workers, store_url=store, baseline=baseline,
                        record=bool(store), on_done=done)
    failed = [r.target.name for r in results if not r.ok]
    console.print(f"wrote {out_dir / 'index.html'} and {out_dir / 'index.md'}", markup=False, highlight=False, soft_wrap=True)
    if failed:
        fail(f"{len(failed)} of {len(results)} targets failed ({', '.join(failed)}): see {out_dir / 'index.html'}")


def save_snapshot_file(snap, path: Path, redact: bool = False) -> None:
    if redact:
        import json

        from queryaudit.redact import redact as redact_values

        path.write_text(json.dumps(redact_values(snap.to_dict()), indent=1, default=str))
    else:
        snap.save(path)


@app.command("snapshot")
@handle_errors
def snapshot_cmd(
    dsn: Optional[str] = DsnOption,
    output: Path = typer.Option(..., "-o", "--output", help="where to write the snapshot JSON"),
    top: int = TopOption,
    explain: bool = ExplainOption,
    explain_budget: float = ExplainBudgetOption,
    explain_timeout: float = ExplainTimeoutOption,
    analyze_dml: bool = AnalyzeDmlOption,
    queries: Optional[Path] = QueriesOption,
) -> None:
    """Collect the facts from a server into a JSON file, for auditing later without it."""
    from queryaudit.connect import resolve_dsn
    from queryaudit.pipeline import AuditOptions, live_snapshot

    snap = live_snapshot(resolve_dsn(dsn), AuditOptions(top=top, explain=explain, explain_budget_s=explain_budget,
                                                        explain_statement_ms=int(explain_timeout * 1000),
                                                        analyze_dml=analyze_dml, queries_file=queries))
    snap.save(output)
    console.print(f"wrote {output}: {len(snap.statements)} statements, {len(snap.tables)} tables, "
                  f"{len(snap.indexes)} indexes{' (partial)' if snap.partial else ''}", markup=False)


@app.command()
@handle_errors
def locks(
    dsn: Optional[str] = DsnOption,
    seconds: Optional[float] = typer.Option(None, "--seconds", min=0.1,
                                            help="how long to sample (default 10; with --log: no sampling unless given)"),
    rate: float = typer.Option(10, "--rate", min=0.1, max=50, help="samples per second"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the lock facts and findings here"),
    long_transaction_s: float = typer.Option(60, "--long-transaction-seconds", min=0,
                                             help="report transactions open longer than this"),
    idle_s: float = typer.Option(10, "--idle-in-transaction-seconds", min=0,
                                 help="report sessions idle in a transaction longer than this"),
    logs: Optional[list[Path]] = typer.Option(None, "--log", help="also (or only) analyse these logs: "
                                              "log_lock_waits waits, deadlocks, lock timeouts; repeatable"),
    log_line_prefix: Optional[str] = typer.Option(None, "--log-line-prefix", help="log_line_prefix of stderr logs"),
) -> None:
    """Sample lock waits for N seconds (and/or read them from logs): blocking chains, top
    blockers, long and idle transactions."""
    from queryaudit.collect.locks import SampleOptions, collect_lock_snapshot
    from queryaudit.connect import resolve_dsn
    from queryaudit.lock_report import locks_result, print_locks

    options = SampleOptions(seconds=seconds or 10, rate_hz=rate, long_transaction_s=long_transaction_s,
                            idle_in_transaction_s=idle_s)
    if logs:
        from queryaudit.lock_log import lock_log_from_files
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
        import json

        json_path.write_text(json.dumps(result, indent=1, default=str))
        console.print(f"wrote {json_path}", markup=False, highlight=False)


@app.command("advise-indexes")
@handle_errors
def advise_indexes(
    dsn: Optional[str] = DsnOption,
    statements: int = typer.Option(50, "--statements", min=1, help="top statements (by total time) to consider"),
    budget_mb: Optional[float] = typer.Option(None, "--index-budget-mb", min=0, help="storage for all proposed "
                                              "indexes together (default: no limit)"),
    max_indexes: int = typer.Option(10, "--max-indexes", min=1, help="propose at most this many indexes"),
    threshold: float = typer.Option(0.5, "--threshold", min=0.01, max=1.0, help="keep an index for a statement "
                                    "only when it cuts the statement's cost by this fraction"),
    verify_real: bool = typer.Option(False, "--verify-real", help="scratch/staging only: build each proposed index "
                                     "for real, EXPLAIN ANALYZE before and after, roll back"),
    explain: bool = ExplainOption,
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the advice and its findings as JSON here"),
) -> None:
    """Index advice alone: candidates from the SQL and plans, verified with HypoPG, one set for the workload."""
    from queryaudit.advisor.command import REAL_WARNING, render, run_advisor, write_json
    from queryaudit.advisor.stage import AdvisorOptions
    from queryaudit.connect import resolve_dsn

    if verify_real:
        err_console.print(REAL_WARNING, markup=False, highlight=False)
    options = AdvisorOptions(statements=statements, threshold=threshold, budget_mb=budget_mb,
                             max_indexes=max_indexes, verify_real=verify_real)
    snap = run_advisor(resolve_dsn(dsn), options, explain=explain)
    render(snap, console)
    if json_path:
        write_json(snap, json_path)
        console.print(f"wrote {json_path}", markup=False, highlight=False)


@app.command("checks")
def list_checks() -> None:
    """List the checks with their ids."""
    from queryaudit.checks import all_checks

    for check in all_checks():
        console.print(f"{check.id:24} {check.title}", markup=False, highlight=False)


@app.command("plan")
@handle_errors
def plan_cmd(
    file: str = typer.Argument(..., help="an EXPLAIN output (text or JSON, as psql, pgAdmin or a log prints it); - for stdin"),
    as_json: bool = typer.Option(False, "--json", help="print the plan as EXPLAIN (FORMAT JSON) would"),
) -> None:
    """Read a saved EXPLAIN plan and print its tree: rows estimated vs actual, time per node."""
    import json

    from queryaudit.plan_text import load_plan, tree_lines

    if file == "-":
        text = sys.stdin.read()
    else:
        path = Path(file)
        if not path.is_file():
            raise AuditError(f"plan file not found: {file}")
        text = path.read_bytes().decode("utf-8", errors="replace")
    try:
        explain = load_plan(text)
    except ValueError as exc:
        raise AuditError(f"{file}: {exc}") from exc
    if as_json:
        sys.stdout.write(json.dumps([explain], indent=2) + "\n")
        return
    for line in tree_lines(explain):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


@app.command()
@handle_errors
def docs(
    out: Path = typer.Option(Path("checks"), "--out", help="folder for the generated check pages"),
    check_only: bool = typer.Option(False, "--check", help="exit 1 when a page is missing or stale"),
) -> None:
    """Generate checks/<id>.md from each check's docstring."""
    from queryaudit.docs import write_pages
    from queryaudit.migrations.docs import write_pages as write_migration_pages

    stale = write_pages(out, dry_run=check_only)
    stale += [f"migrations/{n}" for n in write_migration_pages(out / "migrations", dry_run=check_only)]
    if check_only and stale:
        err_console.print(f"stale check pages: {', '.join(stale)} (run: queryaudit docs)")
        raise typer.Exit(1)


@app.command()
@handle_errors
def compare(
    before: Path = typer.Argument(..., help="the JSON report before the change (queryaudit audit --json)"),
    after: Path = typer.Argument(..., help="the JSON report after it"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the comparison as JSON here"),
    html_path: Optional[Path] = typer.Option(None, "--html", help="write the comparison as HTML here"),
    markdown_path: Optional[Path] = typer.Option(None, "--markdown", help="write the comparison as Markdown here"),
) -> None:
    """Compare two reports of the same database: statements faster or slower, findings resolved or new,
    and a verdict per applied fix."""
    from queryaudit.compare import build_comparison, load_report
    from queryaudit.report import terminal, write_outputs

    comparison = build_comparison(load_report(before), load_report(after))
    written = write_outputs(comparison, {"json": json_path, "html": html_path, "markdown": markdown_path})
    terminal.render_compare(comparison, console)
    for path in written:
        console.print(f"wrote {path}", markup=False, highlight=False)


@app.command()
@handle_errors
def demo(
    out_dir: Path = typer.Option(Path("reports"), "--out-dir", help="where the demo reports go"),
    scale: int = typer.Option(1, "--scale", min=1, help="fixture size multiplier"),
    rounds: int = typer.Option(2, "--rounds", min=1, help="workload rounds before the audit"),
    dsn: Optional[str] = typer.Option(None, "--dsn", help="run on this throwaway server instead of the embedded "
                                      "one (it loads the fixture, resets pg_stat_statements, applies fixes)"),
    apply: bool = typer.Option(True, "--apply/--no-apply", help="apply the safe top fixes, re-run and compare"),
) -> None:
    """Start the embedded PostgreSQL 18, load the shop fixture, run its workload and audit it; then apply
    the top fixes, run it again and compare (reports/demo.html, demo-compare.html, .md, .json)."""
    from queryaudit.demo import run_demo

    run_demo(out_dir, scale=scale, rounds=rounds, console=console, apply=apply, dsn=dsn)


@app.command()
@handle_errors
def history(
    store: Optional[str] = StoreOption,
    target: Optional[str] = typer.Option(None, "--target", help="the target (its name, host:port/database key, "
                                         "or database name); default: the only one stored"),
    statement: Optional[str] = typer.Option(None, "--statement", help="trend of one statement: its queryid or "
                                            "a piece of its text"),
    finding: Optional[str] = typer.Option(None, "--finding", help="trend of a finding: its id, or a check id"),
    limit: int = typer.Option(30, "--limit", min=1, help="the most recent audits to show"),
    html_path: Optional[Path] = typer.Option(None, "--html", help="also write an HTML page with charts here"),
) -> None:
    """Audits stored for a target, and the trend of a statement or a finding over them."""
    from queryaudit.history import render
    from queryaudit.history.budgets import load_config
    from queryaudit.history.service import open_store

    db = open_store(store, None if store else load_config(), create=False)
    try:
        targets = db.targets()
        if target is None and len(targets) > 1 and not (statement or finding):
            render.print_targets(console, targets, db.display)
            return
        chosen = db.resolve_target(target)
        audits = db.audits(chosen["id"], limit)
        ids = {a["id"] for a in audits}
        picked_statement = picked_finding = None
        if statement:
            matches = db.find_statements(chosen["id"], statement)
            exact = [m for m in matches if m[0] == statement]
            if len(exact) == 1 or len(matches) == 1:
                queryid, query = (exact or matches)[0]
            elif not matches:
                raise AuditError(f"no statement {statement!r} (queryid or text) in the history of {chosen['name']}")
            else:
                for queryid, query in matches:
                    console.print(f"{queryid}  {' '.join(query.split())[:100]}", markup=False, highlight=False, soft_wrap=True)
                raise AuditError(f"{len(matches)} statements match {statement!r}: pass one queryid with --statement")
            rows = [r for r in db.statement_trend(chosen["id"], queryid) if r["id"] in ids]
            picked_statement = (queryid, query, rows)
        if finding:
            picked_finding = (finding, [r for r in db.finding_trend(chosen["id"], finding) if r["id"] in ids])
    finally:
        db.close()
    if not (picked_statement or picked_finding):
        render.print_table(console, f"Audits of {chosen['name']} ({len(audits)} shown)", render.AUDIT_COLUMNS,
                           render.audit_rows(audits, notes=False))
        for a in audits:
            if a["window_note"]:
                console.print(f"#{a['id']}: {a['window_note']}", markup=False, highlight=False, soft_wrap=True)
    if picked_statement:
        queryid, query, rows = picked_statement
        render.print_table(console, f"Statement {queryid}: {' '.join(query.split())[:80]}",
                           render.STATEMENT_COLUMNS, render.statement_rows(rows))
    if picked_finding:
        render.print_table(console, f"Finding {finding}", render.FINDING_COLUMNS,
                           render.finding_rows(picked_finding[1]))
    if html_path:
        render.write_history_page(html_path, render.history_page(chosen, audits, picked_statement, picked_finding))
        console.print(f"wrote {html_path}", markup=False, highlight=False, soft_wrap=True)


@app.command()
@handle_errors
def check(
    config: Optional[Path] = typer.Option(None, "--config", help="queryaudit.toml or pyproject.toml "
                                          "([tool.queryaudit]); default: found in this folder or above"),
    store: Optional[str] = StoreOption,
    dsn: Optional[str] = typer.Option(None, "--dsn", help="audit this server now and hold it to the budgets "
                                      "against the last stored audit of the same target"),
    snapshot: Optional[Path] = typer.Option(None, "--snapshot", help="the same, from a saved snapshot"),
    report: Optional[Path] = typer.Option(None, "--report", help="hold a JSON report to the budgets"),
    baseline_report: Optional[Path] = typer.Option(None, "--baseline-report", help="with --report: the JSON "
                                                   "report to compare it with"),
    target: Optional[str] = typer.Option(None, "--target", help="the target in the history (name or key)"),
    record: bool = typer.Option(False, "--record", help="with --dsn/--snapshot: also store this audit"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the verdict and comparison (and the "
                                             "fresh audit's report) here"),
    top: int = TopOption,
    explain: bool = ExplainOption,
    explain_budget: float = ExplainBudgetOption,
    explain_timeout: float = ExplainTimeoutOption,
    analyze_dml: bool = AnalyzeDmlOption,
    sample_seconds: float = typer.Option(0, "--sample-seconds", min=0, help="with --dsn: also sample lock waits"),
    logs: Optional[list[Path]] = typer.Option(None, "--log", help="with --dsn/--snapshot: PostgreSQL logs to read "
                                              "too, as audit --log"),
    log_line_prefix: Optional[str] = typer.Option(None, "--log-line-prefix", help="log_line_prefix of stderr logs"),
) -> None:
    """Budgets and suppressions (queryaudit.toml): exit 1 when a budget is broken, naming it; 0 when all hold."""
    from queryaudit.history.service import run_check
    from queryaudit.pipeline import AuditOptions

    options = AuditOptions(top=top, explain=explain, explain_budget_s=explain_budget,
                           explain_statement_ms=int(explain_timeout * 1000), analyze_dml=analyze_dml,
                           sample_seconds=sample_seconds, logs=list(logs or []), log_line_prefix=log_line_prefix)
    outcome = run_check(config, store, dsn, snapshot, report, baseline_report, target, record, options)
    verdict = outcome.verdict
    for line in outcome.lines + verdict.notes:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    for s in verdict.expired:
        console.print(f"expired suppression: {s.id} (expired {s.expires.isoformat()}; reason was: {s.reason}) "
                      "no longer suppresses", markup=False, highlight=False, soft_wrap=True)
    for item in verdict.suppressed:
        console.print(f"suppressed: {item['id']} until {item['expires']} ({item['reason']})",
                      markup=False, highlight=False, soft_wrap=True)
    if json_path:
        import json

        data = {"verdict": verdict.to_dict(), "comparison": outcome.comparison}
        if outcome.report is not None:
            data["report"] = outcome.report
        json_path.write_text(json.dumps(data, indent=1, default=str))
    if verdict.ok:
        console.print(f"ok: all budgets hold ({verdict.judged_statements} statements judged)",
                      markup=False, highlight=False, soft_wrap=True)
        return
    for v in verdict.violations:
        console.print(f"BROKEN {v.budget}: {v.message}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"{len(verdict.violations)} budget(s) broken", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(1)


@app.command("review-migration")
@handle_errors
def review_migration(
    paths: Optional[list[str]] = typer.Argument(None, help="SQL files, directories (applied in natural order: "
                                                "2_x.sql before 10_y.sql) or - for stdin"),
    pg_version: Optional[str] = typer.Option(None, "--pg-version", help="target PostgreSQL version for the rules "
                                             "(default: the scratch server's with --dsn, else 15)"),
    assume_in_transaction: bool = typer.Option(False, "--assume-in-transaction", help="the migration tool wraps "
                                               "each file in a transaction"),
    dsn: Optional[str] = typer.Option(None, "--dsn", help="SCRATCH database holding the schema: the migration is "
                                      "applied to a throwaway copy of it (CREATE DATABASE ... TEMPLATE) or in a "
                                      "rolled-back transaction, to measure locks, rewrites and plans. This WRITES "
                                      "to that server: never give a production DSN"),
    workload: Optional[Path] = typer.Option(None, "--workload", help="a queryaudit JSON report or snapshot: its "
                                            "top statements are EXPLAINed before and after (needs --dsn)"),
    top: int = typer.Option(20, "--top", min=1, help="how many top statements of --workload to compare"),
    cost_threshold: float = typer.Option(0.25, "--cost-threshold", min=0.0, help="plan cost growth reported as a "
                                         "regression (0.25 = +25%)"),
    select: Optional[list[str]] = typer.Option(None, "--rule", help="run only these rules (repeat)"),
    ignore: Optional[list[str]] = typer.Option(None, "--ignore", help="skip these rules (repeat)"),
    fail_on: str = typer.Option("high", "--fail-on", help="exit 1 when a finding has this severity or worse: "
                                "critical, high, medium, low, info, never"),
    sarif: Optional[Path] = typer.Option(None, "--sarif", help="write SARIF 2.1.0 (GitHub code scanning) here"),
    junit: Optional[Path] = typer.Option(None, "--junit", help="write JUnit XML here"),
    markdown: Optional[Path] = typer.Option(None, "--markdown", help="write a Markdown PR comment here"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the JSON review here"),
    github: Optional[bool] = typer.Option(None, "--github-annotations/--no-github-annotations", help="print "
                                          "::error annotations (default: when GITHUB_ACTIONS=true)"),
    list_rules_flag: bool = typer.Option(False, "--list-rules", help="list the rules and exit"),
) -> None:
    """Review SQL migrations: risky DDL (locks, rewrites, breaking changes), and with --dsn a measured run
    on a scratch database with the plan changes of the top production statements."""
    from queryaudit.migrations.command import ReviewOptions, list_rules, run_review

    if list_rules_flag:
        list_rules(console)
        return
    code = run_review(ReviewOptions(paths=paths or [], pg_version=pg_version,
                                    assume_in_transaction=assume_in_transaction, dsn=dsn, workload=workload,
                                    top=top, cost_threshold=cost_threshold, select=select or [],
                                    ignore=ignore or [], fail_on=fail_on, sarif=sarif, junit=junit,
                                    markdown=markdown, json=json_path, github=github), console)
    if code:
        raise typer.Exit(code)


def run() -> None:  # console script entry point
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    run()
