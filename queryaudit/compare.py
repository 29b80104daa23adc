"""Before/after: two audit reports of the same database, compared.

Statements match by queryid, else by their normalized text (pglast fingerprint, then
whitespace-folded text). Findings match by id. A verdict is written for each fix that
visibly happened between the two reports: an index created or made valid, extended
statistics created, a finding resolved; each names the statements whose mean time moved.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

from queryaudit import __version__
from queryaudit.errors import AuditError
from queryaudit.report.derive import when
from queryaudit.sql import fingerprint

COMPARE_SCHEMA_VERSION = 1
# A statement "moved" when its mean time changed by at least this factor either way.
CHANGE_FACTOR = 1.25
REGRESSION_FACTOR = 2.0
# ... and by at least this much: sub-0.1 ms means move with the machine's mood.
MIN_CHANGE_MS = 0.1


def load_report(path: str | Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise AuditError(f"report file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AuditError(f"{path} is not a queryaudit JSON report (invalid JSON: {exc})") from None
    if not isinstance(data, dict) or "queries" not in data or "findings" not in data or "target" not in data:
        raise AuditError(f"{path} is not a queryaudit JSON report (write one with: queryaudit audit --json PATH)")
    return data


def _text_key(query: str) -> str:
    return " ".join(query.split()).lower()


def _stats(q: dict) -> dict:
    return {k: q.get(k) for k in ("calls", "total_exec_time_ms", "mean_exec_time_ms", "rows", "share_of_total_time")}


def change_text(before: float | None, after: float | None) -> str | None:
    if before is None or after is None:
        return None
    if abs(before - after) < MIN_CHANGE_MS:
        return "unchanged"
    if after > 0 and before / after >= CHANGE_FACTOR:
        return f"{before / after:,.1f}x faster"
    if before > 0 and after / before >= CHANGE_FACTOR:
        return f"{after / before:,.1f}x slower"
    return "unchanged"


def _status(before: dict | None, after: dict | None) -> str:
    if before is None:
        return "new"
    if after is None:
        return "gone"
    b, a = before["mean_exec_time_ms"] or 0.0, after["mean_exec_time_ms"] or 0.0
    if abs(b - a) < MIN_CHANGE_MS:
        return "unchanged"
    if a > 0 and b / a >= CHANGE_FACTOR or a == 0 < b:
        return "improved"
    if b > 0 and a / b >= CHANGE_FACTOR:
        return "regressed"
    return "unchanged"


def match_statements(before: dict, after: dict) -> list[dict]:
    after_by_id = {q["queryid"]: q for q in after["queries"]}
    after_by_fp: dict[str, dict] = {}
    after_by_text: dict[str, dict] = {}
    for q in after["queries"]:
        fp = fingerprint(q["query"])
        if fp:
            after_by_fp.setdefault(fp, q)
        after_by_text.setdefault(_text_key(q["query"]), q)
    used: set[str] = set()
    rows = []
    for q in before["queries"]:
        match, how = after_by_id.get(q["queryid"]), "queryid"
        if match is None or match["queryid"] in used:
            fp = fingerprint(q["query"])
            match, how = (after_by_fp.get(fp), "fingerprint") if fp else (None, None)
        if match is None or match["queryid"] in used:
            match, how = after_by_text.get(_text_key(q["query"])), "text"
        if match is not None and match["queryid"] in used:
            match = None
        if match is not None:
            used.add(match["queryid"])
        rows.append(_row(q, match, how if match else None))
    rows += [_row(None, q, None) for q in after["queries"] if q["queryid"] not in used]
    order = {"improved": 0, "regressed": 1, "unchanged": 2, "new": 3, "gone": 4}
    return sorted(rows, key=lambda r: (order[r["status"]], -(r["before"] or r["after"])["total_exec_time_ms"]))


def _row(before_q: dict | None, after_q: dict | None, matched_by: str | None) -> dict:
    b = _stats(before_q) if before_q else None
    a = _stats(after_q) if after_q else None
    q = before_q or after_q
    bm, am = (b or {}).get("mean_exec_time_ms"), (a or {}).get("mean_exec_time_ms")
    return {
        "queryid": q["queryid"], "after_queryid": after_q["queryid"] if after_q else None,
        "query": q["query"], "tables": q.get("tables", []), "matched_by": matched_by,
        "indexes_used_after": sorted({n["index"] for n in (after_q or {}).get("plan_nodes") or [] if n.get("index")}),
        "before": b, "after": a, "status": _status(b, a),
        "mean_ratio": round(bm / am, 3) if bm is not None and am else None,
        "mean_change_text": change_text(bm, am),
        "total_change_ms": round(a["total_exec_time_ms"] - b["total_exec_time_ms"], 3) if a and b else None,
        "calls_change": a["calls"] - b["calls"] if a and b else None,
    }


def _short(query: str, width: int = 70) -> str:
    flat = " ".join(query.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _statement_verdict(subject: str, rows: list[dict]) -> dict:
    # A regression is only laid at a fix's door when it is large: small ones are noise between runs.
    moved = [r for r in rows if r["status"] == "improved"
             or (r["status"] == "regressed" and (r["mean_ratio"] or 1) <= 1 / REGRESSION_FACTOR)]
    if not moved:
        return {"subject": subject, "outcome": "no-change", "statements": [], "lines": [],
                "note": "no reported statement changed measurably",
                "text": f"{subject}: no reported statement changed measurably"}
    parts = [f"statement {_short(r['query'])!r} mean {r['before']['mean_exec_time_ms']:.3g} ms -> "
             f"{r['after']['mean_exec_time_ms']:.3g} ms ({r['mean_change_text']})" for r in moved]
    outcome = "improved" if all(r["status"] == "improved" for r in moved) else "regressed"
    return {"subject": subject, "outcome": outcome, "statements": [r["queryid"] for r in moved], "lines": parts,
            "text": f"{subject}: " + "; ".join(parts)}


def _served_by(index: dict, rows: list[dict]) -> list[dict]:
    """The statements an index serves: those whose plan after uses it; without plans, those
    on its table that name its leading column."""
    bare = index["name"].split(".")[-1]
    planned = [r for r in rows if r.get("indexes_used_after")]
    if planned:
        return [r for r in rows if bare in r.get("indexes_used_after", [])]
    lead = (index.get("columns") or [None])[0]
    if not lead:
        return rows
    return [r for r in rows if re.search(rf"\b{re.escape(lead)}\b", r["query"])]


def _indexes(report: dict) -> dict[str, dict]:
    return {i["name"]: i for i in (report.get("catalog") or {}).get("indexes", [])}


def build_comparison(before: dict, after: dict) -> dict:
    statements = match_statements(before, after)
    by_table: dict[str, list[dict]] = {}
    for r in statements:
        for t in r["tables"]:
            by_table.setdefault(t, []).append(r)
    by_before_id = {r["queryid"]: r for r in statements if r["before"]}

    verdicts = []
    bi, ai = _indexes(before), _indexes(after)
    for name, idx in ai.items():
        if name not in bi:
            subject = f"index {name} created"
        elif idx.get("valid") and not bi[name].get("valid"):
            subject = f"index {name} rebuilt (now valid)"
        else:
            continue
        verdicts.append({**_statement_verdict(subject, _served_by(idx, by_table.get(idx["table"], []))),
                         "kind": "index-created", "object": name})
    for name in sorted(set(bi) - set(ai)):
        verdicts.append({"subject": f"index {name} dropped", "outcome": "applied", "statements": [],
                         "text": f"index {name} dropped ({bi[name].get('bytes', 0) // 1024} kB of index no longer "
                                 "maintained on writes)", "kind": "index-dropped", "object": name})
    bs = {s["name"]: s for s in (before.get("catalog") or {}).get("statistics", [])}
    for s in (after.get("catalog") or {}).get("statistics", []):
        if s["name"] not in bs:
            verdicts.append({**_statement_verdict(f"statistics {s['name']} created", by_table.get(s["table"], [])),
                             "kind": "statistics-created", "object": s["name"]})

    b_findings = {f["id"]: f for f in before["findings"]}
    a_findings = {f["id"]: f for f in after["findings"]}
    resolved = [f for i, f in b_findings.items() if i not in a_findings]
    new = [f for i, f in a_findings.items() if i not in b_findings]
    persisting = [{"id": i, "check": f["check"], "title": f["title"],
                   "before_share": (f.get("predicted_saving") or {}).get("share_of_total_time"),
                   "after_share": (a_findings[i].get("predicted_saving") or {}).get("share_of_total_time")}
                  for i, f in b_findings.items() if i in a_findings]
    for f in resolved:
        if not f.get("fix_sql"):
            continue  # nothing was applied for it: listed under resolved findings, no verdict
        created = next((v for v in verdicts if v["kind"] in ("index-created", "statistics-created")
                        and re.search(rf"\b{re.escape(v['object'].split('.')[-1])}\b", f["fix_sql"])), None)
        if created is not None:  # the verdict of the object its fix created says it already
            created.setdefault("resolves", []).append(f["id"])
            continue
        rows = [by_before_id[q] for q in f.get("queryids", []) if q in by_before_id]
        if rows:
            verdict = _statement_verdict(f"resolved {f['check']} ({f['title']})", rows)
        else:
            verdict = {"subject": f"resolved {f['check']}", "outcome": "improved", "statements": [],
                       "text": f"resolved {f['check']}: {f['title']}"}
        verdicts.append({**verdict, "kind": "finding-resolved", "object": f["id"]})

    def side(r: dict) -> dict:
        return {"database": r["target"]["database"], "server_version_num": r["target"]["server_version_num"],
                "generated_at": r["generated_at"], "collected_at": r["window"]["collected_at"],
                "collected_label": when(r["window"]["collected_at"]),
                "statistics_since": r["window"].get("statistics_since"),
                "total_exec_time_ms": r["window"]["total_exec_time_ms"], "total_calls": r["window"]["total_calls"],
                "findings": len(r["findings"]),
                "predicted_saving_share": r.get("summary", {}).get("predicted_saving_share")}

    counts = {s: sum(1 for r in statements if r["status"] == s)
              for s in ("improved", "regressed", "unchanged", "new", "gone")}
    return {
        "kind": "compare",
        "schema_version": COMPARE_SCHEMA_VERSION,
        "tool": {"name": "queryaudit", "version": __version__},
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "same_database": before["target"]["database"] == after["target"]["database"],
        "before": side(before),
        "after": side(after),
        "verdicts": verdicts,
        "statements": statements,
        "statement_counts": counts,
        "findings": {"resolved": resolved, "new": new, "persisting": persisting},
    }
