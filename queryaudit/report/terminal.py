"""The terminal view: a summary, the top fixes, the top statements; progress while collecting.

Readable at 100 columns: long texts are cut to one line, SQL is printed as is (so it can
be copied). Everything shown comes from the report dict.
"""

from __future__ import annotations

import time

from rich.console import Console, Group
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from queryaudit.history.causes import cause_summary
from queryaudit.history.predictions import prediction_text

SEVERITY_STYLE = {"critical": "bold white on red", "high": "bold red", "medium": "yellow", "low": "cyan", "info": "dim"}
STATUS_STYLE = {"improved": "bold green", "regressed": "bold red", "new": "cyan", "gone": "dim", "unchanged": ""}


def _pct(share: float | None) -> str:
    return f"{share * 100:.1f}%" if share else "-"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value / 1000:,.2f} s"
    return f"{value:,.1f} ms" if value >= 10 else f"{value:.3f} ms"


def _rows(value: float | None) -> str:
    """Rows per call: 200,000 rather than 200000.0; a fraction only below 10 (0.5 rows a call)."""
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.2f}"


def _one_line(text: str, width: int = 70) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _header(report: dict) -> Panel:
    target, window, summary = report["target"], report["window"], report["summary"]
    counts = [
        Text(f"{n} {s}", style=SEVERITY_STYLE.get(s, "")) for s, n in summary["findings_by_severity"].items() if n
    ]
    lines = [
        Text.assemble(
            ("database ", "dim"),
            (str(target["database"]), "bold"),
            ("  PostgreSQL ", "dim"),
            str(target.get("server_version_short") or target["server_version_num"]),
            ("  host ", "dim"),
            str(target.get("host") or "local"),
        ),
        Text.assemble(
            ("window ", "dim"),
            str(window.get("since_label") or "since server start"),
            " → ",
            str(window.get("collected_label") or window["collected_at"]),
        ),
        Text.assemble(
            ("database time ", "dim"),
            (_ms(window["total_exec_time_ms"]), "bold"),
            ("  calls ", "dim"),
            f"{window['total_calls']:,}",
            ("  statements ", "dim"),
            f"{window['statement_count']:,}",
            ("  predicted saving ", "dim"),
            (_pct(summary.get("predicted_saving_share")), "bold green"),
        ),
        Text.assemble(
            ("findings ", "dim"), (str(len(report["findings"])), "bold"), "  ", *[x for c in counts for x in (c, "  ")]
        ),
    ]
    if report.get("plan_coverage") and report["plan_coverage"]["statements"]:
        lines.append(Text.assemble(("plans ", "dim"), report["plan_coverage"]["summary"]))
    return Panel(Group(*lines), title="queryaudit", title_align="left", expand=False)


