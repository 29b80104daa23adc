"""The terminal view: a summary, the top statements and the prioritised fixes."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

SEVERITY_STYLE = {"critical": "bold white on red", "high": "bold red", "medium": "yellow", "low": "cyan",
                  "info": "dim"}


def _pct(share: float | None) -> str:
    return f"{share * 100:.1f}%" if share else "-"


def _one_line(text: str, width: int = 70) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def render(report: dict, console: Console | None = None, limit: int = 10) -> None:
    console = console or Console()
    target, window = report["target"], report["window"]
    head = Text.assemble(("queryaudit ", "bold"), f"{target['database']} on PostgreSQL {target['server_version_num']}",
                         f"  {window['statement_count']} statements, {window['total_exec_time_ms'] / 1000:.1f} s total",
                         f" since {window['statistics_since'] or 'server start'}")
    console.print(head)
    if report["partial"]:
        console.print(Text("PARTIAL report: some stages failed (see errors below)", style="bold yellow"))

    queries = Table(title="Top statements by total time", show_lines=False, expand=False)
    for col, justify in (("share", "right"), ("total ms", "right"), ("calls", "right"), ("mean ms", "right"),
                         ("rows/call", "right"), ("query", "left")):
        queries.add_column(col, justify=justify)
    for q in report["queries"][:limit]:
        queries.add_row(_pct(q["share_of_total_time"]), f"{q['total_exec_time_ms']:.1f}", str(q["calls"]),
                        f"{q['mean_exec_time_ms']:.3f}", f"{q['rows_per_call']}", Text(_one_line(q["query"])))
    console.print(queries)

    if report["findings"]:
        fixes = Table(title=f"Prioritised fixes ({len(report['findings'])} findings)")
        for col in ("#", "saving", "severity", "check", "finding"):
            fixes.add_column(col)
        for n, f in enumerate(report["findings"][:limit], 1):
            saving = (f.get("predicted_saving") or {}).get("share_of_total_time")
            fixes.add_row(str(n), _pct(saving), Text(f["severity"], style=SEVERITY_STYLE.get(f["severity"], "")),
                          f["check"], Text(f["title"]))
        console.print(fixes)
        for f in report["findings"][:3]:
            if f.get("fix_sql"):
                console.print(Text(f"-- {f['title']}", style="dim"))
                console.print(Text(f["fix_sql"]))
    else:
        console.print("No findings.")
    for e in report["errors"]:
        console.print(Text(f"! {e['stage']}: {e['message']}", style="yellow"))
