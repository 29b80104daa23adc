"""`queryaudit review-migration`: static rules, optional scratch-database run, outputs, exit code."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from queryaudit.errors import AuditError
from queryaudit.findings import SEVERITIES
from queryaudit.migrations import ALIASES, Settings, all_rules, parse_pg_version
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
        console.print(f"{r.id:46} {r.severity:8} {r.group:13} {flags:15} {r.title}", markup=False, highlight=False,
                      soft_wrap=True)
    for alias, ids in ALIASES.items():
        console.print(f"{alias:46} {'':8} {'alias':13} {'squawk':15} selects {', '.join(ids)}", markup=False,
                      highlight=False, soft_wrap=True)


def run_review(opts: ReviewOptions, console) -> int:
    from queryaudit.migrations import output

    if opts.fail_on not in FAIL_ON_CHOICES:
        raise AuditError(f"--fail-on {opts.fail_on!r}: choose one of {', '.join(FAIL_ON_CHOICES)}")
    if not opts.paths:
        raise AuditError("give migration files, directories (applied in natural order) or - for stdin")
    if opts.workload and not opts.dsn:
        raise AuditError("--workload needs --dsn: the plans are compared on the scratch database")
    sources = read_sources(opts.paths)
    version = parse_pg_version(opts.pg_version) if opts.pg_version else None
    if version is None and opts.dsn:
        from queryaudit.migrations.dynamic import server_version
        version = parse_pg_version(server_version(opts.dsn))
    settings = Settings(version or Settings().pg_version, opts.assume_in_transaction)
    result = review(sources, settings, opts.select or None, opts.ignore or None)
    if opts.dsn and not result.errors:  # a file that does not parse cannot be applied either
        from queryaudit.migrations import dynamic

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