def render(report: dict, console: Console | None = None, limit: int = 10) -> None:
    if report.get("kind") == "compare":
        render_compare(report, console)
        return
    console = console or Console()
    console.print(_header(report))
    if report["partial"]:
        console.print(Text("PARTIAL report: some stages failed (see below)", style="bold yellow"))

    if report["summary"]["top_fixes"]:
        fixes = Table(title="Top fixes (by predicted saving of database time)", title_justify="left")
        for col, kw in (
            ("#", {"justify": "right"}),
            ("saving", {"justify": "right"}),
            ("severity", {}),
            ("effort", {}),
            ("fix", {"overflow": "fold", "ratio": 1}),
        ):
            fixes.add_column(col, **kw)
        for n, f in enumerate(report["summary"]["top_fixes"], 1):
            fixes.add_row(
                str(n),
                _pct(f["share_of_total_time"]) + (f"\n{f['saving_method']}" if f.get("saving_method") else ""),
                Text(f["severity"], style=SEVERITY_STYLE.get(f["severity"], "")),
                f.get("effort") or "",
                Text(f"{f['title']}  [{f['check']}]"),
            )
        console.print(fixes)
        for n, f in enumerate(report["summary"]["top_fixes"][:3], 1):
            ba = f.get("before_after")
            if f.get("fix_sql") or ba or f.get("saving_basis"):
                # Each fix's own heading, or its measured lines would read as the previous fix's.
                console.print(Text(f"-- fix #{n}: {_one_line(f['title'], 80)}", style="dim"))
            if f.get("fix_sql"):
                console.print(Text(f["fix_sql"]), soft_wrap=True)
            if ba and ba.get("before_text"):
                runs = f", {ba['runs']} runs each" if ba.get("runs") else ""
                extra = f"; {ba['extra']}" if ba.get("extra") else ""
                console.print(
                    Text(
                        f"   {ba['measure']} ({ba['kind']}{runs}): {ba['before_text']} → {ba['after_text']}{extra}",
                        style="green",
                    ),
                    soft_wrap=True,
                )
            elif ba and ba.get("detail"):
                console.print(Text(f"   not verified: {ba['detail']}", style="yellow"), soft_wrap=True)
            if f.get("saving_basis"):
                console.print(Text(f"   {f['saving_basis']['text']}", style="dim"), soft_wrap=True)
    else:
        console.print("No findings.")

    listed = report["queries"][:limit]
    logged = ((report.get("logs") or {}).get("statements") or [])[:limit]
    percentiles = ("p50", "p95", "p99")
    if listed:
        title = "Top statements by total time"
        headers = ("share", "total", "calls", "mean", "rows/call")
        rows = [
            (
                _pct(q["share_of_total_time"]),
                _ms(q["total_exec_time_ms"]),
                f"{q['calls']:,}",
                _ms(q["mean_exec_time_ms"]),
                _rows(q["rows_per_call"]),
            )
            for q in listed
        ]
        if any(q.get("p95_ms") is not None for q in listed):  # tail latency from the log
            headers += percentiles
            rows = [r + tuple(_ms(q.get(f"{p}_ms")) for p in percentiles) for r, q in zip(rows, listed, strict=True)]
    else:  # a log without pg_stat_statements: the log's own statements
        title, listed = "Top logged statements by total time", logged
        headers = ("total", "count", "max") + percentiles
        rows = [
            (_ms(q["total_ms"]), f"{q['count']:,}", _ms(q["max_ms"]), *(_ms(q[f"{p}_ms"]) for p in percentiles))
            for q in listed
        ]
    queries = Table(title=title, title_justify="left", caption=report.get("workload_sources"), caption_justify="left")
    # Numbers are never cut; the query text takes what width is left and is cut instead.
    widths = [max([len(col)] + [len(r[i]) for r in rows]) for i, col in enumerate(headers)]
    for col, width in zip(headers, widths, strict=True):
        queries.add_column(col, justify="right", no_wrap=True, min_width=width)
    # 3 characters of border and padding per column, plus the closing border.
    query_width = max(20, console.width - sum(widths) - 3 * (len(headers) + 1) - 1)
    queries.add_column("query", no_wrap=True, overflow="ellipsis", max_width=query_width)
    for row, q in zip(rows, listed, strict=True):
        queries.add_row(*row, Text(_one_line(q["query"], query_width)))
    if listed:
        console.print(queries)
    _workload_table(console, report["queries"][:limit])
    if len(report["findings"]) > len(report["summary"]["top_fixes"]):
        console.print(
            Text(
                f"{len(report['findings']) - len(report['summary']['top_fixes'])} more findings: "
                "see the HTML/Markdown/JSON report (--html, --markdown, --json)",
                style="dim",
            )
        )
    for e in report["errors"]:
        console.print(Text(f"! {e['stage']}: {e['message']}", style="yellow"))


def _predictions_and_causes(c: dict, console: Console) -> None:
    for p in c.get("predictions") or []:
        console.print(
            Text(f"predicted vs realized: {prediction_text(p)}", style="red" if p["off_by_more_than_2x"] else "")
        )
    for s in c["statements"]:
        if s["status"] in ("regressed", "improved") and "causes" in s:
            why = ", ".join(cause_summary(x) for x in s["causes"]) or f"no cause found: {s.get('reason')}"
            console.print(Text(f"{s['status']}: {_one_line(s['query'], 60)}: {why}", style="dim"))


def _ratio(value) -> str:
    return "" if value is None else f"x{value:.3g}"


def _workload_table(console: Console, queries: list[dict]) -> None:
    """Per statement: how closely its analyzed plan reproduced the workload (plan / workload per call)."""
    compared = [(n, q, q["workload_match"]) for n, q in enumerate(queries, 1) if q.get("workload_match")]
    if not compared:
        return
    table = Table(title="Plans against the workload (plan / workload per call)", title_justify="left")
    for col in ("#", "verdict", "rows", "blocks", "temp", "time", "values"):
        table.add_column(
            col, justify="right" if col in ("#", "rows", "blocks", "temp", "time") else "left", overflow="fold"
        )
    for n, _, m in compared:
        verdict = m["verdict"] + (
            " (found by search)" if m.get("first_sample") and m["verdict"] == "representative" else ""
        )
        table.add_row(
            str(n),
            Text(verdict, style="green" if m["verdict"] == "representative" else "yellow"),
            _ratio(m["rows_ratio"]),
            _ratio(m["blocks_ratio"]),
            _ratio(m["temp_ratio"]),
            _ratio(m["time_ratio"]),
            ", ".join(str(v) for v in m["parameters"]),
        )
    console.print(table)
    for n, _, m in compared:
        if m.get("first_sample"):
            console.print(Text(f"   #{n}: {m['search']}", style="dim"), soft_wrap=True)
        elif m["verdict"] == "unlike":
            console.print(
                Text(f"   #{n}: unlike the workload: {'; '.join(m['reasons'])}", style="yellow"), soft_wrap=True
            )


