"""Renderers: each formats the report dict built by model.build_report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from queryaudit.report import html, json_report, markdown

# format name -> writer(report, path). Each output format is its own CLI option.
# Every writer also takes a comparison (`queryaudit compare`): report["kind"] == "compare".
WRITERS: dict[str, Callable[[dict, Path], None]] = {
    "json": json_report.write,
    "html": html.write,
    "markdown": markdown.write,
}


def write_outputs(report: dict, outputs: dict[str, Path | None]) -> list[Path]:
    written = []
    for fmt, path in outputs.items():
        if path is None:
            continue
        path = Path(path)
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        WRITERS[fmt](report, path)
        written.append(path)
    return written
