"""The HTML report: one self-contained file (inline CSS, JS and SVG; no network request),
readable on a projector and printable to PDF.

Templates live in report/templates/ and only format the report dict: every number they
show is in the dict (see report/derive.py). Autoescape is on for every template, so
query texts, table names and evidence are always escaped.
"""

from __future__ import annotations

import json
from pathlib import Path

import jinja2

from queryaudit.findings import size_text

TEMPLATES = Path(__file__).resolve().parent / "templates"


def _ms(value) -> str:
    if value is None or isinstance(value, jinja2.Undefined):
        return "–"
    value = float(value)
    if value >= 60000:
        return f"{value / 60000:,.1f} min"
    if value >= 1000:
        return f"{value / 1000:,.2f} s"
    if value >= 10:
        return f"{value:,.0f} ms"
    if value >= 0.1:
        return f"{value:.2f} ms"
    return f"{value:.3f} ms"


def _pct(share, digits: int = 1) -> str:
    if share is None or isinstance(share, jinja2.Undefined):
        return "–"
    return f"{float(share) * 100:.{digits}f}%"


def _num(value) -> str:
    if value is None or isinstance(value, jinja2.Undefined):
        return "–"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


def _bytes(value) -> str:
    if value is None or isinstance(value, jinja2.Undefined):
        return "–"
    return size_text(value)


def _pretty_json(value) -> str:
    return json.dumps(value, indent=2, default=str, ensure_ascii=False, sort_keys=False)


def _one_line(text, width: int = 110) -> str:
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _is_scalar(value) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(ms=_ms, pct=_pct, num=_num, bytes=_bytes, pretty_json=_pretty_json, one_line=_one_line)
    env.tests["scalar"] = _is_scalar
    env.globals["css"] = (TEMPLATES / "report.css").read_text()
    env.globals["js"] = (TEMPLATES / "report.js").read_text()
    return env


def render(report: dict) -> str:
    return environment().get_template("report.html.j2").render(r=report)


def render_compare(comparison: dict) -> str:
    return environment().get_template("compare.html.j2").render(c=comparison)


def write(report: dict, path: str | Path) -> None:
    text = render_compare(report) if report.get("kind") == "compare" else render(report)
    Path(path).write_text(text, encoding="utf-8")
