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
"""
from __future__ import annotations

import concurrent.futures
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

DEFAULT_WORKERS = 4
TARGET_KEYS = {"name", "dsn", "dsn-env", "top"}
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass
class FleetTarget:
    name: str
    dsn: str | None = None
    dsn_env: str | None = None
    top: int | None = None

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
            raise AuditError(f"{where}.name must be letters, digits, '.', '_' or '-' (it names the report files), "
                             f"not {name!r}")
        if name in seen:
            raise AuditError(f"{where}.name {name!r} is used twice")
        seen.add(name)
        if ("dsn" in entry) == ("dsn-env" in entry):
            raise AuditError(f"{where} ({name}) needs exactly one of dsn or dsn-env")
        top = entry.get("top")
        if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
            raise AuditError(f"{where}.top must be a whole number >= 1")
        targets.append(FleetTarget(name, entry.get("dsn"), entry.get("dsn-env"), top))
    return targets, workers


def _summary(report: dict) -> dict:
    top = report["findings"][0] if report["findings"] else None
    return {"database": report["target"]["database"], "server_version_num": report["target"]["server_version_num"],
            "partial": report["partial"], "findings": report["summary"]["findings_by_severity"],
            "total_exec_time_ms": report["window"]["total_exec_time_ms"],
            "top_finding": f"[{top['severity']}] {top['title']}" if top else None}


def audit_target(target: FleetTarget, out_dir: Path, top: int, formats: list[str], store_url: str | None,
                 baseline: bool, record: bool) -> FleetResult:
    from queryaudit.pipeline import AuditOptions, analyse, collect_live
    from queryaudit.report import write_outputs

    started = time.monotonic()
    try:
        snapshot = collect_live(target.resolve_dsn(), AuditOptions(top=target.top or top))
        report = analyse(snapshot, target.top or top)
        history = []
        if record or baseline:
            from queryaudit.history.service import attach_history

            history = attach_history(report, snapshot, store_url, record=record, baseline=baseline, name=target.name)
        written = write_outputs(report, {fmt: out_dir / f"{target.name}.{'md' if fmt == 'markdown' else fmt}"
                                         for fmt in formats})
        return FleetResult(target, True, time.monotonic() - started, outputs=dict(zip(formats, written)),
                           summary=_summary(report), history=history)
    except AuditError as exc:
        return FleetResult(target, False, time.monotonic() - started, error=str(exc))
    except Exception as exc:  # one target's bug must not stop the fleet
        return FleetResult(target, False, time.monotonic() - started,
                           error=f"internal error: {type(exc).__name__}: {exc}")


def run_fleet(targets_path: Path, out_dir: Path, top: int = 20, workers: int | None = None,
              store_url: str | None = None, baseline: bool = False, record: bool = False,
              on_done: Callable[[FleetResult], None] | None = None) -> list[FleetResult]:
    from queryaudit.report import WRITERS

    targets, file_workers = load_targets(targets_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    formats = [f for f in ("json", "html") if f in WRITERS]
    pool_size = max(1, min(workers or file_workers or DEFAULT_WORKERS, len(targets)))
    results: dict[str, FleetResult] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=pool_size, thread_name_prefix="queryaudit-fleet") as pool:
        futures = {pool.submit(audit_target, t, out_dir, top, formats, store_url, baseline, record): t
                   for t in targets}
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
    generated = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    failed = sum(1 for r in results if not r.ok)
    rows_html, rows_md = [], []
    for r in results:
        links = " ".join(f'<a href="{html.escape(p.name)}">{html.escape(fmt.upper())}</a>'
                         for fmt, p in r.outputs.items())
        links_md = " ".join(f"[{fmt.upper()}]({p.name})" for fmt, p in r.outputs.items())
        if r.ok:
            s = r.summary
            status = "partial" if s["partial"] else "ok"
            detail = f"{_findings_text(s['findings'])}" + (f"; top: {s['top_finding']}" if s["top_finding"] else "")
            database = f"{s['database']} (PostgreSQL {s['server_version_num']})"
        else:
            status, detail, database = "failed", r.error or "", "-"
        rows_html.append(f"<tr class=\"{status}\"><td>{html.escape(r.target.name)}</td><td>{status}</td>"
                         f"<td>{html.escape(database)}</td><td>{html.escape(detail)}</td>"
                         f"<td>{r.seconds:.1f} s</td><td>{links}</td></tr>")
        cell = detail.replace("|", "\\|").replace("\n", " ")
        rows_md.append(f"| {r.target.name} | {status} | {database} | {cell} | {r.seconds:.1f} s | {links_md} |")
    title = f"queryaudit fleet: {len(results)} targets, {failed} failed"
    page = (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            "<style>body{font:14px/1.4 system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}"
            "tr.failed td{color:#a00}tr.partial td{color:#a60}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>generated {html.escape(generated)}</p><table><thead><tr>"
            "<th>target</th><th>status</th><th>database</th><th>findings / error</th><th>took</th><th>reports</th>"
            f"</tr></thead><tbody>{''.join(rows_html)}</tbody></table></body></html>\n")
    index_html, index_md = out_dir / "index.html", out_dir / "index.md"
    index_html.write_text(page, encoding="utf-8")
    index_md.write_text(f"# {title}\n\ngenerated {generated}\n\n| target | status | database | findings / error | "
                        "took | reports |\n|---|---|---|---|---|---|\n" + "\n".join(rows_md) + "\n", encoding="utf-8")
    return index_html, index_md
