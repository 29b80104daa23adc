"""The queryaudit command line: declarations only. Each command declares its options and calls
its feature's command module (report/command.py, history/command.py, advisor/command.py,
migrations/command.py, ...), imported when the command runs so that every command starts fast.

Exit codes: 0 success, 1 a gate failed (budgets, --fail-on), 2 an error the user can
act on (printed as one line; the traceback only with --debug).
"""

from __future__ import annotations

import functools
import sys
import traceback
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from queryaudit import __version__
from queryaudit.errors import AuditError, quiet_broken_pipe
from queryaudit.n_plus_one import MIN_EXECUTIONS, ROUND_TRIP_MS
from queryaudit.plans.limits import DEFAULT_BUDGET_S, DEFAULT_STATEMENT_LIMIT_MS


class _Console(Console):
    def on_broken_pipe(self) -> None:  # rich exits 1, which is "a gate failed" here
        self.quiet = True
        raise SystemExit(quiet_broken_pipe())


console = _Console(stderr=False)
err_console = _Console(stderr=True)
# Rich's help draws options in a table and cuts long option names ("--n-plus-one-min-execu…")
# when it runs out of columns: a pipe, CI log or narrow terminal gets click's plain help,
# which wraps instead. 100 columns hold every option table unclipped.
RICH_HELP_MIN_WIDTH = 100
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich" if console.is_terminal and console.width >= RICH_HELP_MIN_WIDTH else None,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="PostgreSQL query performance auditor: find what costs database time, and the fix.",
)
STATE = {"debug": False}

# Option groups of `audit` (and `fleet`) in --help.
SOURCE, PLANS, VERIFY, LOGS, LOCKS, CHECKS, OUTPUT, HISTORY, FLEET = (
    "Source",
    "Plans (EXPLAIN)",
    "Fix verification",
    "Logs",
    "Lock sampling",
    "Checks",
    "Output",
    "History",
    "Fleet",
)

