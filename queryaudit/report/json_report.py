"""The JSON report: the dict from model.build_report, written as is."""

from __future__ import annotations

import json
from pathlib import Path


def render(report: dict) -> str:
    return json.dumps(report, indent=2, default=str, ensure_ascii=False)


def write(report: dict, path: str | Path) -> None:
    Path(path).write_text(render(report), encoding="utf-8")
