"""Golden cases of the checks, database-free: a small snapshot (or a pasted plan text) and
the findings one check must make of it, in tests/golden/<check-id>/<case>.json:

    {"about": "what the case shows",
     "snapshot": {...}                       # a carved snapshot, or
     "like": "positive.json", "change": {"tables.0.reltuples": 5000},   # a near miss of another case
     "plan_text": {"<queryid>": "plan.txt"}, # optional: that statement's plan as psql printed it
     "expect": [{"check": ..., "severity": ..., "title": ..., ...}]}

`expect` lists every finding of that check, by the fields a reviewer reads (FIELDS).
Carve a new case from a real snapshot (tests/golden/capture.py makes them):

    PYTHONPATH=. python tests/golden/cases.py carve SNAPSHOT.json CHECK-ID NAME "about"
    PYTHONPATH=. python tests/golden/cases.py near-miss CHECK-ID NAME LIKE.json PATH=VALUE... "about"
"""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path

from queryaudit.checks import all_checks
from queryaudit.plans.text import load_plan
from queryaudit.snapshot import Snapshot

GOLDEN = Path(__file__).resolve().parent
FIELDS = ("check", "severity", "title", "table", "columns", "index", "queryids", "fix_sql", "confidence", "effort")
ROOT = GOLDEN.parent.parent


def run_check(check_id: str, snapshot: Snapshot) -> list[dict]:
    check = next(c for c in all_checks() if c.id == check_id)
    return [{k: f.to_dict()[k] for k in FIELDS} for f in check.run(snapshot)]


def _set(data, path: str, value) -> None:
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    for key in keys[:-1]:
        data = data[key]
    data[keys[-1]] = value


def case_snapshot(path: Path) -> Snapshot:
    """The snapshot a case file describes, with its near-miss changes and pasted plans applied."""
    case = json.loads(path.read_text())
    if "like" in case:
        data = copy.deepcopy(json.loads((path.parent / case["like"]).read_text())["snapshot"])
    else:
        data = case["snapshot"]
    for key, value in case.get("change", {}).items():
        _set(data, key, value)
    snapshot = Snapshot.from_dict(data)
    for queryid, name in case.get("plan_text", {}).items():
        plan = load_plan((path.parent / name).read_text())
        capture = next(p for p in snapshot.plans if p.queryid == queryid)
        capture.plan = plan
    return snapshot


def _plan_relations(node: dict, found: set[str]) -> None:
    if node.get("Relation Name"):
        found.add(node["Relation Name"])
    for child in node.get("Plans", []):
        _plan_relations(child, found)


def _used_settings() -> set[str]:
    """Settings names any code may read: the rest of the server's settings are noise in a case."""
    text = "\n".join(p.read_text() for p in (ROOT / "queryaudit").rglob("*.py"))
    return set(re.findall(r"[\"']([a-z_][a-z0-9_.]*)[\"']", text))


def carve(snapshot: Snapshot, check_id: str) -> dict:
    """The smallest part of `snapshot` on which the check makes the same findings."""
    full = run_check(check_id, snapshot)
    queryids = {q for f in full for q in f["queryids"]}
    texts = [s.query for s in snapshot.statements if s.queryid in queryids]
    relations: set[str] = set()
    for p in snapshot.plans:
        if p.queryid in queryids and p.plan:
            _plan_relations(p.plan["Plan"], relations)
            texts.append(json.dumps(p.plan))
    named = {f["table"] for f in full if f["table"]} | {f["index"] for f in full if f["index"]}
    text = "\n".join(texts)

    def wanted(table) -> bool:
        return (
            table.qualified_name in named
            or table.name in relations
            or re.search(rf"\b{re.escape(table.name)}\b", text) is not None
        )

    data = snapshot.to_dict()
    used = _used_settings()
    data["server"]["settings"] = {k: v for k, v in data["server"]["settings"].items() if k in used}
    data["errors"], data["partial"], data["extras"] = [], False, {}
    for attempt in ("tight", "all catalog", "all statements"):
        carved = copy.deepcopy(data)
        if attempt != "all statements":
            carved["statements"] = [s for s in data["statements"] if s["queryid"] in queryids]
            carved["plans"] = [p for p in data["plans"] if p["queryid"] in queryids]
        if attempt == "tight":
            tables = {t.qualified_name for t in snapshot.tables if wanted(t)}
            tables |= {fk.ref_table for fk in snapshot.foreign_keys if fk.table in tables}
            tables |= {fk.table for fk in snapshot.foreign_keys if fk.ref_table in tables}
            carved["tables"] = [t for t in data["tables"] if f"{t['schema']}.{t['name']}" in tables]
            carved["indexes"] = [i for i in data["indexes"] if i["table"] in tables]
            carved["foreign_keys"] = [
                f for f in data["foreign_keys"] if f["table"] in tables or f["ref_table"] in tables
            ]
            carved["column_stats"] = [c for c in data["column_stats"] if c["table"] in tables]
            carved["extended_statistics"] = [e for e in data["extended_statistics"] if e["table"] in tables]
        if run_check(check_id, Snapshot.from_dict(copy.deepcopy(carved))) == full:
            print(
                f"carved ({attempt}): {len(carved['statements'])} statements, {len(carved['tables'])} tables",
                file=sys.stderr,
            )
            return carved
    raise SystemExit(f"{check_id}: no carving of the snapshot keeps its findings")


def write_case(check_id: str, name: str, case: dict) -> Path:
    path = GOLDEN / check_id / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(case, indent=1) + "\n")
    case["expect"] = run_check(check_id, case_snapshot(path))
    path.write_text(json.dumps(case, indent=1) + "\n")
    print(f"{path.relative_to(ROOT)}: {len(case['expect'])} finding(s)", file=sys.stderr)
    for f in case["expect"]:
        print(f"  {f['severity']}: {f['title']}", file=sys.stderr)
    return path


def main(argv: list[str]) -> None:
    if argv[0] == "carve":
        source, check_id, name, about = argv[1:5]
        write_case(check_id, name, {"about": about, "snapshot": carve(Snapshot.load(source), check_id)})
    elif argv[0] == "near-miss":
        check_id, name, like, *changes, about = argv[1:]
        change = {}
        for item in changes:
            key, _, value = item.partition("=")
            change[key] = json.loads(value)
        write_case(check_id, name, {"about": about, "like": like, "change": change})
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