Dsn = Annotated[
    Optional[str],
    typer.Option(
        "--dsn", help="libpq connection string or URI; default DATABASE_URL, then PG* variables", rich_help_panel=SOURCE
    ),
]
Top = Annotated[
    int, typer.Option("--top", min=1, help="statements to report on (by total time)", rich_help_panel=OUTPUT)
]
Store = Annotated[
    Optional[str],
    typer.Option(
        "--store",
        help="audit history: a SQLite file path or sqlite:/// URL, or postgresql://user@host/db (default for "
        "reading: $QUERYAUDIT_STORE, else ~/.local/share/queryaudit/history.db)",
        rich_help_panel=HISTORY,
    ),
]
# Plan capture (queryaudit.plans.stage), shared by audit, fleet, check and snapshot.
Explain = Annotated[
    bool,
    typer.Option(
        "--explain/--no-explain", help="EXPLAIN the top statements (ANALYZE for read-only ones)", rich_help_panel=PLANS
    ),
]
ExplainBudget = Annotated[
    float, typer.Option("--explain-budget", min=0, help="seconds all EXPLAINs may take together", rich_help_panel=PLANS)
]
ExplainTimeout = Annotated[
    float,
    typer.Option(
        "--explain-timeout",
        min=0.1,
        help="seconds one EXPLAIN ANALYZE may take (its statement_timeout); statements "
        "whose mean time exceeds it get a plain EXPLAIN",
        rich_help_panel=PLANS,
    ),
]
AnalyzeDml = Annotated[
    bool,
    typer.Option(
        "--analyze-dml",
        help="also EXPLAIN ANALYZE INSERT/UPDATE/DELETE, in a transaction that is rolled back (refused on a standby)",
        rich_help_panel=PLANS,
    ),
]
Queries = Annotated[
    Optional[Path],
    typer.Option(
        "--queries",
        exists=True,
        dir_okay=False,
        help="a file of concrete statements (';'-separated) to explain and report too",
        rich_help_panel=PLANS,
    ),
]
Logs = Annotated[
    Optional[list[Path]],
    typer.Option(
        "--log",
        help="PostgreSQL log files to read too (stderr, csvlog, jsonlog; globs, directories, .gz); "
        "repeatable; no server needed",
        rich_help_panel=LOGS,
    ),
]
LogLinePrefix = Annotated[
    Optional[str],
    typer.Option(
        "--log-line-prefix",
        help="the log_line_prefix of the stderr logs (default: the server's, else PostgreSQL's default)",
        rich_help_panel=LOGS,
    ),
]
N1MinExecutions = Annotated[
    int,
    typer.Option(
        "--n-plus-one-min-executions",
        min=2,
        help="N+1 in logs: executions of one statement in a loop",
        rich_help_panel=LOGS,
    ),
]
N1MinMs = Annotated[
    float,
    typer.Option(
        "--n-plus-one-min-ms",
        min=0,
        help="N+1 in logs: cost of one loop to report "
        "it (round trips x --round-trip-ms + server time; 0: every loop that "
        "repeats)",
        rich_help_panel=LOGS,
    ),
]
RoundTripMs = Annotated[
    float,
    typer.Option(
        "--round-trip-ms",
        min=0,
        help="N+1 in logs: what one round trip costs the application, in ms",
        rich_help_panel=LOGS,
    ),
]
LogJobs = Annotated[
    int,
    typer.Option(
        "--log-jobs",
        min=1,
        help="read big stderr logs in N parallel pieces (processes); 1: one process",
        rich_help_panel=LOGS,
    ),
]
# Fix verification (queryaudit.verify), after plan capture.
Verify = Annotated[
    bool,
    typer.Option(
        "--verify/--no-verify",
        help="try each fix that can be tried read-only (SET "
        "LOCAL work_mem / jit, keyset rewrite, N+1 batch) and time it, within the "
        "EXPLAIN budget",
        rich_help_panel=VERIFY,
    ),
]
VerifyReal = Annotated[
    bool,
    typer.Option(
        "--verify-real",
        help="scratch/staging only: also build proposed indexes "
        "and apply statistics fixes in rolled-back transactions, and time them",
        rich_help_panel=VERIFY,
    ),
]
UnusedIndexMinDays = Annotated[
    float,
    typer.Option(
        "--unused-index-min-days",
        min=0,
        help="days of index statistics (since the last reset, and since the index "
        "appeared in the --store history) before an index is called unused",
        rich_help_panel=CHECKS,
    ),
]
SampleSeconds = Annotated[
    float,
    typer.Option(
        "--sample-seconds",
        min=0,
        help="also sample lock waits and open transactions for N seconds (0: off)",
        rich_help_panel=LOCKS,
    ),
]
Redact = Annotated[
    bool,
    typer.Option(
        "--redact", help="replace literals (strings, numbers, parameter values) in every output", rich_help_panel=OUTPUT
    ),
]
JsonOut = Annotated[Optional[Path], typer.Option("--json", help="write the JSON report here", rich_help_panel=OUTPUT)]
HtmlOut = Annotated[
    Optional[Path],
    typer.Option("--html", help="write the HTML report here (one self-contained file)", rich_help_panel=OUTPUT),
]
MarkdownOut = Annotated[
    Optional[Path], typer.Option("--markdown", help="write the Markdown report here", rich_help_panel=OUTPUT)
]
Baseline = Annotated[
    bool,
    typer.Option(
        "--baseline",
        help="compare with the last stored audit of the same target "
        "(per-statement change, new and resolved findings): report['baseline']",
        rich_help_panel=HISTORY,
    ),
]
OutDir = Annotated[
    Path,
    typer.Option("--out-dir", help="where the reports of every target and the index page go", rich_help_panel=FLEET),
]
Workers = Annotated[
    Optional[int],
    typer.Option(
        "--workers", min=1, help="audits at once (default: the file's workers, else 4)", rich_help_panel=FLEET
    ),
]


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
        except BrokenPipeError:
            raise typer.Exit(quiet_broken_pipe()) from None
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
def main(
    debug: Annotated[bool, typer.Option("--debug", help="print tracebacks")] = False,
    version: Annotated[
        bool, typer.Option("--version", help="print the version and exit", is_eager=True, callback=_print_version)
    ] = False,
) -> None:
    STATE["debug"] = debug


