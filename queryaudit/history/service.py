"""What the CLI does with the history: record an audit, add its baseline comparison to
the report, and run `queryaudit check`. The commands only parse options and print."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from queryaudit.errors import AuditError
from queryaudit.history.baseline import baseline_section, compare, view_from_report, view_from_window
from queryaudit.history.budgets import Config, Verdict, causes_text, evaluate, load_config
from queryaudit.history.predictions import prediction_text
from queryaudit.history.store import Store, resolve_store_url
from queryaudit.history.trends import trends_section
from queryaudit.history.windows import Window, compute_window, point_from_snapshot

if TYPE_CHECKING:
    from queryaudit.pipeline import AuditOptions


def open_store(url: str | None, config: Config | None = None, create: bool = True) -> Store:
    return Store(url or (config.store if config else None), create=create)


def store_exists(url: str | None, config: Config | None = None) -> bool:
    """False only for a SQLite file that is not there yet (nothing recorded)."""
    resolved = resolve_store_url(url or (config.store if config else None))
    if not resolved.startswith("sqlite"):
        return True
    path = make_url(resolved).database
    return bool(path) and (path == ":memory:" or Path(path).exists())


def redacted_snapshot(snapshot):
    """The snapshot with its statement texts redacted, for a store fed by `audit --redact`."""
    from queryaudit.redact import redact_sql  # deferred: pglast costs `queryaudit history` start-up

    statements = [dataclasses.replace(s, query=redact_sql(s.query)) for s in snapshot.statements]
    return dataclasses.replace(snapshot, statements=statements)


def index_first_seen(snapshot, store_url: str | None, name: str | None = None, config: Config | None = None) -> dict:
    """snapshot.extras["index_first_seen"] from the store (unused-index judges young indexes by
    their own age); empty when nothing is stored yet."""
    if store_url is None and config is None:
        config = load_config()
    if not store_exists(store_url, config):
        return {}
    store = open_store(store_url, config, create=False)
    try:
        return store.index_first_seen(snapshot, name)
    finally:
        store.close()


def window_summary(window: Window) -> dict:
    from queryaudit.report.derive import when  # deferred: report rendering costs `history` start-up

    kinds: dict[str, int] = {}
    for entry in window.entries:
        kinds[entry.kind] = kinds.get(entry.kind, 0) + 1
    return {
        "kind": window.kind,
        "start": window.start,
        "end": window.end,
        "note": window.note,
        "start_label": when(window.start),
        "end_label": when(window.end),
        "evicted_entries": window.evicted,
        "entries_by_kind": kinds,
    }


def attach_history(
    report: dict,
    snapshot,
    store_url: str | None,
    record: bool,
    baseline: bool,
    name: str | None = None,
    redact: bool = False,
    config: Config | None = None,
) -> list[str]:
    """Record the audit (record) and/or compare it with the last stored audit of its target
    (baseline, into report["baseline"]). Returns lines for the terminal."""
    lines = []
    if store_url is None and config is None:
        config = load_config()  # its `store` key is the default store
    if redact:
        snapshot = redacted_snapshot(snapshot)
    if not record and not store_exists(store_url, config):
        report["baseline"] = {"before": None, "note": "no earlier audit stored: nothing to compare with"}
        return ["baseline: no audit history yet (record one with --store)"]
    store = open_store(store_url, config, create=record)
    try:
        if record:
            recorded = store.record(snapshot, report, name)
            window, previous_id = recorded.window, recorded.previous_audit_id
            report["history"] = {
                "store": store.display,
                "target": recorded.target.key,
                "audit_id": recorded.audit_id,
                "window": window_summary(window),
            }
            verb = "already stored as" if recorded.already_stored else "recorded as"
            lines.append(
                f"history: {verb} audit #{recorded.audit_id} of {recorded.target.key} in {store.display} "
                f"(window: {window.kind}{'; ' + window.note if window.note else ''})"
            )
        else:
            window, previous_id = store.window_for(snapshot, name)
        if baseline:
            if previous_id is None:
                report["baseline"] = {"before": None, "note": "no earlier audit of this target in the store"}
                lines.append("baseline: no earlier audit of this target in the store")
            else:
                before = store.audit_view(previous_id)
                after = view_from_window(window, report, "this audit")
                comparison = compare(before, after)
                report["baseline"] = baseline_section(comparison)
                lines.extend(baseline_lines(report["baseline"]))
                if record and not recorded.already_stored:
                    store.record_outcomes(recorded.audit_id, previous_id, comparison["predictions"])
        if record:
            report["history"]["track_record"] = store.track_record(recorded.target.key)
            target_id = store.resolve_target(recorded.target.key)["id"]
            report["history"]["trends"] = trends_section(store, target_id, report, recorded.audit_id)
    finally:
        store.close()
    return lines


def _short(query: str, width: int = 60) -> str:
    flat = " ".join(query.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} ms"


def baseline_lines(section: dict, limit: int = 5) -> list[str]:
    before = section["before"]
    counts = section["statement_counts"]
    f = section["findings"]
    lines = [
        f"baseline: {before['label']} of {before['collected_at']}: {counts.get('regressed', 0)} statements "
        f"slower, {counts.get('improved', 0)} faster, {counts.get('new', 0)} new; findings "
        f"{len(f['new'])} new, {len(f['resolved'])} resolved, {f['persisting']} persisting"
    ]
    for status, word in (("regressed", "slower"), ("improved", "faster")):
        for row in [r for r in section["statements"] if r["status"] == status][:limit]:
            lines.append(
                f"  {word}: {_short(row['query'])}  mean {_ms((row['before'] or {}).get('mean_exec_time_ms'))}"
                f" -> {_ms((row['after'] or {}).get('mean_exec_time_ms'))}{causes_text(row)}"
            )
    for line in section.get("predictions", [])[:limit]:
        lines.append(f"  predicted vs realized: {prediction_text(line)}")
    for finding in f["new"][:limit]:
        lines.append(f"  new finding [{finding['severity']}] {finding['id']}: {finding['title']}")
    for finding in f["resolved"][:limit]:
        lines.append(f"  resolved [{finding['severity']}] {finding['id']}: {finding['title']}")
    return lines


@dataclass
class CheckOutcome:
    verdict: Verdict
    comparison: dict
    config: Config
    lines: list[str]
    report: dict | None = None  # the fresh audit's report (--dsn/--snapshot), None otherwise


def run_check(
    config_path: Path | None,
    store_url: str | None,
    dsn: str | None,
    snapshot_path: Path | None,
    report_path: Path | None,
    baseline_report: Path | None,
    target: str | None,
    record: bool,
    options: AuditOptions | None = None,
) -> CheckOutcome:
    """The budgets held against: the latest stored audit and the one before it (no source), or
    a fresh audit (--dsn/--snapshot) and the last stored one, or a report and another report."""
    from queryaudit.pipeline import AuditOptions  # deferred: the audit pipeline costs `history` start-up

    options = options or AuditOptions()
    config = load_config(config_path)
    report = None
    sources = [s for s in (dsn, snapshot_path, report_path) if s is not None]
    if len(sources) > 1:
        raise AuditError("give one of --dsn, --snapshot or --report")
    lines = [f"budgets from {config.source}"]
    if report_path is not None:
        from queryaudit.before_after import load_report  # deferred: report rendering costs `history` start-up

        after = view_from_report(load_report(report_path), str(report_path))
        before = view_from_report(load_report(baseline_report), str(baseline_report)) if baseline_report else None
        lines.append("comparing cumulative report numbers (statistics since their reset)")
    elif dsn is not None or snapshot_path is not None:
        # deferred: the audit pipeline costs `queryaudit history` start-up (service serves it too)
        from queryaudit.connect import resolve_dsn
        from queryaudit.pipeline import live_snapshot, run_audit
        from queryaudit.snapshot import Snapshot

        # The same run as `audit`, with the same options, so findings compare like with like.
        source = Snapshot.load(snapshot_path) if snapshot_path is not None else live_snapshot(resolve_dsn(dsn), options)
        # An index younger than the unused-index window is judged by its age in the store, as in `audit`.
        source.extras["index_first_seen"] = index_first_seen(source, store_url, target, config)
        run = run_audit(source, options, logs_read=snapshot_path is None)
        snap, report = run.snapshot, run.report
        before = None
        if record or store_exists(store_url, config):
            store = open_store(store_url, config, create=record)
            try:
                if record:
                    recorded = store.record(snap, report, target)
                    window, previous_id = recorded.window, recorded.previous_audit_id
                    lines.append(f"recorded as audit #{recorded.audit_id} of {recorded.target.key}")
                else:
                    window, previous_id = store.window_for(snap, target)
                if previous_id is not None:
                    before = store.audit_view(previous_id)
            finally:
                store.close()
        else:
            window = compute_window(None, point_from_snapshot(snap))
        after = view_from_window(window, report, "this audit")
    else:
        if baseline_report:
            raise AuditError("--baseline-report goes with --report")
        store = open_store(store_url, config, create=False)
        try:
            chosen = store.resolve_target(target)
            ids = store.latest_audit_ids(chosen["id"], 2)
            after = store.audit_view(ids[0])
            before = store.audit_view(ids[1]) if len(ids) > 1 else None
        finally:
            store.close()
        lines.append(
            f"target {chosen['name']}: {after.label} ({after.collected_at})"
            + (f" against {before.label} ({before.collected_at})" if before else ", no earlier audit")
        )
    if before is None:
        lines.append("no baseline: regression budgets are not judged")
    comparison = compare(before, after)
    verdict = evaluate(config, comparison)
    return CheckOutcome(verdict, comparison, config, lines, report)
