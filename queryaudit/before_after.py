"""Before/after: two audit reports of the same database, compared.

Statements match by queryid, else by their normalized text (pglast fingerprint, then
whitespace-folded text). Findings match by id. A verdict is written for each fix that
visibly happened between the two reports: an index created or made valid, extended
statistics created, a finding resolved; each quotes the measured change of the
statements it serves.

A statement is "improved" or "regressed" only when its mean time changed both
significantly and materially; otherwise it is "unchanged", shown as "no significant
change" with the 95 % interval of the change.
- Significant: Welch's t-test on pg_stat_statements' calls, mean and standard deviation
  (p < ALPHA), and the change stands out of the runs' drift: two runs on one machine
  differ as a whole (a busier machine slows every statement at once), which no
  within-run spread shows; the drift is estimated from all statements measured on both
  sides (run_drift) and added to the statement's own error (log scale).
- Material: by at least MATERIAL_CHANGE of the mean, and MIN_CHANGE_MS; with an interval, its bound
  nearest zero is beyond MATERIAL_CHANGE too.
- Not the machine: a time change whose calls did the same work (shared and temp blocks and
  rows per call within WORK_TOLERANCE) counts only beyond TIME_ONLY_FACTOR. Calls of one
  statement run close together, so a busy spell on the machine slows them all at once,
  which neither their spread nor the other statements show: two runs of one unchanged
  workload on a 2-core machine with both cores held by other work moved one statement
  1.9-2.0x (bench/compare_noise.py measures it), with its work per call unchanged. Beyond
  that factor the fastest call must have moved as far too: a burst of load slows some
  calls (CI saw one statement's mean 5.5x slower, its spread 0.7 of the mean) but cannot
  make the fastest one slower than the work allows, while a cause that does not show in
  blocks (JIT, a slower function, a lock every call waits on) moves every call.
Without a spread (store windows recorded before spreads were kept) only a
REGRESSION_FACTOR change over UNTESTED_MIN_CALLS calls counts. Where both reports carry
log percentiles (--log), the p95 change is shown beside the mean.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from pathlib import Path

from queryaudit import __version__
from queryaudit.errors import AuditError
from queryaudit.history.causes import explain_change, load_context
from queryaudit.history.predictions import predicted_vs_realized
from queryaudit.report.derive import when
from queryaudit.significance import welch
from queryaudit.sql import fingerprint

COMPARE_SCHEMA_VERSION = 1
# Significant: Welch's p-value below ALPHA (strict: one comparison tests every statement).
ALPHA = 0.01
INTERVAL_ALPHA = 0.05  # the interval shown: 95 %
# Material: the mean moved by at least this share of its value ...
MATERIAL_CHANGE = 0.20
# ... and by at least this much: sub-0.1 ms means move with the machine's mood.
MIN_CHANGE_MS = 0.1
# Without a spread to test against, only a change of this factor, over this many calls, counts.
REGRESSION_FACTOR = 2.0
UNTESTED_MIN_CALLS = 30
# The runs' drift (run_drift) is estimated from at least this many statements.
DRIFT_MIN_STATEMENTS = 5
# Work per call (blocks, temp blocks, rows) this close on both sides is the same work ...
WORK_TOLERANCE = 0.1
# ... and then only a time change of this factor, of the mean and of the fastest call, counts:
# up to 2x is the machine's load.
TIME_ONLY_FACTOR = 3.0


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
    return {
        k: q.get(k)
        for k in (
            "calls",
            "total_exec_time_ms",
            "mean_exec_time_ms",
            "stddev_exec_time_ms",
            "min_exec_time_ms",
            "rows",
            "share_of_total_time",
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "shared_blks_hit",
            "shared_blks_read",
            "temp_blks_written",
            "cache_hit_ratio",
        )
    }


def work_per_call(stats: dict) -> tuple[float, float, float] | None:
    """Shared blocks (hit + read), temp blocks written and rows, per call: what a call did,
    whatever the machine's load; None without calls or counters."""
    calls = stats.get("calls") or 0
    counters = [stats.get(k) for k in ("shared_blks_hit", "shared_blks_read", "temp_blks_written", "rows")]
    if calls <= 0 or any(c is None for c in counters):
        return None
    hit, read, temp, rows = counters
    return (hit + read) / calls, temp / calls, rows / calls