# The audit options a command declares, by option name -> AuditOptions field (where they differ).
AUDIT_PARAMETERS = {
    "top": "top",
    "sample_seconds": "sample_seconds",
    "explain": "explain",
    "explain_budget": "explain_budget_s",
    "analyze_dml": "analyze_dml",
    "queries": "queries_file",
    "logs": "logs",
    "log_line_prefix": "log_line_prefix",
    "n1_min_executions": "n_plus_one_min_executions",
    "n1_min_ms": "n_plus_one_min_run_ms",
    "round_trip_ms": "round_trip_ms",
    "log_jobs": "log_jobs",
    "unused_index_min_days": "unused_index_min_days",
    "redact": "redact",
}


def _audit_options(parameters: dict):
    """AuditOptions from a command's parameters (its `locals()`): audit, fleet, check and
    snapshot declare the same options under the same names, each only those it takes."""
    from queryaudit.pipeline import AuditOptions

    values = {field: parameters[name] for name, field in AUDIT_PARAMETERS.items() if name in parameters}
    if "logs" in values:
        values["logs"] = list(values["logs"] or [])
    if "verify" in parameters:
        from queryaudit.advisor.stage import AdvisorOptions
        from queryaudit.verify.stage import VerifyOptions

        verify, verify_real = parameters["verify"], parameters["verify_real"]
        values["verify"] = VerifyOptions(enabled=verify or verify_real, verify_real=verify_real)
        values["advisor"] = AdvisorOptions(verify_real=verify_real)
    return AuditOptions(explain_statement_ms=int(parameters["explain_timeout"] * 1000), **values)


