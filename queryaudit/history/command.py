"""`queryaudit fleet`, `history` and `check`: the commands of the audit history. The command
line (cli.py) only declares their options."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from queryaudit.errors import AuditError
from queryaudit.pipeline import AuditOptions


def _say(console: Console, line: str) -> None:
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def run_fleet_command(
    targets: Path,
    out_dir: Path,
    options: AuditOptions,
    formats: dict[str, Path | None],
    workers: int | None,
    store: str | None,
    baseline: bool,
    console: Console,
) -> None:
    """Audit every database of targets.toml concurrently: one report each and an index page."""
    from queryaudit.history.fleet import FleetOptions, output_formats, run_fleet  # deferred: start-up of history/check

    def done(result) -> None:
        if result.ok:
            _say(
                console,
                f"ok      {result.target.name} ({result.seconds:.1f} s): "
                + ", ".join(str(p) for p in result.outputs.values()),
            )
        else:
            _say(console, f"FAILED  {result.target.name} ({result.seconds:.1f} s): {result.error}")

    fleet = FleetOptions(audit=options, formats=output_formats(formats))
    results = run_fleet(
        targets, out_dir, fleet, workers=workers, store_url=store, baseline=baseline, record=bool(store), on_done=done
    )
    failed = [r.target.name for r in results if not r.ok]
    _say(console, f"wrote {out_dir / 'index.html'} and {out_dir / 'index.md'}")
    if failed:
        raise AuditError(
            f"{len(failed)} of {len(results)} targets failed ({', '.join(failed)}): see {out_dir / 'index.html'}"
        )


def run_history_command(
    store: str | None,
    target: str | None,
    statement: str | None,
    finding: str | None,
    limit: int,
    html_path: Path | None,
    console: Console,
) -> None:
    """Audits stored for a target, and the trend of a statement or a finding over them."""
    from queryaudit.history import render  # deferred: start-up of fleet/check
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
                    _say(console, f"{queryid}  {' '.join(query.split())[:100]}")
                raise AuditError(f"{len(matches)} statements match {statement!r}: pass one queryid with --statement")
            rows = [r for r in db.statement_trend(chosen["id"], queryid) if r["id"] in ids]
            picked_statement = (queryid, query, rows)
        if finding:
            picked_finding = (finding, [r for r in db.finding_trend(chosen["id"], finding) if r["id"] in ids])
    finally:
        db.close()
    if not (picked_statement or picked_finding):
        render.print_table(
            console,
            f"Audits of {chosen['name']} ({len(audits)} shown)",
            render.AUDIT_COLUMNS,
            render.audit_rows(audits, notes=False),
        )
        for a in audits:
            if a["window_note"]:
                _say(console, f"#{a['id']}: {a['window_note']}")
    if picked_statement:
        queryid, query, rows = picked_statement
        render.print_table(
            console,
            f"Statement {queryid}: {' '.join(query.split())[:80]}",
            render.STATEMENT_COLUMNS,
            render.statement_rows(rows),
        )
    if picked_finding:
        render.print_table(
            console, f"Finding {finding}", render.FINDING_COLUMNS, render.finding_rows(picked_finding[1])
        )
    if html_path:
        render.write_history_page(html_path, render.history_page(chosen, audits, picked_statement, picked_finding))
        _say(console, f"wrote {html_path}")


def run_check_command(
    config: Path | None,
    store: str | None,
    dsn: str | None,
    snapshot: Path | None,
    report: Path | None,
    baseline_report: Path | None,
    target: str | None,
    record: bool,
    json_path: Path | None,
    options: AuditOptions,
    console: Console,
    notify: str | None = None,
    notify_retries: int = 3,
) -> int:
    """Budgets and suppressions: the exit code, 1 when a budget is broken (naming it), else 0.
    With notify, broken budgets are also posted there; the exit code does not depend on it."""
    from queryaudit.history.service import run_check  # deferred: start-up of fleet/history

    outcome = run_check(config, store, dsn, snapshot, report, baseline_report, target, record, options)
    verdict = outcome.verdict
    for line in outcome.lines + verdict.notes:
        _say(console, line)
    for s in verdict.expired:
        _say(
            console,
            f"expired suppression: {s.id} (expired {s.expires.isoformat()}; reason was: {s.reason}) "
            "no longer suppresses",
        )
    for item in verdict.suppressed:
        _say(console, f"suppressed: {item['id']} until {item['expires']} ({item['reason']})")
    if json_path:
        data = {"verdict": verdict.to_dict(), "comparison": outcome.comparison}
        if outcome.report is not None:
            data["report"] = outcome.report
        json_path.write_text(json.dumps(data, indent=1, default=str))
    if verdict.ok:
        _say(console, f"ok: all budgets hold ({verdict.judged_statements} statements judged)")
        return 0
    for v in verdict.violations:
        _say(console, f"BROKEN {v.budget}: {v.message}")
    _say(console, f"{len(verdict.violations)} budget(s) broken")
    if notify:
        from queryaudit.history.notify import BACKOFF_S, payload, post  # deferred: only with --notify

        _delivered, what = post(
            notify, payload(verdict, outcome.comparison, target), backoff=BACKOFF_S[:notify_retries]
        )
        _say(console, f"notify: {what}")
    return 1