def same_work(before: dict, after: dict) -> bool:
    """The calls on both sides did the same work: each of work_per_call within WORK_TOLERANCE
    (or within one block or row per call)."""
    wb, wa = work_per_call(before), work_per_call(after)
    if wb is None or wa is None:
        return False
    return all(abs(y - x) <= max(WORK_TOLERANCE * max(x, y), 1.0) for x, y in zip(wb, wa, strict=True))


def _beyond_the_machine(before: dict, after: dict) -> bool:
    """A time change with the same work per call that the load cannot explain: the mean and,
    where both reports carry it, the fastest call moved TIME_ONLY_FACTOR or more the same way."""
    b, a = before["mean_exec_time_ms"], after["mean_exec_time_ms"]
    if max(a / b, b / a) < TIME_ONLY_FACTOR:
        return False
    fb, fa = before.get("min_exec_time_ms"), after.get("min_exec_time_ms")
    if not fb or not fa:
        return True
    return (fa / fb >= TIME_ONLY_FACTOR) if a > b else (fb / fa >= TIME_ONLY_FACTOR)


def _fastest_text(before: dict, after: dict) -> str:
    fb, fa = before.get("min_exec_time_ms"), after.get("min_exec_time_ms")
    return f", its fastest call {_ratio_text(fb, fa)}" if fb and fa else ""


def _ratio_text(before: float, after: float) -> str:
    if after > 0 and before / after >= 1:
        return f"{before / after:,.1f}x faster" if before / after >= 1.05 else f"{(after - before) / before:+.0%}"
    return f"{after / before:,.1f}x slower" if before > 0 and after / before >= 1.05 else "unchanged"


def run_drift(pairs: list[tuple[dict, dict]]) -> float:
    """How much the two runs differ as a whole (log scale): 1.4826 x the median |ln(after/before)|
    of the statements measured on both sides. Within-run spread cannot see a machine that
    was busier during one run (every statement then moves together); a statement's change
    must also stand out of this. 0 when too few statements tell."""
    logs = sorted(
        abs(math.log(a["mean_exec_time_ms"] / b["mean_exec_time_ms"]))
        for b, a in pairs
        if min(b.get("calls") or 0, a.get("calls") or 0) >= 2
        and (b.get("mean_exec_time_ms") or 0) > 0
        and (a.get("mean_exec_time_ms") or 0) > 0
        and max(b["mean_exec_time_ms"], a["mean_exec_time_ms"]) >= MIN_CHANGE_MS
    )
    if len(logs) < DRIFT_MIN_STATEMENTS:
        return 0.0
    mid = len(logs) // 2
    median = logs[mid] if len(logs) % 2 else (logs[mid - 1] + logs[mid]) / 2
    return 1.4826 * median


def _normal_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2.0))