@app.command()
@handle_errors
def audit(
    dsn: Dsn = None,
    snapshot: Annotated[
        Optional[Path],
        typer.Option("--snapshot", help="audit a saved snapshot instead of a server", rich_help_panel=SOURCE),
    ] = None,
    logs: Logs = None,
    log_line_prefix: LogLinePrefix = None,
    n1_min_executions: N1MinExecutions = MIN_EXECUTIONS,
    n1_min_ms: N1MinMs = 0.0,
    round_trip_ms: RoundTripMs = ROUND_TRIP_MS,
    log_jobs: LogJobs = 1,
    explain: Explain = True,
    explain_budget: ExplainBudget = DEFAULT_BUDGET_S,
    explain_timeout: ExplainTimeout = DEFAULT_STATEMENT_LIMIT_MS / 1000,
    analyze_dml: AnalyzeDml = False,
    queries: Queries = None,
    verify: Verify = True,
    verify_real: VerifyReal = False,
    sample_seconds: SampleSeconds = 0,
    unused_index_min_days: UnusedIndexMinDays = 7.0,
    top: Top = 20,
    json_path: JsonOut = None,
    html_path: HtmlOut = None,
    markdown_path: MarkdownOut = None,
    save_snapshot: Annotated[
        Optional[Path], typer.Option("--save-snapshot", help="also save the collected facts", rich_help_panel=OUTPUT)
    ] = None,
    redact: Redact = False,
    store: Store = None,
    target_name: Annotated[
        Optional[str],
        typer.Option(
            "--target", help="name this target in the history (default host:port/database)", rich_help_panel=HISTORY
        ),
    ] = None,
    baseline: Baseline = False,
    targets: Annotated[
        Optional[Path],
        typer.Option(
            "--targets", help="the same as `queryaudit fleet TARGETS` (kept as an alias)", rich_help_panel=FLEET
        ),
    ] = None,
    out_dir: OutDir = Path("queryaudit-reports"),
    workers: Workers = None,
) -> None:
    """Collect (or load) a snapshot, run every check and write the reports."""
    options = _audit_options(locals())
    outputs = {"json": json_path, "html": html_path, "markdown": markdown_path}
    if targets is not None:
        from queryaudit.history.command import run_fleet_command

        if snapshot is not None or queries or save_snapshot or target_name:
            raise AuditError(
                "--targets audits the databases of its file: --snapshot, --queries, "
                "--save-snapshot and --target do not combine with it"
            )
        # On stdout: stderr keeps to the one error line when a target fails.
        console.print(
            f"note: `audit --targets` is now `queryaudit fleet {targets}`",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return run_fleet_command(targets, out_dir, options, outputs, workers, store, baseline, console)
    from queryaudit.report.command import run_audit_command

    run_audit_command(
        dsn, snapshot, options, outputs, save_snapshot, store, target_name, baseline, console, err_console
    )


@app.command()
@handle_errors
def fleet(
    targets: Annotated[Path, typer.Argument(help="targets.toml: the databases to audit (see README: Fleet)")],
    logs: Logs = None,
    log_line_prefix: LogLinePrefix = None,
    n1_min_executions: N1MinExecutions = MIN_EXECUTIONS,
    n1_min_ms: N1MinMs = 0.0,
    round_trip_ms: RoundTripMs = ROUND_TRIP_MS,
    log_jobs: LogJobs = 1,
    explain: Explain = True,
    explain_budget: ExplainBudget = DEFAULT_BUDGET_S,
    explain_timeout: ExplainTimeout = DEFAULT_STATEMENT_LIMIT_MS / 1000,
    analyze_dml: AnalyzeDml = False,
    verify: Verify = True,
    verify_real: VerifyReal = False,
    sample_seconds: SampleSeconds = 0,
    unused_index_min_days: UnusedIndexMinDays = 7.0,
    top: Top = 20,
    json_path: Annotated[
        Optional[Path],
        typer.Option("--json", help="JSON report path per target, holding {target}", rich_help_panel=OUTPUT),
    ] = None,
    html_path: Annotated[
        Optional[Path],
        typer.Option("--html", help="HTML report path per target, holding {target}", rich_help_panel=OUTPUT),
    ] = None,
    markdown_path: Annotated[
        Optional[Path],
        typer.Option("--markdown", help="Markdown report path per target, holding {target}", rich_help_panel=OUTPUT),
    ] = None,
    redact: Redact = False,
    store: Store = None,
    baseline: Baseline = False,
    out_dir: OutDir = Path("queryaudit-reports"),
    workers: Workers = None,
) -> None:
    """Audit every database of a targets.toml concurrently: one report each and an index page in --out-dir."""
    from queryaudit.history.command import run_fleet_command

    options = _audit_options(locals())
    run_fleet_command(
        targets,
        out_dir,
        options,
        {"json": json_path, "html": html_path, "markdown": markdown_path},
        workers,
        store,
        baseline,
        console,
    )


@app.command("snapshot")
@handle_errors
def snapshot_cmd(
    output: Annotated[Path, typer.Option("-o", "--output", help="where to write the snapshot JSON")],
    dsn: Dsn = None,
    top: Top = 20,
    explain: Explain = True,
    explain_budget: ExplainBudget = DEFAULT_BUDGET_S,
    explain_timeout: ExplainTimeout = DEFAULT_STATEMENT_LIMIT_MS / 1000,
    analyze_dml: AnalyzeDml = False,
    queries: Queries = None,
    redact: Annotated[
        bool,
        typer.Option(
            "--redact",
            help="replace literals (strings, numbers, parameter values) "
            "in the snapshot, as audit --save-snapshot --redact does",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
) -> None:
    """Collect the facts from a server into a JSON file, for auditing later without it."""
    from queryaudit.report.command import run_snapshot_command

    run_snapshot_command(
        dsn,
        output,
        _audit_options(locals()),
        console,
    )


@app.command()
@handle_errors
def locks(
    dsn: Dsn = None,
    seconds: Annotated[
        Optional[float],
        typer.Option(
            "--seconds", min=0.1, help="how long to sample (default 10; with --log: no sampling unless given)"
        ),
    ] = None,
    rate: Annotated[float, typer.Option("--rate", min=0.1, max=50, help="samples per second")] = 10,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="write the lock facts and findings here")] = None,
    long_transaction_s: Annotated[
        float, typer.Option("--long-transaction-seconds", min=0, help="report transactions open longer than this")
    ] = 60,
    idle_s: Annotated[
        float,
        typer.Option(
            "--idle-in-transaction-seconds", min=0, help="report sessions idle in a transaction longer than this"
        ),
    ] = 10,
    logs: Annotated[
        Optional[list[Path]],
        typer.Option(
            "--log",
            help="also (or only) analyse these logs: log_lock_waits waits, deadlocks, lock timeouts; repeatable",
        ),
    ] = None,
    log_line_prefix: Annotated[
        Optional[str], typer.Option("--log-line-prefix", help="log_line_prefix of stderr logs")
    ] = None,
) -> None:
    """Sample lock waits for N seconds (and/or read them from logs): blocking chains, top
    blockers, long and idle transactions."""
    from queryaudit.locks.command import run_locks_command

    run_locks_command(
        dsn, seconds, rate, json_path, long_transaction_s, idle_s, logs, log_line_prefix, console, err_console
    )


@app.command("advise-indexes")
@handle_errors
def advise_indexes(
    dsn: Dsn = None,
    statements: Annotated[
        int, typer.Option("--statements", min=1, help="top statements (by total time) to consider")
    ] = 50,
    budget_mb: Annotated[
        Optional[float],
        typer.Option(
            "--index-budget-mb",
            min=0,
            help="storage for all proposed indexes together, in MB = 10^6 bytes (default: no limit)",
        ),
    ] = None,
    budget: Annotated[
        Optional[str],
        typer.Option(
            "--index-budget", help="the same with its unit: 500MB (10^6 bytes), 1GiB (2^30 bytes), kB/GB/KiB/MiB"
        ),
    ] = None,
    max_indexes: Annotated[
        Optional[int],
        typer.Option(
            "--max-indexes",
            min=1,
            help="propose at most this many indexes (default: 10 without a budget, no limit with one)",
        ),
    ] = None,
    threshold: Annotated[
        float,
        typer.Option(
            "--threshold",
            min=0.01,
            max=1.0,
            help="take an index (or a wider one) "
            "only when it cuts the cost of the statements it changes by this "
            "fraction",
        ),
    ] = 0.05,
    verify_real: Annotated[
        bool,
        typer.Option(
            "--verify-real",
            help="scratch/staging only: build each proposed "
            "index for real, EXPLAIN ANALYZE before and after, roll back",
        ),
    ] = False,
    explain: Explain = True,
    json_path: Annotated[
        Optional[Path], typer.Option("--json", help="write the advice and its findings as JSON here")
    ] = None,
) -> None:
    """Index advice alone: candidates from the SQL and plans, verified with HypoPG, one set for the workload."""
    from queryaudit.advisor.command import run_advise_command
    from queryaudit.advisor.stage import AdvisorOptions
    from queryaudit.advisor.units import budget_bytes_from

    options = AdvisorOptions(
        statements=statements,
        threshold=threshold,
        budget_bytes=budget_bytes_from(budget, budget_mb),
        max_indexes=max_indexes,
        verify_real=verify_real,
    )
    run_advise_command(dsn, options, explain, json_path, console, err_console)


@app.command("checks")
def list_checks() -> None:
    """List the checks with their ids."""
    from queryaudit.docs import print_checks

    print_checks(console)


@app.command("plan")
@handle_errors
def plan_cmd(
    file: Annotated[
        str, typer.Argument(help="an EXPLAIN output (text or JSON, as psql, pgAdmin or a log prints it); - for stdin")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="print the plan as EXPLAIN (FORMAT JSON) would")] = False,
) -> None:
    """Read a saved EXPLAIN plan and print its tree: rows estimated vs actual, time per node."""
    from queryaudit.plans.command import run_plan_command

    run_plan_command(file, as_json, console)


