"""`queryaudit plan`: read a saved EXPLAIN plan (text or JSON) and print its tree, or the
plan as EXPLAIN (FORMAT JSON) would. cli.py only declares the options."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console

from queryaudit.errors import AuditError


def run_plan_command(file: str, as_json: bool, console: Console) -> None:
    from queryaudit.plans.text import load_plan, tree_lines

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
    for line in tree_lines(explain):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