def judge(before: dict | None, after: dict | None, drift: float = 0.0) -> dict:
    """Status, change text and the test behind it, for one statement's two records.
    `drift`: run_drift() of the comparison (log scale), added to the statement's own spread."""

    if before is None:
        return {"status": "new", "text": None, "test": None}
    if after is None:
        return {"status": "gone", "text": None, "test": None}
    b, a = before.get("mean_exec_time_ms"), after.get("mean_exec_time_ms")
    if b is None or a is None:
        return {"status": "unchanged", "text": None, "test": None}
    relative = (a - b) / b if b > 0 else (0.0 if a == b else float("inf"))
    material = abs(relative) >= MATERIAL_CHANGE and abs(a - b) >= MIN_CHANGE_MS
    sb, sa = before.get("stddev_exec_time_ms"), after.get("stddev_exec_time_ms")
    nb, na = int(before.get("calls") or 0), int(after.get("calls") or 0)
    test = welch(b, sb, nb, a, sa, na, INTERVAL_ALPHA) if sb is not None and sa is not None else None
    if test is None:
        return _untested(b, a, relative, nb, na)
    significant = test.significant(ALPHA)
    detail = {
        "method": "welch",
        "p_value": round(test.p_value, 6),
        "df": round(test.df, 1),
        "difference_ms": round(test.difference, 4),
        "interval_ms": [round(test.low, 4), round(test.high, 4)],
        "relative_change": round(relative, 4) if math.isfinite(relative) else None,
        "interval_relative": [round(test.low / b, 4), round(test.high / b, 4)] if b > 0 else None,
        "alpha": ALPHA,
        "material_change": MATERIAL_CHANGE,
        "run_drift": round(drift, 4),
    }
    low, high = detail["interval_relative"] or (None, None)
    if drift > 0 and a > 0 and b > 0:
        # Log scale: the statement's own standard error (delta method) and the runs' drift.
        se = math.sqrt((sb**2 * nb / max(1, nb - 1)) / (nb * b * b) + (sa**2 * na / max(1, na - 1)) / (na * a * a))
        total = math.sqrt(se * se + drift * drift)
        ratio = math.log(a / b)
        p_drift = _normal_p(ratio / total)
        significant = significant and p_drift < ALPHA
        z = 1.959964  # the 95 % interval
        low, high = math.exp(ratio - z * total) - 1, math.exp(ratio + z * total) - 1
        detail.update(p_value_with_drift=round(p_drift, 6), interval_relative=[round(low, 4), round(high, 4)])
    if low is not None and high is not None:
        # Material with confidence: the whole interval lies beyond the threshold, not only its
        # middle (a run-level shift of one statement sits at 1.3x with a bound near 10 %).
        material = material and (high <= -MATERIAL_CHANGE if a < b else low >= MATERIAL_CHANGE)
    same = same_work(before, after)
    time_only = significant and material and same and a > 0 and b > 0 and not _beyond_the_machine(before, after)
    # within_machine_noise: significant in time, but the work says the machine (budgets read it).
    detail.update(significant=significant, material=material, same_work_per_call=same, within_machine_noise=time_only)
    if low is None:
        interval = f"{test.low:+.3g} … {test.high:+.3g} ms"
    else:  # a 100x speed-up is -99 %: keep the digit that tells it from -100 %
        interval = f"{low:+.1%} … {high:+.1%}" if low < -0.9 else f"{low:+.0%} … {high:+.0%}"
    if time_only:
        text = (
            f"no significant change: {_ratio_text(b, a)} in time alone{_fastest_text(before, after)}, with the same "
            f"blocks and rows per call (the machine's load moves a statement up to {TIME_ONLY_FACTOR:g}x, "
            f"its fastest call less; 95 % interval {interval})"
        )
        return {"status": "unchanged", "test": detail, "text": text}
    if significant and material:
        p_value = max(test.p_value, detail.get("p_value_with_drift", 0.0))
        p = "p < 0.001" if p_value < 0.001 else f"p = {p_value:.3f}"
        return {
            "status": "improved" if a < b else "regressed",
            "test": detail,
            "text": f"{_ratio_text(b, a)} ({p}; 95 % interval {interval})",
        }
    text = (
        f"no significant change (95 % interval {interval})"
        if not significant
        else f"no significant change: {relative:+.0%} is not surely beyond the {MATERIAL_CHANGE:.0%} threshold "
        f"(95 % interval {interval})"
    )
    return {"status": "unchanged", "text": text, "test": detail}


def _untested(b: float, a: float, relative: float, nb: int, na: int) -> dict:
    """No spread to test against (a store window recorded before spreads were kept): only a
    large change over enough calls counts; one call against one call never does."""
    detail = {
        "method": "ratio",
        "relative_change": round(relative, 4) if math.isfinite(relative) else None,
        "note": f"no spread (fewer than 2 calls, or no stddev): only a {REGRESSION_FACTOR:g}x change over "
        f"at least {UNTESTED_MIN_CALLS} calls a side counts",
    }
    big = (
        min(nb, na) >= UNTESTED_MIN_CALLS
        and abs(a - b) >= MIN_CHANGE_MS
        and (a > 0 and b / a >= REGRESSION_FACTOR or b > 0 and a / b >= REGRESSION_FACTOR or a == 0 < b)
    )
    if big:
        return {
            "status": "improved" if a < b else "regressed",
            "test": detail,
            "text": f"{_ratio_text(b, a)} (untested: no spread)",
        }
    return {"status": "unchanged", "test": detail, "text": f"no significant change ({relative:+.0%}, untested)"}


def change_text(before: float | None, after: float | None) -> str | None:
    """A plain ratio of two means, for lines that quote one (no test behind it)."""
    if before is None or after is None:
        return None
    if abs(before - after) < MIN_CHANGE_MS:
        return "unchanged"
    return _ratio_text(before, after)