@app.command()
@handle_errors
def docs(
    out: Annotated[Path, typer.Option("--out", help="folder for the generated check pages")] = Path("checks"),
    check_only: Annotated[bool, typer.Option("--check", help="exit 1 when a page is missing or stale")] = False,
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
    before: Annotated[Path, typer.Argument(help="the JSON report before the change (queryaudit audit --json)")],
    after: Annotated[Path, typer.Argument(help="the JSON report after it")],
    json_path: Annotated[Optional[Path], typer.Option("--json", help="write the comparison as JSON here")] = None,
    html_path: Annotated[Optional[Path], typer.Option("--html", help="write the comparison as HTML here")] = None,
    markdown_path: Annotated[
        Optional[Path], typer.Option("--markdown", help="write the comparison as Markdown here")
    ] = None,
) -> None:
    """Compare two reports of the same database: statements faster or slower, findings resolved or new,
    and a verdict per applied fix."""
    from queryaudit.report.command import run_compare_command

    run_compare_command(before, after, {"json": json_path, "html": html_path, "markdown": markdown_path}, console)


@app.command()
@handle_errors
def demo(
    out_dir: Annotated[
        Path,
        typer.Option(
            "--out-dir", help="where the demo reports go (reports/ holds the committed samples: make samples)"
        ),
    ] = Path("demo-output"),
    scale: Annotated[int, typer.Option("--scale", min=1, help="fixture size multiplier")] = 1,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="workload rounds before the audit")] = 2,
    dsn: Annotated[
        Optional[str],
        typer.Option(
            "--dsn",
            help="run on this throwaway server instead of the embedded "
            "one (it loads the fixture, resets pg_stat_statements, applies "
            "fixes)",
        ),
    ] = None,
    apply: Annotated[
        bool, typer.Option("--apply/--no-apply", help="apply the safe top fixes, re-run and compare")
    ] = True,
) -> None:
    """Start the embedded PostgreSQL 18, load the shop fixture, run its workload and audit it; then apply
    the top fixes, run it again and compare (reports/demo.html, demo-compare.html, .md, .json)."""
    from queryaudit.demo.run import run_demo

    run_demo(out_dir, scale=scale, rounds=rounds, console=console, apply=apply, dsn=dsn)