def render_compare(c: dict, console: Console | None = None) -> None:
    console = console or Console()
    b, a = c["before"], c["after"]
    console.print(
        Panel(
            Group(
                Text.assemble(
                    ("database ", "dim"),
                    (str(a["database"]), "bold"),
                    ("" if c["same_database"] else f"  (before: {b['database']}!)"),
                ),
                Text.assemble(
                    ("database time ", "dim"),
                    f"{_ms(b['total_exec_time_ms'])} → {_ms(a['total_exec_time_ms'])}",
                    ("  findings ", "dim"),
                    f"{b['findings']} → {a['findings']}",
                    ("  resolved ", "dim"),
                    (str(len(c["findings"]["resolved"])), "bold green"),
                    ("  new ", "dim"),
                    (str(len(c["findings"]["new"])), "bold red" if c["findings"]["new"] else ""),
                ),
            ),
            title="queryaudit compare",
            title_align="left",
            expand=False,
        )
    )
    for v in c["verdicts"]:
        style = {"improved": "green", "applied": "green", "regressed": "red"}.get(v["outcome"], "dim")
        console.print(Text(f"• {v['text']}", style=style))
    if not c["verdicts"]:
        console.print("No fix applied between the two reports.")
    _predictions_and_causes(c, console)
    table = Table(title="Statements: mean time before and after", title_justify="left")
    statements = c["statements"][:15]
    # The change says the status ("170.1x faster", "no significant change"); a statement new or
    # gone has no change, and its status stands there instead.
    rows = [
        (
            _ms((s["before"] or {}).get("mean_exec_time_ms")),
            _ms((s["after"] or {}).get("mean_exec_time_ms")),
            # The verdict without its interval (the verdict lines above quote it whole).
            ((s.get("mean_change_text") or "").split(" (")[0].split(":")[0] or s["status"]),
            f"{(s['before'] or {}).get('calls', '-')} → {(s['after'] or {}).get('calls', '-')}",
        )
        for s in statements
    ]
    headers = (("before", "right"), ("after", "right"), ("change", "left"), ("calls", "right"))
    # Every column but the query is as wide as its longest cell ("no significant change" is never
    # cut); the query takes what is left, as in the audit's statements table. Below 20 characters
    # (an 80-column terminal) the statements are numbered and their text listed under the table.
    widths = [max([len(col)] + [len(r[i]) for r in rows]) for i, (col, _) in enumerate(headers)]
    query_width = console.width - sum(widths) - 3 * (len(headers) + 1) - 1
    numbered = query_width < 20
    if numbered:
        table.add_column("#", justify="right", no_wrap=True)
    for (col, justify), width in zip(headers, widths, strict=True):
        table.add_column(col, justify=justify, no_wrap=True, min_width=width)
    if not numbered:
        table.add_column("query", no_wrap=True, overflow="ellipsis", max_width=query_width)
    for n, (row, s) in enumerate(zip(rows, statements, strict=True), 1):
        table.add_row(
            *([str(n)] if numbered else []),
            *row[:2],
            Text(row[2], style=STATUS_STYLE.get(s["status"], "")),
            row[3],
            *([] if numbered else [Text(_one_line(s["query"], min(50, query_width)))]),
        )
    console.print(table)
    if numbered:
        for n, s in enumerate(statements, 1):
            console.print(Text(f"{n:>3}  {_one_line(s['query'], console.width - 6)}"), soft_wrap=True)


class StageProgress:
    """A progress display for collection: one line per stage with a spinner and its time,
    and a bar when the stage reports counts (progress(name, done, total)).

    Use as the `progress` callback of collect_snapshot; only on an interactive terminal.
    """

    def __init__(self, console: Console):
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.tasks: dict[str, int] = {}
        self.current: str | None = None
        self.started = time.monotonic()

    def start(self) -> None:
        self.progress.start()

    def stop(self) -> None:
        self._finish_current()
        self.progress.stop()

    def __enter__(self) -> StageProgress:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _finish_current(self) -> None:
        if self.current is not None:
            task = self.tasks[self.current]
            total = self.progress.tasks[task].total or 1
            self.progress.update(task, total=total, completed=total)

    def __call__(self, name: str, done: int | None = None, total: int | None = None) -> None:
        if name != self.current:
            self._finish_current()
            self.current = name
            if name not in self.tasks:
                self.tasks[name] = self.progress.add_task(name, total=None)
        task = self.tasks[name]
        if total is not None:
            self.progress.update(task, total=total, completed=done or 0)