def p95_change(before: dict | None, after: dict | None) -> str | None:
    """The logs' p95 before -> after, where both reports have it (--log)."""
    b, a = (before or {}).get("p95_ms"), (after or {}).get("p95_ms")
    if b is None or a is None:
        return None
    return f"p95 {b:.3g} -> {a:.3g} ms ({change_text(b, a)})"


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
    drift = run_drift([(r["before"], r["after"]) for r in rows if r["before"] and r["after"]])
    for r in rows:
        verdict = judge(r["before"], r["after"], drift)
        r.update(status=verdict["status"], mean_change_text=verdict["text"], significance=verdict["test"])
    order = {"improved": 0, "regressed": 1, "unchanged": 2, "new": 3, "gone": 4}
    return sorted(rows, key=lambda r: (order[r["status"]], -(r["before"] or r["after"])["total_exec_time_ms"]))


def _row(before_q: dict | None, after_q: dict | None, matched_by: str | None) -> dict:
    b = _stats(before_q) if before_q else None
    a = _stats(after_q) if after_q else None
    q = before_q or after_q
    bm, am = (b or {}).get("mean_exec_time_ms"), (a or {}).get("mean_exec_time_ms")
    verdict = judge(b, a)
    return {
        "queryid": q["queryid"],
        "after_queryid": after_q["queryid"] if after_q else None,
        "query": q["query"],
        "tables": q.get("tables", []),
        "matched_by": matched_by,
        "indexes_used_after": sorted({n["index"] for n in (after_q or {}).get("plan_nodes") or [] if n.get("index")}),
        "before": b,
        "after": a,
        "status": verdict["status"],
        "mean_ratio": round(bm / am, 3) if bm is not None and am else None,
        "mean_change_text": verdict["text"],
        "significance": verdict["test"],
        "p95_change_text": p95_change(b, a),
        "total_change_ms": round(a["total_exec_time_ms"] - b["total_exec_time_ms"], 3) if a and b else None,
        "calls_change": a["calls"] - b["calls"] if a and b else None,
        # Set by the report when another statement has the same text (report.derive.mark_twins).
        "differs_by": q.get("differs_short") or q.get("differs_by"),
    }