@app.command()
@handle_errors
def history(
    store: Store = None,
    target: Annotated[
        Optional[str],
        typer.Option(
            "--target",
            help="the target (its name, host:port/database key, or database name); default: the only one stored",
        ),
    ] = None,
    statement: Annotated[
        Optional[str], typer.Option("--statement", help="trend of one statement: its queryid or a piece of its text")
    ] = None,
    finding: Annotated[
        Optional[str], typer.Option("--finding", help="trend of a finding: its id, or a check id")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="the most recent audits to show")] = 30,
    html_path: Annotated[
        Optional[Path], typer.Option("--html", help="also write an HTML page with charts here")
    ] = None,
) -> None:
    """Audits stored for a target, and the trend of a statement or a finding over them."""
    from queryaudit.history.command import run_history_command

    run_history_command(store, target, statement, finding, limit, html_path, console)


@app.command()
@handle_errors
def check(
    config: Annotated[
        Optional[Path],
        typer.Option(
            "--config",
            help="queryaudit.toml or pyproject.toml ([tool.queryaudit]); default: found in this folder or above",
        ),
    ] = None,
    store: Store = None,
    dsn: Annotated[
        Optional[str],
        typer.Option(
            "--dsn",
            help="audit this server now and hold it to the budgets against the last stored audit of the same target",
            rich_help_panel=SOURCE,
        ),
    ] = None,
    snapshot: Annotated[
        Optional[Path], typer.Option("--snapshot", help="the same, from a saved snapshot", rich_help_panel=SOURCE)
    ] = None,
    report: Annotated[
        Optional[Path], typer.Option("--report", help="hold a JSON report to the budgets", rich_help_panel=SOURCE)
    ] = None,
    baseline_report: Annotated[
        Optional[Path],
        typer.Option(
            "--baseline-report", help="with --report: the JSON report to compare it with", rich_help_panel=SOURCE
        ),
    ] = None,
    target: Annotated[Optional[str], typer.Option("--target", help="the target in the history (name or key)")] = None,
    record: Annotated[bool, typer.Option("--record", help="with --dsn/--snapshot: also store this audit")] = False,
    json_path: Annotated[
        Optional[Path],
        typer.Option("--json", help="write the verdict and comparison (and the fresh audit's report) here"),
    ] = None,
    top: Top = 20,
    explain: Explain = True,
    explain_budget: ExplainBudget = DEFAULT_BUDGET_S,
    explain_timeout: ExplainTimeout = DEFAULT_STATEMENT_LIMIT_MS / 1000,
    analyze_dml: AnalyzeDml = False,
    verify: Verify = True,
    verify_real: VerifyReal = False,
    sample_seconds: SampleSeconds = 0,
    logs: Logs = None,
    log_line_prefix: LogLinePrefix = None,
    n1_min_executions: N1MinExecutions = MIN_EXECUTIONS,
    n1_min_ms: N1MinMs = 0.0,
    round_trip_ms: RoundTripMs = ROUND_TRIP_MS,
    log_jobs: LogJobs = 1,
    unused_index_min_days: UnusedIndexMinDays = 7.0,
    notify: Annotated[
        Optional[str],
        typer.Option(
            "--notify",
            help="post broken budgets with their causes to this "
            "webhook URL (Slack, Teams or any JSON receiver); never changes "
            "the exit code",
        ),
    ] = None,
    notify_retries: Annotated[
        int, typer.Option("--notify-retries", min=0, max=3, help="retries of a failed post, after 1, 4 and 15 s")
    ] = 3,
) -> None:
    """Budgets and suppressions (queryaudit.toml): exit 1 when a budget is broken, naming it; 0 when all hold."""
    from queryaudit.history.command import run_check_command

    options = _audit_options(locals())
    code = run_check_command(
        config,
        store,
        dsn,
        snapshot,
        report,
        baseline_report,
        target,
        record,
        json_path,
        options,
        console,
        notify=notify,
        notify_retries=notify_retries,
    )
    if code:
        raise typer.Exit(code)


