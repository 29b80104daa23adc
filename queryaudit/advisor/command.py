"""`queryaudit advise-indexes`: the advisor alone, its terminal view and its JSON."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from queryaudit.advisor.model import IndexAdvice
from queryaudit.advisor.stage import AdvisorOptions
from queryaudit.advisor.units import megabytes
from queryaudit.checks import missing_index
from queryaudit.connect import resolve_dsn
from queryaudit.errors import AuditError
from queryaudit.pipeline import AuditOptions, collect_live
from queryaudit.snapshot import Snapshot
from queryaudit.verify.apply import apply_measurements
from queryaudit.verify.stage import VerifyOptions

REAL_WARNING = (
    "--verify-real builds each proposed index for real inside a transaction that is rolled back "
    "(a SHARE lock blocks writes to its table meanwhile): use it on a scratch or staging copy only"
)


def run_advisor(dsn: str, options: AdvisorOptions, explain: bool = True, top: int = 20) -> Snapshot:
    # Plan capture binds values to every statement the advisor costs (top = its statements).
    snapshot = collect_live(
        dsn,
        AuditOptions(
            top=max(top, options.statements), explain=explain, advisor=options, verify=VerifyOptions(enabled=False)
        ),
    )  # index advice only
    if snapshot.index_advice is None:
        reason = next((e.message for e in snapshot.errors if e.stage == "index advisor"), "the advisor did not run")
        raise AuditError(f"index advisor: {reason}")
    return snapshot


def advice_dict(snapshot: Snapshot) -> dict:
    # confidence follows the method, as in audit (apply_measurements)
    return {
        "database": snapshot.server.database,
        "server_version_num": snapshot.server.version_num,
        "advice": dataclasses.asdict(snapshot.index_advice),
        "findings": [f.to_dict() for f in apply_measurements(snapshot, missing_index.run(snapshot))],
        "errors": [dataclasses.asdict(e) for e in snapshot.errors],
    }


def write_json(snapshot: Snapshot, path: Path) -> None:
    path.write_text(json.dumps(advice_dict(snapshot), indent=1, default=str))


def render(snapshot: Snapshot, console: Console) -> None:
    advice: IndexAdvice = snapshot.index_advice
    by_id = {s.queryid: s for s in snapshot.statements}
    total = snapshot.total_exec_time_ms
    how = {
        "hypothetical": f"verified with HypoPG {advice.hypopg_version} (hypothetical indexes, each "
        "statement planned with its captured values; generic plan where none is known)",
        "real": "verified for real (built, EXPLAIN ANALYZE before/after, rolled back)",
        "none": "NOT verified: HypoPG is not available, savings are estimates",
    }[advice.method]
    console.print(
        Text.assemble(
            ("index advisor ", "bold"),
            f"{snapshot.server.database}: ",
            f"{advice.statements_considered} statements, "
            f"{advice.candidates_considered} candidates, "
            f"{how}, {advice.duration_ms / 1000:.1f} s"
            + (f", {advice.planner_calls} plans" if advice.planner_calls else ""),
        )
    )
    if advice.install_hint:
        console.print(Text(f"hint: {advice.install_hint}", style="yellow"))
    if not advice.proposed:
        console.print(
            "No index to propose: every statement considered is served by the existing indexes "
            f"(or no index cut the cost of the statements it serves by {advice.threshold:.0%})."
        )
    else:
        budget = f" of a {megabytes(advice.budget_bytes)} budget" if advice.budget_bytes is not None else ""
        table = Table(
            title=f"Proposed indexes ({len(advice.proposed)}, {megabytes(advice.total_size_bytes)}"
            f"{budget}; MB = 10^6 bytes)"
        )
        for col, justify in (
            ("#", "right"),
            ("index", "left"),
            ("statements", "right"),
            ("cost cut", "right"),
            ("saving", "right"),
            ("size", "right"),
            ("verified", "left"),
        ):
            table.add_column(col, justify=justify)
        for n, p in enumerate(advice.proposed, 1):
            keys = [f"{c} DESC" if c in p.descending else c for c in p.columns]
            what = (
                f"{p.table} ({', '.join(keys)})"
                + (f" INCLUDE ({', '.join(p.include)})" if p.include else "")
                + (f" WHERE {p.predicate}" if p.predicate else "")
            )
            cut = max(e.fraction_removed for e in p.statements)
            share = f"{p.saving_ms / total:.1%}" if total else "-"
            table.add_row(
                str(n),
                Text(what),
                str(len(p.statements)),
                f"{cut:.0%}",
                f"{p.saving_ms:.0f} ms ({share})",
                megabytes(p.size_bytes),
                p.verification,
            )
        console.print(table)
        for p in advice.proposed:
            console.print(Text(p.create_sql), soft_wrap=True)
            for e in p.statements:
                query = " ".join((by_id[e.queryid].query if e.queryid in by_id else "?").split())[:90]
                cost = f"cost {e.cost_before:.0f} -> {e.cost_after:.0f}" if e.cost_before is not None else ""
                ms = f", {e.ms_before:.1f} -> {e.ms_after:.1f} ms" if e.ms_before is not None else ""
                console.print(Text(f"    -- {e.queryid}: {cost}{ms}  {query}", style="dim"), soft_wrap=True)
    if advice.workload_cost_before:
        cut = 1 - advice.workload_cost_after / advice.workload_cost_before
        console.print(
            f"workload cost (calls x cost, {advice.statements_considered} statements): "
            f"{advice.workload_cost_before:.0f} -> {advice.workload_cost_after:.0f} ({cut:.0%} less)"
        )
    for note in advice.notes:
        console.print(Text(f"note: {note}", style="dim"))
    for r in advice.rejected:
        console.print(Text(f"rejected {r.kind}: {r.sql}: {r.error}", style="dim"), soft_wrap=True)


def run_advise_command(
    dsn: str | None,
    options: AdvisorOptions,
    explain: bool,
    json_path: Path | None,
    console: Console,
    err_console: Console,
) -> None:
    """`queryaudit advise-indexes`: the advisor alone, printed and optionally written as JSON."""
    if options.verify_real:
        err_console.print(REAL_WARNING, markup=False, highlight=False)
    snap = run_advisor(resolve_dsn(dsn), options, explain=explain)
    render(snap, console)
    if json_path:
        write_json(snap, json_path)
        console.print(f"wrote {json_path}", markup=False, highlight=False)