def _short(query: str, width: int = 70) -> str:
    flat = " ".join(query.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _measured(r: dict) -> str:
    p95 = f"; {r['p95_change_text']}" if r.get("p95_change_text") else ""
    return (
        f"statement {_short(r['query'])!r} mean {r['before']['mean_exec_time_ms']:.3g} ms -> "
        f"{r['after']['mean_exec_time_ms']:.3g} ms, {r['after']['calls']} calls after: "
        f"{r['mean_change_text']}{p95}"
    )


def _time_changed_ms(r: dict) -> float:
    """What the change in mean made of the calls after: the time the fix saved (or cost) there."""
    if not (r["before"] and r["after"]):
        return 0.0
    return (r["before"]["mean_exec_time_ms"] - r["after"]["mean_exec_time_ms"]) * r["after"]["calls"]


def _statement_verdict(subject: str, rows: list[dict]) -> dict:
    """The fix's verdict quotes the measured change of the statements it serves: the ones that
    moved significantly and materially, else the (unchanged) ones it was meant for. The
    statement it served most (the most time saved or cost over the calls after) comes first:
    the order the rows arrive in (by total time before) says nothing about the fix."""
    rows = sorted(rows, key=lambda r: (-abs(_time_changed_ms(r)), r["queryid"]))
    moved = [r for r in rows if r["status"] in ("improved", "regressed")]
    if not moved:
        measured = [r for r in rows if r["before"] and r["after"]][:3]
        lines = [_measured(r) for r in measured]
        note = (
            "no reported statement changed significantly"
            if lines
            else "no reported statement it serves ran in both reports: nothing measured"
        )
        return {
            "subject": subject,
            "outcome": "no-change",
            "statements": [r["queryid"] for r in measured],
            "lines": lines,
            "note": note,
            "text": f"{subject}: {note}" + (": " + "; ".join(lines) if lines else ""),
        }
    parts = [_measured(r) for r in moved]
    outcome = "improved" if all(r["status"] == "improved" for r in moved) else "regressed"
    return {
        "subject": subject,
        "outcome": outcome,
        "statements": [r["queryid"] for r in moved],
        "lines": parts,
        "text": f"{subject}: " + "; ".join(parts),
    }


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


def attach_causes(statements: list[dict], before: dict, after: dict) -> None:
    """Each statement that moved gets its ranked causes (queryaudit.history.causes), tested
    against the evidence both reports (or stored audits) carry."""

    context = load_context(before, after)
    for r in statements:
        if r["status"] in ("regressed", "improved"):
            r.update(explain_change(r, before.get("evidence"), after.get("evidence"), context))


def build_comparison(before: dict, after: dict, applied: set[str] | None = None) -> dict:
    """`applied`: ids of the first report's findings whose fix was applied (the demo knows);
    by default, the resolved findings that had a fix stand for them."""
    statements = match_statements(before, after)
    attach_causes(statements, before, after)
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
        verdicts.append(
            {
                **_statement_verdict(subject, _served_by(idx, by_table.get(idx["table"], []))),
                "kind": "index-created",
                "object": name,
            }
        )
    for name in sorted(set(bi) - set(ai)):
        verdicts.append(
            {
                "subject": f"index {name} dropped",
                "outcome": "applied",
                "statements": [],
                "text": f"index {name} dropped ({bi[name].get('bytes', 0) // 1024} kB of index no longer "
                "maintained on writes)",
                "kind": "index-dropped",
                "object": name,
            }
        )
    bs = {s["name"]: s for s in (before.get("catalog") or {}).get("statistics", [])}
    for s in (after.get("catalog") or {}).get("statistics", []):
        if s["name"] not in bs:
            verdicts.append(
                {
                    **_statement_verdict(f"statistics {s['name']} created", by_table.get(s["table"], [])),
                    "kind": "statistics-created",
                    "object": s["name"],
                }
            )

    b_findings = {f["id"]: f for f in before["findings"]}
    a_findings = {f["id"]: f for f in after["findings"]}
    resolved = [f for i, f in b_findings.items() if i not in a_findings]
    new = [f for i, f in a_findings.items() if i not in b_findings]
    persisting = [
        {
            "id": i,
            "check": f["check"],
            "title": f["title"],
            "before_share": (f.get("predicted_saving") or {}).get("share_of_total_time"),
            "after_share": (a_findings[i].get("predicted_saving") or {}).get("share_of_total_time"),
        }
        for i, f in b_findings.items()
        if i in a_findings
    ]
    for f in resolved:
        if not f.get("fix_sql"):
            continue  # nothing was applied for it: listed under resolved findings, no verdict
        created = next(
            (
                v
                for v in verdicts
                if v["kind"] in ("index-created", "statistics-created")
                and re.search(rf"\b{re.escape(v['object'].split('.')[-1])}\b", f["fix_sql"])
            ),
            None,
        )
        if created is not None:  # the verdict of the object its fix created says it already
            created.setdefault("resolves", []).append(f["id"])
            continue
        rows = [by_before_id[q] for q in f.get("queryids", []) if q in by_before_id]
        if rows:
            verdict = _statement_verdict(f"resolved {f['check']} ({f['title']})", rows)
        else:
            verdict = {
                "subject": f"resolved {f['check']}",
                "outcome": "improved",
                "statements": [],
                "text": f"resolved {f['check']}: {f['title']}",
            }
        verdicts.append({**verdict, "kind": "finding-resolved", "object": f["id"]})

    # Applied fixes: given, else the first report's findings with a fix that the second no longer has.
    fixed = (
        [f for f in before["findings"] if f["id"] in applied]
        if applied is not None
        else [f for f in resolved if f.get("fix_sql") or f.get("prediction")]
    )
    predictions = predicted_vs_realized(fixed, by_before_id)

    def side(r: dict) -> dict:
        return {
            "database": r["target"]["database"],
            "server_version_num": r["target"]["server_version_num"],
            "generated_at": r["generated_at"],
            "collected_at": r["window"]["collected_at"],
            "collected_label": when(r["window"]["collected_at"]),
            "statistics_since": r["window"].get("statistics_since"),
            "total_exec_time_ms": r["window"]["total_exec_time_ms"],
            "total_calls": r["window"]["total_calls"],
            "findings": len(r["findings"]),
            "predicted_saving_share": r.get("summary", {}).get("predicted_saving_share"),
        }

    counts = {
        s: sum(1 for r in statements if r["status"] == s) for s in ("improved", "regressed", "unchanged", "new", "gone")
    }
    return {
        "kind": "compare",
        "schema_version": COMPARE_SCHEMA_VERSION,
        "tool": {"name": "queryaudit", "version": __version__},
        "generated_at": dt.datetime.now(dt.UTC).isoformat(),
        "same_database": before["target"]["database"] == after["target"]["database"],
        "before": side(before),
        "after": side(after),
        "verdicts": verdicts,
        "statements": statements,
        "statement_counts": counts,
        "findings": {"resolved": resolved, "new": new, "persisting": persisting},
        "predictions": predictions,
    }