@app.command("review-migration")
@handle_errors
def review_migration(
    paths: Annotated[
        Optional[list[str]],
        typer.Argument(
            help="SQL files, directories (applied in natural order: 2_x.sql before 10_y.sql) or - for stdin"
        ),
    ] = None,
    pg_version: Annotated[
        Optional[str],
        typer.Option(
            "--pg-version",
            help="target PostgreSQL version for the rules (default: the scratch server's with --dsn, else 15)",
        ),
    ] = None,
    assume_in_transaction: Annotated[
        bool, typer.Option("--assume-in-transaction", help="the migration tool wraps each file in a transaction")
    ] = False,
    dsn: Annotated[
        Optional[str],
        typer.Option(
            "--dsn",
            help="SCRATCH database holding the schema: the migration is "
            "applied to a throwaway copy of it (CREATE DATABASE ... TEMPLATE) or "
            "in a rolled-back transaction, to measure locks, rewrites and plans. "
            "This WRITES to that server: never give a production DSN",
        ),
    ] = None,
    workload: Annotated[
        Optional[Path],
        typer.Option(
            "--workload",
            help="a queryaudit JSON report or snapshot: its "
            "top statements are EXPLAINed before and after (needs "
            "--dsn)",
        ),
    ] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="how many top statements of --workload to compare")] = 20,
    cost_threshold: Annotated[
        float, typer.Option("--cost-threshold", min=0.0, help="plan cost growth reported as a regression (0.25 = +25%)")
    ] = 0.25,
    select: Annotated[Optional[list[str]], typer.Option("--rule", help="run only these rules (repeat)")] = None,
    ignore: Annotated[Optional[list[str]], typer.Option("--ignore", help="skip these rules (repeat)")] = None,
    fail_on: Annotated[
        str,
        typer.Option(
            "--fail-on",
            help="exit 1 when a finding has this severity or worse: critical, high, medium, low, info, never",
        ),
    ] = "high",
    sarif: Annotated[
        Optional[Path], typer.Option("--sarif", help="write SARIF 2.1.0 (GitHub code scanning) here")
    ] = None,
    junit: Annotated[Optional[Path], typer.Option("--junit", help="write JUnit XML here")] = None,
    markdown: Annotated[Optional[Path], typer.Option("--markdown", help="write a Markdown PR comment here")] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="write the JSON review here")] = None,
    github: Annotated[
        Optional[bool],
        typer.Option(
            "--github-annotations/--no-github-annotations",
            help="print ::error annotations (default: when GITHUB_ACTIONS=true)",
        ),
    ] = None,
    list_rules_flag: Annotated[bool, typer.Option("--list-rules", help="list the rules and exit")] = False,
) -> None:
    """Review SQL migrations: risky DDL (locks, rewrites, breaking changes), and with --dsn a measured run
    on a scratch database with the plan changes of the top production statements."""
    from queryaudit.migrations.command import ReviewOptions, list_rules, run_review

    if list_rules_flag:
        list_rules(console)
        return
    code = run_review(
        ReviewOptions(
            paths=paths or [],
            pg_version=pg_version,
            assume_in_transaction=assume_in_transaction,
            dsn=dsn,
            workload=workload,
            top=top,
            cost_threshold=cost_threshold,
            select=select or [],
            ignore=ignore or [],
            fail_on=fail_on,
            sarif=sarif,
            junit=junit,
            markdown=markdown,
            json=json_path,
            github=github,
        ),
        console,
    )
    if code:
        raise typer.Exit(code)


