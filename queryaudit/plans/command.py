"""`queryaudit plan`: read a saved EXPLAIN plan (text or JSON), print its tree with the details
the checks read (sort and hash spills, buffers, rows removed), then the plan checks' findings on
it, as explain.depesz.com and pgMustard give them for a pasted plan. cli.py only declares the
options."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console

from queryaudit.checks import ids, run_checks
from queryaudit.errors import AuditError
from queryaudit.findings import SEVERITY_RANK
from queryaudit.plans.text import load_plan, tree_lines
from queryaudit.snapshot import PlanCapture, ServerInfo, Snapshot, Statement

PASTED = "pasted"  # the queryid of the one statement a pasted plan stands for


def pasted_plan_snapshot(explain: dict):
    """A snapshot holding one statement and its plan, so the plan checks run on a pasted plan
    exactly as on a captured one. The statement is the whole window: severities and savings
    are shares of this plan's own time."""
    root = explain.get("Plan") or {}
    analyzed = "Actual Total Time" in root or "Actual Loops" in root
    ms = float(explain.get("Execution Time") or root.get("Actual Total Time") or 0.0)
    statement = Statement(
        queryid=PASTED,
        query=explain.get("Query Text") or "(pasted plan)",
        calls=1,
        total_exec_time_ms=ms,
        mean_exec_time_ms=ms,
        rows=int(root.get("Actual Rows") or 0),
    )
    return Snapshot(
        server=ServerInfo(version_num=0, version="", database=""),
        collected_at="",
        statements=[statement],
        total_exec_time_ms=ms,
        total_calls=1,
        statement_count=1,
        plans=[PlanCapture(queryid=PASTED, method="analyze" if analyzed else "explain", plan=explain)],
    )


def pasted_plan_findings(explain: dict) -> tuple[list, list[str]]:
    """The plan checks' findings on one pasted plan, worst first, and the checks that failed on
    it. Checks that need the catalog (table sizes, indexes) find nothing to say without it."""
    snapshot = pasted_plan_snapshot(explain)
    findings = run_checks(snapshot, set(ids("plan")))
    failed = [f"{e.stage}: {e.message}" for e in snapshot.errors]
    return sorted(findings, key=lambda f: (SEVERITY_RANK[f.severity], -f.saving_share)), failed


def finding_lines(findings: list, failed: list[str]) -> list[str]:
    lines = [""] + [f"! {message}" for message in failed]
    if not findings:
        return lines + ["No finding from the plan checks."]
    lines.append(f"Findings ({len(findings)}; severity by share of this plan's time):")
    for f in findings:
        lines.append(f"{f.severity:8} {f.check}: {f.title}")
        fix = f.fix_sql or f.advice
        if fix:
            lines += [f"         {line}" for line in fix.splitlines()]
    return lines


def run_plan_command(file: str, as_json: bool, console: Console) -> None:
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
    for line in tree_lines(explain) + finding_lines(*pasted_plan_findings(explain)):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
