"""`queryaudit review-migration`: static rules, optional scratch-database run, outputs, exit code."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from queryaudit.errors import AuditError, quiet_broken_pipe
from queryaudit.findings import SEVERITIES
from queryaudit.migrations import ALIASES, Settings, all_rules, output, parse_pg_version
from queryaudit.migrations.review import review
from queryaudit.migrations.source import parse_migration, read_sources

# Default gate: a finding that blocks reads or writes for a table scan/rewrite, breaks
# running code or fails the migration (high, critical) fails CI; medium (timeouts,
# nesting) and low (type style) are reported without failing.
DEFAULT_FAIL_ON = "high"
FAIL_ON_CHOICES = (*SEVERITIES, "never")


@dataclass
class ReviewOptions:
    paths: list[str]
    pg_version: str | None = None
    assume_in_transaction: bool = False
    dsn: str | None = None
    workload: Path | None = None
    top: int = 20
    cost_threshold: float = 0.25
    select: list[str] = field(default_factory=list)
    ignore: list[str] = field(default_factory=list)
    fail_on: str = DEFAULT_FAIL_ON
    sarif: Path | None = None
    junit: Path | None = None
    markdown: Path | None = None
    json: Path | None = None
    github: bool | None = None  # None: when GITHUB_ACTIONS is set


def list_rules(console) -> None:
    for r in all_rules():
        flags = ("squawk " if r.squawk else "") + ("" if r.default else "opt-in ") + ("dynamic" if r.dynamic else "")
        output.emit(console, (f"{r.id:46} {r.severity:8} {r.group:13} {flags:15} {r.title}", None))
    for alias, ids in ALIASES.items():
        output.emit(console, (f"{alias:46} {'':8} {'alias':13} {'squawk':15} selects {', '.join(ids)}", None))


def run_review(opts: ReviewOptions, console) -> int:
    if opts.fail_on not in FAIL_ON_CHOICES:
        raise AuditError(f"--fail-on {opts.fail_on!r}: choose one of {', '.join(FAIL_ON_CHOICES)}")
    if not opts.paths:
        raise AuditError("give migration files, directories (applied in natural order) or - for stdin")
    if opts.workload and not opts.dsn:
        raise AuditError("--workload needs --dsn: the plans are compared on the scratch database")
    sources = read_sources(opts.paths)
    version = parse_pg_version(opts.pg_version) if opts.pg_version else None
    if version is None and opts.dsn:
        from queryaudit.migrations import dynamic  # psycopg: only with --dsn (start-up)

        version = parse_pg_version(dynamic.server_version(opts.dsn))
    settings = Settings(version or Settings().pg_version, opts.assume_in_transaction)
    result = review(sources, settings, opts.select or None, opts.ignore or None)
    if opts.dsn and not result.errors:  # a file that does not parse cannot be applied either
        from queryaudit.migrations import dynamic  # psycopg: only with --dsn (start-up)

        dyn_opts = dynamic.DynamicOptions(workload=opts.workload, top=opts.top, cost_threshold=opts.cost_threshold)
        migrations = [parse_migration(p, t, settings.assume_in_transaction) for p, t in sources]
        result.dynamic = dynamic.run_dynamic(opts.dsn, migrations, dyn_opts)
        dynamic.attach_measurements(result.findings, result.dynamic)
        ignored = set(opts.ignore or ())
        result.findings += [f for f in dynamic.dynamic_findings(result.dynamic, dyn_opts) if f.rule not in ignored]
        result.findings.sort(key=lambda f: (f.path, f.line, f.column, f.rule))
    fail_on = opts.fail_on
    if opts.json:
        output.write_json(result, opts.json, fail_on)
    if opts.sarif:
        output.write_sarif(result, opts.sarif)
    if opts.junit:
        output.write_junit(result, opts.junit, fail_on)
    if opts.markdown:
        output.write_markdown(result, opts.markdown, fail_on)
    github = output.in_github_actions() if opts.github is None else opts.github
    if github:
        for line in output.github_annotations(result):
            print(line, flush=True)
    output.render_terminal(result, console, fail_on)
    for error in result.errors:  # one line each on stderr, as for any input error
        sys.stderr.write(f"queryaudit: error: {error}\n")
    # a file that was not reviewed fails the run whatever --fail-on says
    return 2 if result.errors else 1 if result.fails(fail_on) else 0


# --- the start-up path -----------------------------------------------------------------------
# `queryaudit review-migration` runs once per file in pre-commit hooks and many CI setups, so it
# starts without typer: typer 0.29 builds its option coercion with pydantic, which alone costs
# more than reviewing a migration. The options below are the typer command's (queryaudit/cli.py),
# name for name; tests/test_migration_startup.py keeps the two in step.


def build_parser():
    class Parser(argparse.ArgumentParser):
        def error(self, message):  # bad options are one line and exit 2, as everywhere in queryaudit
            sys.stderr.write(f"queryaudit: error: {message} (see queryaudit review-migration --help)\n")
            sys.exit(2)

    # --help is the typer command's (queryaudit/__main__.py sends it there): no help option here.
    p = Parser(
        prog="queryaudit review-migration",
        add_help=False,
        description="Review SQL migrations: risky "
        "DDL (locks, rewrites, breaking changes), and with --dsn a measured run on a scratch "
        "database.",
    )
    p.add_argument("paths", nargs="*", help="SQL files, directories (applied in natural order) or - for stdin")
    p.add_argument(
        "--pg-version",
        help="target PostgreSQL version for the rules (default: the scratch server's with --dsn, else 15)",
    )
    p.add_argument(
        "--assume-in-transaction", action="store_true", help="the migration tool wraps each file in a transaction"
    )
    p.add_argument(
        "--dsn", help="SCRATCH database holding the schema (this WRITES to that server: never give a production DSN)"
    )
    p.add_argument("--workload", type=Path, help="a queryaudit JSON report or snapshot (needs --dsn)")
    p.add_argument("--top", type=_at_least(1, int), default=20, help="how many top statements of --workload to compare")
    p.add_argument(
        "--cost-threshold",
        type=_at_least(0.0, float),
        default=0.25,
        help="plan cost growth reported as a regression (0.25 = +25%%)",
    )
    p.add_argument("--rule", dest="select", action="append", default=[], help="run only these rules (repeat)")
    p.add_argument("--ignore", action="append", default=[], help="skip these rules (repeat)")
    p.add_argument(
        "--fail-on",
        default=DEFAULT_FAIL_ON,
        help="exit 1 when a finding has this severity or worse: critical, high, medium, low, info, never",
    )
    for fmt, what in (
        ("sarif", "SARIF 2.1.0"),
        ("junit", "JUnit XML"),
        ("markdown", "a Markdown PR comment"),
        ("json", "the JSON review"),
    ):
        p.add_argument(f"--{fmt}", type=Path, help=f"write {what} here")
    p.add_argument(
        "--github-annotations",
        dest="github",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="print ::error annotations (default: when GITHUB_ACTIONS=true)",
    )
    p.add_argument("--list-rules", action="store_true", help="list the rules and exit")
    p.add_argument("--debug", action="store_true", help="print tracebacks")
    return p


def _at_least(low, kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{text} is below the minimum {low}")
        return value

    return parse


def main(argv: list[str]) -> int:
    """review-migration without typer; the same exit codes and one-line errors as the typer CLI."""
    args = build_parser().parse_args(argv)
    console = None  # plain lines: rich only when someone sees the colours
    if sys.stdout.isatty():
        from rich.console import Console  # rich only on a terminal (start-up)

        console = Console()
    try:
        if args.list_rules:
            list_rules(console)
            return 0
        opts = {k: v for k, v in vars(args).items() if k not in ("list_rules", "debug")}
        return run_review(ReviewOptions(**opts), console)
    except AuditError as exc:
        return _fail(str(exc), exc.exit_code, args.debug)
    except KeyboardInterrupt:
        return _fail("interrupted", 130, args.debug)
    except BrokenPipeError:
        return quiet_broken_pipe()
    except Exception as exc:  # a bug: still one line, with a way to see more
        return _fail(
            f"internal error: {type(exc).__name__}: {exc} (re-run with --debug for the traceback)", 2, args.debug
        )


def _fail(message: str, code: int, debug: bool) -> int:
    if debug:
        import traceback  # only with --debug: 1.7 ms of the start-up path otherwise

        traceback.print_exc()
    sys.stderr.write(f"queryaudit: error: {' '.join(message.split())}\n")
    return code
