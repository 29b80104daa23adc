"""`queryaudit history` output: terminal tables, and one self-contained HTML page with
small inline SVG charts (no script, no external file). Formats only; query texts are
user data and are escaped."""

from __future__ import annotations

import html
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from queryaudit.findings import SEVERITIES

SEVERITY_LETTERS = {"critical": "C", "high": "H", "medium": "M", "low": "L", "info": "I"}


def _short(text: str | None, width: int = 70) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _time(value: str | None, seconds: bool = True) -> str:
    return (value or "-").replace("T", " ")[: 19 if seconds else 16]


def _pg(version_num: int | None) -> str:
    return f"{version_num // 10000}.{version_num % 10000}" if version_num else "-"


def _num(value, fmt: str = "{:,.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def _findings(counts: dict[str, int]) -> str:
    return " ".join(f"{counts[s]}{SEVERITY_LETTERS[s]}" for s in SEVERITIES if counts.get(s)) or "0"


def audit_rows(audits: list[dict], notes: bool = True) -> list[list[str]]:
    return [
        [f"#{a['id']}", _time(a["collected_at"], False), _pg(a["server_version_num"]), a["window_kind"] or "cumulative"]
        + ([_time(a["window_start"] or a["statistics_since"], False)] if notes else [])
        + [
            _num((a["window_exec_time_ms"] if a["window_kind"] else a["total_exec_time_ms"]) or 0.0),
            _num(a["window_calls"] if a["window_kind"] else a["total_calls"], "{:,}"),
            str(a["statement_count"] or 0),
            _findings(a["findings"]),
        ]
        + ([a["window_note"] or ""] if notes else [])
        for a in audits
    ]


AUDIT_COLUMNS = ["audit", "collected (UTC)", "PG", "window", "time ms", "calls", "stmts", "findings"]
# The page has room for when each window began and its note.
AUDIT_PAGE_COLUMNS = AUDIT_COLUMNS[:4] + ["since"] + AUDIT_COLUMNS[4:] + ["note"]
STATEMENT_COLUMNS = ["audit", "collected (UTC)", "window", "calls", "mean ms", "total ms", "cum. calls"]
FINDING_COLUMNS = ["audit", "collected (UTC)", "present", "severity", "finding"]


def statement_rows(rows: list[dict]) -> list[list[str]]:
    return [
        [
            f"#{r['id']}",
            _time(r["collected_at"], False),
            r["entry_kind"] or ("absent" if r["calls"] is None else "-"),
            _num(r["calls"], "{:,}"),
            _num(r["mean_ms"], "{:,.3f}"),
            _num(r["total_ms"]),
            _num(r["cumulative_calls"], "{:,}"),
        ]
        for r in rows
    ]


def finding_rows(rows: list[dict]) -> list[list[str]]:
    return [
        [
            f"#{r['id']}",
            _time(r["collected_at"], False),
            "yes" if r["findings"] else "no",
            ", ".join(sorted({f["severity"] for f in r["findings"]})) or "-",
            "; ".join(f"{f['finding_id']} {f['title']}" for f in r["findings"][:3]),
        ]
        for r in rows
    ]


def print_table(console: Console, title: str, columns: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    for n, col in enumerate(columns):  # short cells stay on one line; the last (text) column folds
        table.add_column(col, no_wrap=n < len(columns) - 1, overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    console.print(table)


def print_targets(console: Console, targets: list[dict], store: str) -> None:
    print_table(
        console,
        f"Targets in {store}",
        ["target", "host", "port", "database", "audits", "last audit"],
        [
            [
                t["name"],
                t["host"] or "-",
                str(t["port"] or "-"),
                t["database"] or "-",
                str(t["audits"]),
                _time(t["last_audit"]),
            ]
            for t in targets
        ],
    )


# -- HTML ------------------------------------------------------------------------


def _tick(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def svg_line_chart(
    points: list[tuple[str, float | None]], title: str, unit: str, width: int = 640, height: int = 180
) -> str:
    """A small line chart; None values leave a gap. Values are data, labels are escaped."""
    left, right, top, bottom = 68, 12, 24, 28
    values = [v for _, v in points if v is not None]
    if not values:
        return f'<p class="empty">{html.escape(title)}: no values yet</p>'
    peak = max(values) or 1.0
    n = len(points)

    def x(i: int) -> float:
        return left + (width - left - right) * (i / (n - 1) if n > 1 else 0.5)

    def y(v: float) -> float:
        return top + (height - top - bottom) * (1 - v / peak)

    segments, current = [], []
    for i, (_, v) in enumerate(points):
        if v is None:
            if current:
                segments.append(current)
            current = []
        else:
            current.append((x(i), y(v)))
    if current:
        segments.append(current)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{html.escape(title)}" class="chart">',
        f'<text x="{left}" y="15" class="title">{html.escape(title)}</text>',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" class="axis"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" class="axis"/>',
        f'<text x="{left - 4}" y="{top + 4}" class="tick" text-anchor="end">{_tick(peak)}</text>',
        f'<text x="{left - 4}" y="{height - bottom}" class="tick" text-anchor="end">0</text>',
        f'<text x="{left - 4}" y="{(top + height - bottom) / 2}" class="tick" text-anchor="end">'
        f"{html.escape(unit)}</text>",
    ]
    for segment in segments:
        parts.append('<polyline class="line" points="' + " ".join(f"{a:.1f},{b:.1f}" for a, b in segment) + '"/>')
    for i, (label, v) in enumerate(points):
        if v is not None:
            parts.append(
                f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" class="dot">'
                f"<title>{html.escape(label)}: {v:,.4g} {html.escape(unit)}</title></circle>"
            )
    for i in sorted({0, n - 1}):
        anchor = "start" if i == 0 and n > 1 else "end" if n > 1 else "middle"
        parts.append(
            f'<text x="{x(i):.1f}" y="{height - 8}" class="tick" text-anchor="{anchor}">'
            f"{html.escape(points[i][0])}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
code, pre { font: 12px/1.3 ui-monospace, monospace; white-space: pre-wrap; }
.chart .axis { stroke: #999; } .chart .line { fill: none; stroke: #2a6fdb; stroke-width: 2; }
.chart .dot { fill: #2a6fdb; } .chart .tick { font-size: 11px; fill: #555; } .chart .title { font-weight: 600; }
.empty { color: #777; }
"""


def _html_table(columns: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def history_page(
    target: dict,
    audits: list[dict],
    statement: tuple[str, str, list[dict]] | None = None,
    finding: tuple[str, list[dict]] | None = None,
) -> str:
    name = target["name"]
    sections = [
        f"<h1>queryaudit history: {html.escape(name)}</h1>",
        f"<p>{len(audits)} audits of {html.escape(target['database'] or '-')} on "
        f"{html.escape(str(target['host'] or 'local'))}:{html.escape(str(target['port'] or '-'))}. "
        "Numbers are per window: what ran between an audit and the one before it "
        "(pg_stat_statements counters differenced, resets and evictions accounted for).</p>",
    ]
    labels = [f"#{a['id']} {_time(a['collected_at'])}" for a in audits]
    if statement:
        queryid, query, rows = statement
        sections.append(f"<h2>Statement {html.escape(queryid)}</h2><pre>{html.escape(query)}</pre>")
        by_id = {r["id"]: r for r in rows}
        sections.append(
            svg_line_chart(
                [(lbl, by_id.get(a["id"], {}).get("mean_ms")) for lbl, a in zip(labels, audits, strict=True)],
                "mean time per call in each window",
                "ms",
            )
        )
        sections.append(
            svg_line_chart(
                [(lbl, by_id.get(a["id"], {}).get("calls")) for lbl, a in zip(labels, audits, strict=True)],
                "calls in each window",
                "calls",
            )
        )
        sections.append(_html_table(STATEMENT_COLUMNS, statement_rows(rows)))
    if finding:
        key, rows = finding
        sections.append(f"<h2>Finding {html.escape(key)}</h2>")
        sections.append(
            svg_line_chart(
                [(lbl, float(len(r["findings"]))) for lbl, r in zip(labels, rows, strict=False)],
                "occurrences in each audit",
                "findings",
            )
        )
        sections.append(_html_table(FINDING_COLUMNS, finding_rows(rows)))
    sections.append("<h2>Audits</h2>")
    sections.append(
        svg_line_chart(
            [(lbl, a["window_exec_time_ms"]) for lbl, a in zip(labels, audits, strict=True)],
            "database execution time in each window",
            "ms",
        )
    )
    sections.append(_html_table(AUDIT_PAGE_COLUMNS, audit_rows(audits)))
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>queryaudit history: '
        f"{html.escape(name)}</title><style>{STYLE}</style></head><body>{''.join(sections)}</body></html>\n"
    )


def write_history_page(path: Path, page: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
