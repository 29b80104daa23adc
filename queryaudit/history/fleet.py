"""Fleet audits: many databases from targets.toml, audited concurrently (a bounded pool),
one report each and an index page. A target that fails is listed with its error and
does not stop the others.

targets.toml:

    workers = 4                                   # optional; --workers overrides

    [[target]]
    name = "shop-eu"                              # names the report files and the history target
    dsn-env = "SHOP_EU_DSN"                       # the DSN from this variable (keeps passwords out)

    [[target]]
    name = "billing"
    dsn = "postgresql://auditor@billing-replica/billing"   # password from ~/.pgpass or PGPASSWORD
    explain = false                               # per-target overrides of the command line:
    top = 10                                      # top, explain, explain-budget, sample-seconds,
    redact = true                                 # redact (on when either asks for it)

Every audit option of the command line (--top, --no-explain, --explain-budget,
--explain-timeout, --analyze-dml, --sample-seconds, --log, --redact, ...) applies to every
target, through the same pipeline as `audit`; targets.toml overrides top, explain,
explain-budget, explain-timeout, analyze-dml, sample-seconds, log and redact per target.
--json/--html/--markdown select the formats written per target;
their path holds {target} (e.g. reports/{target}.md); without them JSON and HTML go to
--out-dir as <target>.json and <target>.html.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import html
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from queryaudit.errors import AuditError
from queryaudit.findings import SEVERITIES
from queryaudit.history.budgets import array_of_tables, read_toml
from queryaudit.history.service import attach_history, index_first_seen
from queryaudit.pipeline import AuditOptions, live_snapshot, run_audit
from queryaudit.report import write_outputs

DEFAULT_WORKERS = 4
# targets.toml key -> (FleetOptions field, type check, what it must be)
OVERRIDES = {
    "top": ("top", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "a whole number >= 1"),
    "explain": ("explain", lambda v: isinstance(v, bool), "true or false"),
    "explain-budget": (
        "explain_budget_s",
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0,
        "a number of seconds >= 0",
    ),
    "sample-seconds": (
        "sample_seconds",
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0,
        "a number of seconds >= 0",
    ),
    "explain-timeout": (
        "explain_statement_ms",
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0.1,
        "a number of seconds >= 0.1",
    ),
    "analyze-dml": ("analyze_dml", lambda v: isinstance(v, bool), "true or false"),
    "log": ("logs", lambda v: isinstance(v, list) and all(isinstance(p, str) for p in v), "a list of log paths"),
    "redact": ("redact", lambda v: isinstance(v, bool), "true or false"),
}
TARGET_KEYS = {"name", "dsn", "dsn-env", *OVERRIDES}
DEFAULT_FORMATS = ("json", "html")
EXTENSIONS = {"json": "json", "html": "html", "markdown": "md"}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass
class FleetOptions:
    """The command line's audit options, for every target (targets.toml may override them per target).
    formats: format -> path template holding {target}, or None for <out-dir>/<target>.<ext>."""

    audit: AuditOptions = field(default_factory=AuditOptions)
    formats: dict[str, str | None] = field(default_factory=lambda: {f: None for f in DEFAULT_FORMATS})

    def output_paths(self, name: str, out_dir: Path) -> dict[str, Path]:
        return {
            fmt: Path(template.replace("{target}", name)) if template else out_dir / f"{name}.{EXTENSIONS[fmt]}"
            for fmt, template in self.formats.items()
        }


def output_formats(paths: dict[str, str | Path | None]) -> dict[str, str | None]:
    """--json/--html/--markdown given with --targets: path templates, each naming its target."""
    given = {fmt: str(p) for fmt, p in paths.items() if p is not None}
    for fmt, template in given.items():
        if "{target}" not in template:
            raise AuditError(
                f"with --targets, --{fmt} needs {{target}} in its path (e.g. reports/{{target}}."
                f"{EXTENSIONS[fmt]}): every target writes its own file"
            )
    return given or {f: None for f in DEFAULT_FORMATS}


@dataclass
class FleetTarget:
    name: str
    dsn: str | None = None
    dsn_env: str | None = None
    overrides: dict = field(default_factory=dict)  # AuditOptions field -> value, from targets.toml

    def options(self, defaults: FleetOptions) -> FleetOptions:
        overrides = dict(self.overrides)
        if "explain_statement_ms" in overrides:  # seconds in the file, like --explain-timeout
            overrides["explain_statement_ms"] = int(overrides["explain_statement_ms"] * 1000)
        audit = dataclasses.replace(defaults.audit, **overrides)
        audit.redact = defaults.audit.redact or audit.redact  # --redact on the command line holds for every target
        return dataclasses.replace(defaults, audit=audit)

    def resolve_dsn(self) -> str:
        if self.dsn_env:
            value = os.environ.get(self.dsn_env)
            if not value:
                raise AuditError(f"environment variable {self.dsn_env} (dsn-env of target {self.name}) is not set")
            return value
        return self.dsn or ""


@dataclass
class FleetResult:
    target: FleetTarget
    ok: bool
    seconds: float
    error: str | None = None
    outputs: dict[str, Path] = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    history: list[str] = field(default_factory=list)


def load_targets(path: Path) -> tuple[list[FleetTarget], int | None]:
    data = read_toml(path, "targets file")
    for key in data:
        if key not in ("target", "workers"):
            raise AuditError(f"{path}: unknown key {key} (known: target, workers)")
    workers = data.get("workers")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise AuditError(f"{path}: workers must be a whole number >= 1, not {workers!r}")
    if not data.get("target"):
        raise AuditError(f"{path}: no targets: add [[target]] tables with a name and a dsn or dsn-env")
    targets, seen = [], set()
    for key_n, entry in array_of_tables(str(path), data["target"], "target"):
        where = f"{path}: {key_n}"
        for key in entry:
            if key not in TARGET_KEYS:
                raise AuditError(f"{where}: unknown key {key} (known: {', '.join(sorted(TARGET_KEYS))})")
        name = entry.get("name")
        if not isinstance(name, str) or not _SAFE_NAME.match(name):
            raise AuditError(
                f"{where}.name must be letters, digits, '.', '_' or '-' (it names the report files), not {name!r}"
            )
        if name in seen:
            raise AuditError(f"{where}.name {name!r} is used twice")
        seen.add(name)
        if ("dsn" in entry) == ("dsn-env" in entry):
            raise AuditError(f"{where} ({name}) needs exactly one of dsn or dsn-env")
        overrides = {}
        for key, (attr, valid, expected) in OVERRIDES.items():
            if key in entry:
                if not valid(entry[key]):
                    raise AuditError(f"{where}.{key} must be {expected}, not {entry[key]!r}")
                overrides[attr] = entry[key]
        targets.append(FleetTarget(name, entry.get("dsn"), entry.get("dsn-env"), overrides))
    return targets, workers


def _summary(report: dict) -> dict:
    top = report["findings"][0] if report["findings"] else None
    return {
        "database": report["target"]["database"],
        "server_version_num": report["target"]["server_version_num"],
        "partial": report["partial"],
        "findings": report["summary"]["findings_by_severity"],
        "total_exec_time_ms": report["window"]["total_exec_time_ms"],
        "top_finding": f"[{top['severity']}] {top['title']}" if top else None,
    }


def audit_target(
    target: FleetTarget, out_dir: Path, defaults: FleetOptions, store_url: str | None, baseline: bool, record: bool
) -> FleetResult:

    started = time.monotonic()
    options = target.options(defaults)
    try:
        dsn = target.resolve_dsn()
        snapshot = live_snapshot(dsn, options.audit)  # its "logs" stage reads the target's logs
        if record or baseline:
            # An index younger than the unused-index window is judged by its age in the store, as in `audit`.
            snapshot.extras["index_first_seen"] = index_first_seen(snapshot, store_url, target.name)
        run = run_audit(snapshot, options.audit, logs_read=True)
        snapshot, report = run.snapshot, run.report
        history = []
        if record or baseline:
            history = attach_history(
                report,
                snapshot,
                store_url,
                record=record,
                baseline=baseline,
                name=target.name,
                redact=options.audit.redact,
            )
        paths = options.output_paths(target.name, out_dir)
        written = write_outputs(report, paths)
        return FleetResult(
            target,
            True,
            time.monotonic() - started,
            outputs=dict(zip(paths, written, strict=True)),
            summary=_summary(report),
            history=history,
        )
    except AuditError as exc:
        return FleetResult(target, False, time.monotonic() - started, error=str(exc))
    except Exception as exc:  # one target's bug must not stop the fleet
        return FleetResult(
            target, False, time.monotonic() - started, error=f"internal error: {type(exc).__name__}: {exc}"
        )


def run_fleet(
    targets_path: Path,
    out_dir: Path,
    options: FleetOptions | None = None,
    workers: int | None = None,
    store_url: str | None = None,
    baseline: bool = False,
    record: bool = False,
    on_done: Callable[[FleetResult], None] | None = None,
) -> list[FleetResult]:
    options = options or FleetOptions()
    targets, file_workers = load_targets(targets_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    pool_size = max(1, min(workers or file_workers or DEFAULT_WORKERS, len(targets)))
    results: dict[str, FleetResult] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="queryaudit-fleet") as pool:
        futures = {pool.submit(audit_target, t, out_dir, options, store_url, baseline, record): t for t in targets}
        for future in concurrent.futures.as_completed(futures):
            result = future.result()
            results[result.target.name] = result
            if on_done:
                on_done(result)
    ordered = [results[t.name] for t in targets]
    write_index(out_dir, ordered)
    return ordered


def _findings_text(counts: dict) -> str:
    return ", ".join(f"{counts[s]} {s}" for s in SEVERITIES if counts.get(s)) or "none"


def write_index(out_dir: Path, results: list[FleetResult]) -> tuple[Path, Path]:
    """index.html and index.md: one row per target, linking its reports, or its error."""
    generated = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    failed = sum(1 for r in results if not r.ok)
    rows_html, rows_md = [], []
    for r in results:
        hrefs = {fmt: Path(os.path.relpath(p.resolve(), out_dir.resolve())).as_posix() for fmt, p in r.outputs.items()}
        links = " ".join(f'<a href="{html.escape(href)}">{html.escape(fmt.upper())}</a>' for fmt, href in hrefs.items())
        links_md = " ".join(f"[{fmt.upper()}]({href.replace(' ', '%20')})" for fmt, href in hrefs.items())
        if r.ok:
            s = r.summary
            status = "partial" if s["partial"] else "ok"
            detail = f"{_findings_text(s['findings'])}" + (f"; top: {s['top_finding']}" if s["top_finding"] else "")
            database = f"{s['database']} (PostgreSQL {s['server_version_num']})"
        else:
            status, detail, database = "failed", r.error or "", "-"
        rows_html.append(
            f'<tr class="{status}"><td>{html.escape(r.target.name)}</td><td>{status}</td>'
            f"<td>{html.escape(database)}</td><td>{html.escape(detail)}</td>"
            f"<td>{r.seconds:.1f} s</td><td>{links}</td></tr>"
        )
        cell = detail.replace("|", "\\|").replace("\n", " ")
        rows_md.append(f"| {r.target.name} | {status} | {database} | {cell} | {r.seconds:.1f} s | {links_md} |")
    title = f"queryaudit fleet: {len(results)} targets, {failed} failed"
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        "<style>body{font:14px/1.4 system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}"
        "tr.failed td{color:#a00}tr.partial td{color:#a60}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>generated {html.escape(generated)}</p><table><thead><tr>"
        "<th>target</th><th>status</th><th>database</th><th>findings / error</th><th>took</th><th>reports</th>"
        f"</tr></thead><tbody>{''.join(rows_html)}</tbody></table></body></html>\n"
    )
    index_html, index_md = out_dir / "index.html", out_dir / "index.md"
    index_html.write_text(page, encoding="utf-8")
    index_md.write_text(
        f"# {title}\n\ngenerated {generated}\n\n| target | status | database | findings / error | "
        "took | reports |\n|---|---|---|---|---|---|\n" + "\n".join(rows_md) + "\n",
        encoding="utf-8",
    )
    return index_html, index_md
