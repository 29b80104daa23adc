"""The Markdown report, for pull-request comments and tickets (GitHub-flavoured).

User data (query texts, names, evidence) is escaped: inline text has Markdown and HTML
metacharacters escaped, SQL goes in code fences longer than any backtick run it holds.
"""

from __future__ import annotations

import re
from pathlib import Path

from queryaudit.history.causes import cause_summary
from queryaudit.report.html import _bytes, _ms, _num, _one_line, _pct

WORKLOAD_ROWS = 10
FIX_DETAILS = 10
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def text(value) -> str:
    """Inline user text: no Markdown formatting, no HTML, one line."""
    flat = " ".join(str(value if value is not None else "").split())
    flat = flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", flat)


def code(value) -> str:
    """An inline code span that survives backticks, pipes and angle brackets in the value."""
    flat = " ".join(str(value if value is not None else "").split()).replace("|", "\\|")
    longest = max((len(m) for m in re.findall(r"`+", flat)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{fence}{pad}{flat}{pad}{fence}" if flat else ""


def fenced(value: str, lang: str = "sql") -> str:
    longest = max((len(m) for m in re.findall(r"`+", value)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{value.rstrip()}\n{fence}"


def _table(headers: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> list[str]:
    out = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---:" if i in right else "---" for i in range(len(headers))) + "|",
    ]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _before_after(ba: dict | None) -> str | None:
    if not ba:
        return None
    if ba.get("before") is None:
        return f"Verification: {text(ba.get('kind'))}" + (f" ({text(ba['detail'])})" if ba.get("detail") else "")
    reduction = ""
    if ba.get("reduction") is not None:
        reduction = (
            f", **{_pct(ba['reduction'])} less**" if ba["reduction"] >= 0 else f", **{_pct(-ba['reduction'])} more**"
        )
    runs = f", {ba['runs']} runs each" if ba.get("runs") else ""
    extra = f"; {text(ba['extra'])}" if ba.get("extra") else ""
    return (
        f"Before/after ({text(ba['kind'])}, {ba['measure']}{runs}): {ba['before_text']} → {ba['after_text']}"
        f"{reduction}{extra}"
    )


WINDOW_KINDS = {
    "delta": "since the previous audit (differences of the counters)",
    "reset": "since a statistics reset (counting started again)",
    "first": "first audit of this target (everything since the statistics began)",
    "cumulative": "cumulative since the statistics began",
}


def _side(row: dict, which: str, key: str, fmt) -> str:
    return fmt(row[which][key]) if row.get(which) else "–"


def _baseline_rows(rows: list[dict]) -> list[str]:
    table = [
        [
            r["status"],
            _side(r, "before", "mean_exec_time_ms", _ms),
            _side(r, "after", "mean_exec_time_ms", _ms),
            text("; ".join(t for t in (r.get("mean_change_text"), r.get("p95_change_text")) if t) or "–"),
            f"{_side(r, 'before', 'calls', _num)} → {_side(r, 'after', 'calls', _num)}",
            f"{_side(r, 'before', 'total_exec_time_ms', _ms)} → {_side(r, 'after', 'total_exec_time_ms', _ms)}",
            code(_one_line(r["query"], 90)),
        ]
        for r in rows
    ]
    return _table(
        ["status", "mean before", "mean after", "change", "calls", "total time", "statement"], table, {1, 2, 3, 4, 5}
    ) + [""]


def since_last_audit(report: dict) -> list[str]:
    """report["history"] (the stored audit and its window) and report["baseline"] (the comparison
    with the last stored audit of the target), regressions first."""
    h, b = report.get("history"), report.get("baseline")
    if not h and not b:
        return []
    lines = ["## Since the last audit", ""]
    if h:
        w = h["window"]
        lines += [
            f"Recorded as audit #{h['audit_id']} of {code(h['target'])} in {code(h['store'])}. Window "
            f"**{text(w['kind'])}**: {text(WINDOW_KINDS.get(w['kind'], w['kind']))}, "
            f"{text(w.get('start_label') or w.get('start') or '?')} → {text(w.get('end_label') or w['end'])}"
            + (f"; {_num(w['evicted_entries'])} entries evicted" if w.get("evicted_entries") else "")
            + ".",
            "",
        ]
        if w.get("note"):
            lines += [f"> **{'Statistics reset' if w['kind'] == 'reset' else 'Window'}**: {text(w['note'])}", ""]
    if not b:
        return lines
    if not b.get("before"):
        return lines + [text(b.get("note") or "No earlier audit to compare with."), ""]
    before, counts, f = b["before"], b["statement_counts"], b["findings"]
    lines += [
        f"Compared with {text(before['label'])} "
        f"of {text(before.get('collected_label') or before['collected_at'])}"
        f" (its window: {text(before.get('window_kind'))}): database time "
        f"{_ms(before.get('total_exec_time_ms'))} → {_ms(b['after'].get('total_exec_time_ms'))}; "
        f"**{counts.get('regressed', 0)} slower**, {counts.get('improved', 0)} faster, "
        f"{counts.get('new', 0)} new, {counts.get('gone', 0)} gone; findings: **{len(f['new'])} new**, "
        f"{len(f['resolved'])} resolved, {f['persisting']} still open.",
        "",
    ]
    if before.get("window_note"):
        lines += [f"Its window: {text(before['window_note'])}.", ""]
    for status, title in (("regressed", "Slower"), ("improved", "Faster")):
        rows = [r for r in b["statements"] if r["status"] == status]
        if rows:
            lines += [f"### {title} ({len(rows)})", ""] + _baseline_rows(rows)
    for key, title in (("new", "New findings"), ("resolved", "Resolved findings")):
        if f[key]:
            lines += [f"### {title} ({len(f[key])})", ""]
            lines += [
                f"- **{x['severity']}** {code(x['check'])} {text(x['title'])}"
                + (f" ({code(x['object'])})" if x.get("object") else "")
                for x in f[key]
            ] + [""]
    return lines


def _ratio(value) -> str:
    return "" if value is None else f"×{value:.3g}"


def workload_section(report: dict) -> list[str]:
    """Per statement: how closely its analyzed plan reproduced the workload (plan / workload per call)."""
    compared = [(n, q, q["workload_match"]) for n, q in enumerate(report["queries"], 1) if q.get("workload_match")]
    if not compared:
        return []
    rows = [
        [
            str(n),
            code(q["queryid"]),
            m["verdict"] + (" (found by search)" if m.get("first_sample") else ""),
            _ratio(m["rows_ratio"]),
            _ratio(m["blocks_ratio"]),
            _ratio(m["temp_ratio"]),
            _ratio(m["time_ratio"]),
            "yes" if m["spill_agreement"] else "no",
            text(", ".join(str(v) for v in m["parameters"])),
        ]
        for n, q, m in compared
    ]
    lines = [
        "## Plans against the workload",
        "",
        "Each analyzed plan against pg_stat_statements per call (plan / workload): representative within 2x "
        "in rows and blocks, spilling when the workload spills. Time is shown, not judged.",
        "",
    ]
    lines += _table(
        ["#", "queryid", "verdict", "rows", "blocks", "temp", "time", "spill agrees", "values"],
        rows,
        right={0, 3, 4, 5, 6},
    )
    for n, _, m in compared:
        if m.get("search"):
            lines.append(f"- #{n}: {text(m['search'])}")
        elif m["verdict"] == "unlike":
            lines.append(f"- #{n}: unlike the workload: {text('; '.join(m['reasons']))}")
    return lines + [""]


def render(report: dict) -> str:
    if report.get("kind") == "compare":
        return render_compare(report)
    t, w, s = report["target"], report["window"], report["summary"]
    lines = [
        f"# Query audit: {text(t['database'])}",
        "",
        f"PostgreSQL {text(t.get('server_version_short') or t['server_version_num'])}"
        f"{' on ' + text(t['host']) if t.get('host') else ''} · window "
        f"{text(w.get('since_label') or 'since server start')} → {text(w.get('collected_label'))} · "
        f"**{_ms(w['total_exec_time_ms'])}** database time, {_num(w['total_calls'])} calls, "
        f"{_num(w['statement_count'])} statements · **{len(report['findings'])} findings**, "
        f"predicted saving **{_pct(s.get('predicted_saving_share'))}**",
        "",
    ]
    if report["partial"]:
        lines += ["> **Partial report**: some stages failed (see Method).", ""]

    lines += since_last_audit(report)
    lines += ["## Top fixes", ""]
    if s["top_fixes"]:
        rows = [
            [
                str(n),
                f"**{_pct(f['share_of_total_time'])}**",
                f["severity"],
                text(f.get("effort") or ""),
                text(f["title"]),
                code(f["check"]),
            ]
            for n, f in enumerate(s["top_fixes"], 1)
        ]
        lines += _table(["#", "saving", "severity", "effort", "fix", "check"], rows, {0, 1}) + [""]
    else:
        lines += ["No fix saves time in this window." if report["findings"] else "No findings.", ""]
    uncovered = report.get("uncovered") or []
    if uncovered:
        lines += [f"**No fix for {len(uncovered)} top statement{'s' if len(uncovered) != 1 else ''}:**", ""]
        lines += [
            f"- #{u['rank']} ({_pct(u['share_of_total_time'])} of database time) {code(u['short_label'])}: "
            + ("; ".join(text(n["title"]) for n in u["notes"]) or "no finding")
            for u in uncovered
        ] + [""]

    logged = ((report.get("logs") or {}).get("statements") or [])[:WORKLOAD_ROWS]
    if report["queries"] or not logged:
        lines += [
            f"## Workload (top {min(WORKLOAD_ROWS, len(report['queries']))} statements by total time)",
            "",
            f"_{text(report.get('workload_sources') or '')}_",
            "",
        ]
        percentiles = report.get("has_percentiles", True)  # no columns of "–" without a log
        rows = [
            [
                str(n),
                _pct(q["share_of_total_time"]),
                _ms(q["total_exec_time_ms"]),
                _num(q["calls"]),
                _ms(q["mean_exec_time_ms"]),
            ]
            + ([_ms(q.get("p50_ms")), _ms(q.get("p95_ms")), _ms(q.get("p99_ms"))] if percentiles else [])
            + [_pct(q.get("cache_hit_ratio")), code(_one_line(q["query"], 90)) + _twin(q)]
            for n, q in enumerate(report["queries"][:WORKLOAD_ROWS], 1)
        ]
        headers = (
            ["#", "share", "total", "calls", "mean"]
            + (["p50", "p95", "p99"] if percentiles else [])
            + ["cache hit", "statement"]
        )
        lines += _table(headers, rows, set(range(len(headers) - 1))) + [""]
    else:  # a log without pg_stat_statements: the log's own statements
        lines += [
            f"## Workload (top {len(logged)} logged statements by total time)",
            "",
            f"_{text(report.get('workload_sources') or '')}_",
            "",
        ]
        rows = [
            [
                str(n),
                _ms(q["total_ms"]),
                _num(q["count"]),
                _ms(q["p50_ms"]),
                _ms(q["p95_ms"]),
                _ms(q["p99_ms"]),
                _ms(q["max_ms"]),
                code(_one_line(q["query"], 90)),
            ]
            for n, q in enumerate(logged, 1)
        ]
        lines += _table(
            ["#", "total", "count", "p50", "p95", "p99", "max", "statement"], rows, {0, 1, 2, 3, 4, 5, 6}
        ) + [""]

    fixes = [f for f in report["findings"] if f.get("saves_time", True)]
    notes = [f for f in report["findings"] if not f.get("saves_time", True)]
    shown = 0
    for heading, group in (("## Fixes", fixes), ("## Other findings (no time saved in this window)", notes)):
        if group and shown < FIX_DETAILS:
            lines += [heading, ""]
        for f in group:
            if shown >= FIX_DETAILS:
                break
            shown += 1
            lines += _finding(f)
    if len(report["findings"]) > FIX_DETAILS:
        lines += [f"… and {len(report['findings']) - FIX_DETAILS} more findings in the HTML/JSON report.", ""]
    lines += _after_findings(report)
    return "\n".join(lines)


def _twin(q: dict) -> str:
    if not q.get("same_sql_as"):
        return ""
    return f" (same SQL as {', '.join(f'#{k}' for k in q['same_sql_as'])}; this one: {text(q.get('differs_by'))})"


def _finding(f: dict) -> list[str]:
    lines: list[str] = []
    n = f.get("rank", "")
    saving = f.get("predicted_saving") or {}
    lines += [f"### {n}. {text(f['title'])}", ""]
    facts = [
        f"**{f['severity']}**",
        f"check {code(f['check'])}",
        f"effort {text(f['effort'])}",
        f"confidence {text(f['confidence'])}",
    ]
    if saving:
        facts.append(
            f"saving **{_pct(saving.get('share_of_total_time'))}**"
            + (f" ({_ms(saving['total_ms'])})" if saving.get("total_ms") is not None else "")
        )
    if f.get("table"):
        facts.append(f"table {code(f['table'])}")
    if f.get("index"):
        facts.append(f"index {code(f['index'])}")
    if f.get("columns"):
        facts.append(f"columns {code(', '.join(f['columns']))}")
    lines += [" · ".join(facts), ""]
    groups = f.get("statement_groups")
    if groups is None:
        groups = [
            {
                "ranks": [s["rank"]] if s.get("rank") else [],
                "queryids": [s["queryid"]],
                "query": s.get("query"),
                "differs_by": None,
            }
            for s in f.get("statements") or []
        ]
    for g in groups:
        ranks = ", ".join(f"#{k}" for k in g["ranks"])
        lines.append(
            f"- statement{'s' if len(g['queryids']) > 1 else ''} {ranks + ' ' if ranks else ''}"
            f"{', '.join(code(q) for q in g['queryids'])}"
            + (f": {code(_one_line(g['query'], 100))}" if g.get("query") else "")
            + (
                f" ({len(g['queryids'])} entries of one text: {text(g['differs_by'])})"
                if len(g["queryids"]) > 1 and g.get("differs_by")
                else ""
            )
        )
    if groups:
        lines.append("")
    if f.get("advice"):
        lines += [text(f["advice"]), ""]
    if f.get("fix_sql"):
        lines += [fenced(f["fix_sql"]), ""]
    ba = _before_after(f.get("before_after"))
    if ba:
        lines += [ba, ""]
    if f.get("saving_basis"):
        lines += [text(f["saving_basis"]["text"]), ""]
    merged = (f.get("evidence") or {}).get("merged") or []
    if merged:
        lines += ["Merged: " + "; ".join(f"{code(x['id'])} {text(x['title'])}" for x in merged), ""]
    return lines


def _after_findings(report: dict) -> list[str]:
    lines: list[str] = []
    h = report.get("hygiene")
    if h:
        lines += [
            "## Index hygiene",
            "",
            f"{_num(h['index_count'])} indexes ({_bytes(h['index_bytes'])}); reclaimable by dropping: "
            f"**{_bytes(h['reclaimable_bytes'])}**; " + ", ".join(f"{c}: {n}" for c, n in h["by_check"].items()),
            "",
        ]

    lock_ids = report.get("lock_finding_ids") or []
    if lock_ids:
        by_id = {f["id"]: f for f in report["findings"]}
        lines += ["## Locks", ""] + [f"- **{by_id[i]['severity']}** {text(by_id[i]['title'])}" for i in lock_ids] + [""]

    lines += workload_section(report)

    m = report.get("method") or {}
    lines += [
        "## Method",
        "",
        "Predicted saving = the share of the window's total execution time the fix removes (Amdahl). "
        "Findings that name the same index are merged into one fix.",
        "",
    ]
    for e in report["errors"]:
        lines.append(f"- stage **{text(e['stage'])}** failed: {text(e['message'])}")
    for note in m.get("notes", []):
        lines.append(f"- {text(note)}")
    if report.get("plan_coverage"):
        lines.append(f"- plans: {text(report['plan_coverage']['summary'])}")
    for q in report["queries"]:
        if q.get("plan_coverage") in ("generic", "explained"):
            why = q.get("plan_skipped_reason") or q.get("plan_parameter_source") or ""
            lines.append(f"- {q['plan_coverage']} plan for {code(q['queryid'])}: {text(why)}")
    for sk in m.get("plans_skipped", []):
        lines.append(f"- no plan for {code(sk['queryid'])}: {text(sk['reason'])}")
    for r in m.get("rejected", []):
        lines.append(
            f"- the server rejected {'index candidate' if r['kind'] == 'candidate' else 'statement'} "
            f"{code(r['sql'])}: {text(r['error'])}"
        )
    if m.get("checks"):
        lines.append("- checks run: " + ", ".join(code(c["id"]) for c in m["checks"]))
    lines += ["", f"<sub>queryaudit {text(report['tool']['version'])}, {text(report['generated_at'])}</sub>", ""]
    return lines


def _predictions_and_causes(c: dict) -> list[str]:
    """Predicted against realized per applied fix, and why each moved statement moved (history/)."""

    lines = []
    if c.get("predictions"):
        rows = [
            [
                code(p["fix_kind"]),
                code(_one_line(p["query"] or "-", 60)),
                f"{_ms(p['mean_before_ms'])} → {_ms(p['mean_after_ms'])}",
                _ms(p["predicted_saving_ms"]),
                _ms(p["realized_saving_ms"]),
                text(f"not measured: {p['note']}")
                if p.get("note")
                else (f"{p['error_factor']}x" if p["error_factor"] else text(p.get("error_note") or ""))
                + (" **off by more than 2x**" if p["off_by_more_than_2x"] else ""),
            ]
            for p in c["predictions"]
        ]
        lines += ["## Predicted against realized", ""]
        lines += _table(
            ["fix", "statement", "mean before → after", "predicted saving/call", "realized saving/call", "error"],
            rows,
            {3, 4},
        ) + [""]
    moved = [s for s in c["statements"] if s["status"] in ("regressed", "improved") and "causes" in s]
    if moved:
        lines += ["## Why statements moved", ""]
        for s in moved:
            why = ", ".join(cause_summary(x) for x in s["causes"]) or f"no cause found: {s.get('reason')}"
            lines.append(f"- {s['status']}: {code(_one_line(s['query'], 70))}: {text(why)}")
        lines.append("")
    return lines


def render_compare(c: dict) -> str:
    b, a = c["before"], c["after"]
    lines = [
        f"# Before/after: {text(a['database'])}",
        "",
        f"Before: {text(b.get('collected_label') or b['collected_at'])} ({_ms(b['total_exec_time_ms'])}, "
        f"{_num(b['total_calls'])} calls, {b['findings']} findings) · "
        f"After: {text(a.get('collected_label') or a['collected_at'])} ({_ms(a['total_exec_time_ms'])}, "
        f"{_num(a['total_calls'])} calls, {a['findings']} findings)",
        "",
    ]
    if not c.get("same_database", True):
        lines += ["> **Warning**: the two reports are of different databases.", ""]
    lines += ["## Verdicts", ""]
    lines += [
        f"- {'✅' if v['outcome'] == 'improved' else '⚠️' if v['outcome'] == 'regressed' else '➖'} {text(v['text'])}"
        for v in c["verdicts"]
    ] or ["No fix applied between the two reports."]
    lines += [
        f"- ✋ not applied: {code(k['check'])} {text(k['title'])}: needs a manual step: {text(k['manual_step'])}"
        for k in c.get("skipped_fixes") or []
    ]
    lines += [""]
    lines += _predictions_and_causes(c)
    lines += [
        "## Findings",
        "",
        f"Resolved: **{len(c['findings']['resolved'])}**, new: **{len(c['findings']['new'])}**, "
        f"still open: {len(c['findings']['persisting'])}",
        "",
    ]
    for f in c["findings"]["resolved"]:
        lines.append(f"- resolved: {code(f['check'])} {text(f['title'])}")
    for f in c["findings"]["new"]:
        lines.append(f"- **new**: {code(f['check'])} {text(f['title'])}")
    lines += ["", "## Statements", ""]
    rows = [
        [
            s["status"],
            _ms(s["before"]["mean_exec_time_ms"] if s["before"] else None),
            _ms(s["after"]["mean_exec_time_ms"] if s["after"] else None),
            text("; ".join(t for t in (s.get("mean_change_text"), s.get("p95_change_text")) if t)),
            _num(s["before"]["calls"] if s["before"] else None),
            _num(s["after"]["calls"] if s["after"] else None),
            _ms(s["before"]["total_exec_time_ms"] if s["before"] else None),
            _ms(s["after"]["total_exec_time_ms"] if s["after"] else None),
            code(_one_line(s["query"], 80))
            + (f" (queryid {code(s['queryid'])}: {text(s['differs_by'])})" if s.get("differs_by") else ""),
        ]
        for s in c["statements"]
    ]
    lines += _table(
        [
            "status",
            "mean before",
            "mean after",
            "change",
            "calls before",
            "calls after",
            "total before",
            "total after",
            "statement",
        ],
        rows,
        {1, 2, 3, 4, 5, 6, 7},
    ) + [""]
    lines += [f"<sub>queryaudit {text(c['tool']['version'])}, {text(c['generated_at'])}</sub>", ""]
    return "\n".join(lines)


def write(report: dict, path: str | Path) -> None:
    Path(path).write_text(render(report), encoding="utf-8")