# How help names an option's value, instead of typer's own `<int range>`, `<list[Path]>`, and
# `<bool>` for a flag that takes no value at all.
_METAVARS = {
    "str": "TEXT",
    "int": "INTEGER",
    "int range": "INTEGER",
    "float": "NUMBER",
    "float range": "NUMBER",
    "path": "PATH",
    "file": "FILE",
    "directory": "DIR",
    "list[Path]": "PATH",
    "list[str]": "TEXT",
}


def _name_values(command, parent=None) -> None:
    from typer._click import Context  # typer 0.29 carries its own click

    # The parent context passes the app's help option names (-h) down, as at run time.
    ctx = Context(command, parent=parent, **(command.context_settings or {}))
    for param in [*command.params, command.get_help_option(ctx)]:
        if isinstance(param, typer.core.TyperOption) and param.metavar is None:
            if param.is_flag:
                param.metavar = ""
            else:
                label = param.display_type(ctx).strip("<>")
                param.metavar = _METAVARS.get(label, label.upper())
    for sub in getattr(command, "commands", {}).values():
        _name_values(sub, ctx)


def command_line():
    """The click command of the whole CLI, with its help's value names."""
    command = typer.main.get_command(app)
    _name_values(command)
    return command


def hoist_debug(args: list[str]) -> list[str]:
    """`--debug` anywhere before `--`: click takes the group's options only before the command name,
    and `queryaudit audit --debug` is what one types after a failure."""
    end = args.index("--") if "--" in args else len(args)
    if "--debug" not in args[:end]:
        return args
    return ["--debug", *(a for i, a in enumerate(args) if not (a == "--debug" and i < end))]


def run() -> None:  # console script entry point
    try:
        command_line()(args=hoist_debug(sys.argv[1:]), prog_name="queryaudit")
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(quiet_broken_pipe())


if __name__ == "__main__":
    run()
