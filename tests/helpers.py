"""Shared test helpers: the report contract and our own schema."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT.parent / "shared" / "spec" / "report.schema.json"
OWN_SCHEMA = ROOT / "queryaudit" / "report" / "report.schema.json"


def validate_report(report: dict) -> None:
    """Valid against our shipped schema, and against the shared contract when present."""
    jsonschema.validate(report, json.loads(OWN_SCHEMA.read_text()))
    if CONTRACT.exists():
        jsonschema.validate(report, json.loads(CONTRACT.read_text()))
