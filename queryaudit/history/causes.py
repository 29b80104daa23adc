"""Why a statement's mean time moved between two audits: candidate causes tested against
the evidence both audits stored (evidence.py) and their window numbers. Pure.

Each cause is {kind, explained_share, evidence}; explained_share (0..1) estimates how much
of the change in mean time the cause accounts for, from ratios the evidence holds (never
from a time measured twice), and causes are ranked by it:
- plan-changed: the plan's shape (fingerprint) differs; share: the planner's own cost
  ratio of the two plans applied to the mean before, against the change (capped at 1).
  The index or statistics change that made the plan change carries the same share.
- index-dropped / index-invalid: an index the plan before used is gone / no longer valid;
  index-created: the plan after uses an index the audit before did not have.
- statistics-changed: the tables of a changed plan were analyzed in between; the estimate
  that moved and the n_distinct / correlation that changed. Statistics act on time only
  through the plan: with the same plan this cause is not claimed.
- data-growth: a table the plan reads grew (reltuples) by GROWTH_FACTOR or more; share:
  time growing linearly with it. Rows per call quoted beside.
- cache-misses: the share of blocks read from outside shared buffers rose by CACHE_DROP
  or more; share: that rise.
- setting-changed: a plan-shaping setting differs (the server's value or a per-role /
  per-database override); work_mem and hash_mem_multiplier count when the statement
  started to spill (temp blocks per call), the others when the plan changed.
- lock-waits: the statement waited on locks in the window after (sampled or logged) for
  a share of its time.
- load: the whole workload's call rate rose by LOAD_FACTOR or more; share on a log scale.
"""

from __future__ import annotations

import datetime as dt
import math

from queryaudit.history.evidence import effective_overrides

GROWTH_FACTOR = 1.5
CACHE_DROP = 0.2
LOAD_FACTOR = 2.0
SPILL_SETTINGS = ("work_mem", "hash_mem_multiplier")
KINDS = (
    "plan-changed",
    "index-dropped",
    "index-created",
    "index-invalid",
    "statistics-changed",
    "data-growth",
    "cache-misses",
    "lock-waits",
    "setting-changed",
    "load",
)


def _cause(kind: str, share: float, evidence: dict) -> dict:
    return {"kind": kind, "explained_share": round(max(0.0, min(1.0, share)), 3), "evidence": evidence}


def _per_call(stats: dict, key: str) -> float | None:
    if stats.get(key) is None or not stats.get("calls"):
        return None
    return stats[key] / stats["calls"]


def _linear_share(mean_before: float, mean_after: float, factor: float) -> float:
    """The share of the change a factor on the time before accounts for."""
    change = mean_after - mean_before
    if change == 0:
        return 0.0
    return (mean_before * (factor - 1.0)) / change


def _tables_of(shape: dict | None) -> list[str]:
    return list(dict.fromkeys((shape or {}).get("relations", [])))


def _table(evidence: dict, name: str) -> tuple[str, dict] | None:
    for qualified, table in (evidence.get("tables") or {}).items():
        if qualified == name or qualified.endswith("." + name):
            return qualified, table
    return None


def _seconds(start: str | None, end: str | None) -> float | None:
    try:
        return (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()
    except (TypeError, ValueError):
        return None


def explain_change(row: dict, before_ev: dict | None, after_ev: dict | None, context: dict | None = None) -> dict:
    """{causes: [...], reason} for one compared statement (a row of compare.match_statements)."""
    if not before_ev or not after_ev:
        side = "earlier" if not before_ev else "later"
        return {
            "causes": [],
            "reason": f"the {side} audit stored no evidence (plans, catalog, settings): "
            "recorded before this queryaudit kept it, or from a report without it",
        }
    b, a = row["before"], row["after"]
    mb, ma = b["mean_exec_time_ms"], a["mean_exec_time_ms"]
    shape_b = before_ev.get("statements", {}).get(row["queryid"])
    shape_a = after_ev.get("statements", {}).get(row.get("after_queryid") or row["queryid"])
    causes: list[dict] = []
    plan_share = 0.0
    plan_changed = bool(shape_b and shape_a and shape_b["fingerprint"] != shape_a["fingerprint"])
    if plan_changed:
        cost_b, cost_a = shape_b.get("total_cost") or 0.0, shape_a.get("total_cost") or 0.0
        plan_share = _linear_share(mb, ma, cost_a / cost_b) if cost_b > 0 else 1.0
        if cost_b > 0 and (cost_a > cost_b) != (ma > mb):
            plan_share = 0.5  # the planner expected the opposite: it chose on a wrong estimate
        gone = [n for n in shape_b["nodes"] if n not in shape_a["nodes"]]
        new = [n for n in shape_a["nodes"] if n not in shape_b["nodes"]]
        causes.append(
            _cause(
                "plan-changed",
                plan_share,
                {
                    "before_plan": shape_b["text"],
                    "after_plan": shape_a["text"],
                    "before_fingerprint": shape_b["fingerprint"],
                    "after_fingerprint": shape_a["fingerprint"],
                    "nodes_gone": gone,
                    "nodes_new": new,
                    "estimated_cost_before": cost_b,
                    "estimated_cost_after": cost_a,
                    "estimated_rows_before": shape_b.get("estimated_rows"),
                    "estimated_rows_after": shape_a.get("estimated_rows"),
                },
            )
        )
    # Plans name a relation bare (no VERBOSE), the report qualified: one entry per table.
    tables = list(
        dict.fromkeys(
            (_table(after_ev, n) or _table(before_ev, n) or (n,))[0]
            for n in _tables_of(shape_b) + _tables_of(shape_a) + list(row.get("tables") or [])
        )
    )
    causes += _index_causes(shape_b, shape_a, before_ev, after_ev, tables, plan_changed, plan_share)
    if plan_changed:
        causes += _statistics_causes(shape_b, shape_a, before_ev, after_ev, tables, plan_share)
    causes += _growth_causes(shape_a or shape_b, before_ev, after_ev, b, a, mb, ma)
    causes += _cache_causes(b, a)
    causes += _setting_causes(before_ev, after_ev, b, a, plan_changed, plan_share)
    causes += _lock_causes(after_ev, row, mb, ma)
    causes += _load_causes(context or {}, mb, ma)
    causes = [c for c in causes if c["explained_share"] > 0]
    causes.sort(key=lambda c: (-c["explained_share"], KINDS.index(c["kind"])))
    if causes:
        return {"causes": causes, "reason": None}
    if not (shape_b and shape_a):
        reason = "no plan stored for this statement on both sides (run the audits with --explain)"
    else:
        reason = (
            "same plan, same catalog state and settings, no table growth, cache misses, lock waits or load "
            "change in the evidence: the cause is outside what queryaudit stores"
        )
    return {"causes": [], "reason": reason}


def _index_causes(shape_b, shape_a, before_ev, after_ev, tables, plan_changed, plan_share) -> list[dict]:
    out = []
    used_before = set((shape_b or {}).get("indexes", []))
    used_after = set((shape_a or {}).get("indexes", []))
    share = plan_share if plan_changed else 0.0
    for name in tables:
        tb, ta = _table(before_ev, name), _table(after_ev, name)
        if not tb or not ta:
            continue
        ib, ia = tb[1].get("indexes", {}), ta[1].get("indexes", {})
        for index, info in ib.items():
            bare = index.split(".")[-1]
            if bare not in used_before:
                continue
            if index not in ia:
                out.append(
                    _cause(
                        "index-dropped", share, {"index": index, "table": tb[0], "definition": info.get("definition")}
                    )
                )
            elif info.get("valid") and not ia[index].get("valid"):
                out.append(_cause("index-invalid", share, {"index": index, "table": tb[0]}))
        for index, info in ia.items():
            if index not in ib and index.split(".")[-1] in used_after:
                out.append(
                    _cause(
                        "index-created", share, {"index": index, "table": ta[0], "definition": info.get("definition")}
                    )
                )
    return out


def _statistics_causes(shape_b, shape_a, before_ev, after_ev, tables, plan_share) -> list[dict]:
    out = []
    scans_b = {s["relation"]: s for s in shape_b.get("scans", [])}
    scans_a = {s["relation"]: s for s in shape_a.get("scans", [])}
    for name in tables:
        tb, ta = _table(before_ev, name), _table(after_ev, name)
        if not tb or not ta:
            continue
        before, after = tb[1], ta[1]
        analyzed = [k for k in ("last_analyze", "last_autoanalyze") if after.get(k) and after.get(k) != before.get(k)]
        if not analyzed:
            continue
        columns = {
            c: {"before": before.get("columns", {}).get(c), "after": v}
            for c, v in (after.get("columns") or {}).items()
            if before.get("columns", {}).get(c) != v
        }
        bare = ta[0].split(".")[-1]
        sb, sa = scans_b.get(ta[0]) or scans_b.get(bare), scans_a.get(ta[0]) or scans_a.get(bare)
        out.append(
            _cause(
                "statistics-changed",
                plan_share,
                {
                    "table": ta[0],
                    "analyzed": {k: [before.get(k), after.get(k)] for k in analyzed},
                    "estimate_before": {"node": sb["node"], "estimated_rows": sb["estimated_rows"]} if sb else None,
                    "estimate_after": {"node": sa["node"], "estimated_rows": sa["estimated_rows"]} if sa else None,
                    "columns": columns,
                    "reltuples": [before.get("reltuples"), after.get("reltuples")],
                },
            )
        )
    return out


def _growth_causes(shape, before_ev, after_ev, b, a, mb, ma) -> list[dict]:
    best = None
    for name in _tables_of(shape):
        tb, ta = _table(before_ev, name), _table(after_ev, name)
        if not tb or not ta or not tb[1].get("reltuples") or tb[1]["reltuples"] <= 0:
            continue
        factor = (ta[1].get("reltuples") or 0) / tb[1]["reltuples"]
        if factor >= GROWTH_FACTOR and (best is None or factor > best[0]):
            best = (factor, ta[0], tb[1], ta[1])
    if best is None or ma <= mb:
        return []
    factor, table, before, after = best
    return [
        _cause(
            "data-growth",
            _linear_share(mb, ma, factor),
            {
                "table": table,
                "growth_factor": round(factor, 2),
                "reltuples": [before["reltuples"], after["reltuples"]],
                "relpages": [before.get("relpages"), after.get("relpages")],
                "total_bytes": [before.get("total_bytes"), after.get("total_bytes")],
                "rows_per_call": [_per_call(b, "rows"), _per_call(a, "rows")],
            },
        )
    ]


def _read_share(stats: dict) -> float | None:
    hit, read = stats.get("shared_blks_hit"), stats.get("shared_blks_read")
    if hit is None or read is None or hit + read <= 0:
        ratio = stats.get("cache_hit_ratio")
        return None if ratio is None else 1.0 - ratio
    return read / (hit + read)


def _cache_causes(b: dict, a: dict) -> list[dict]:
    rb, ra = _read_share(b), _read_share(a)
    if rb is None or ra is None or ra - rb < CACHE_DROP:
        return []
    return [
        _cause(
            "cache-misses",
            ra - rb,
            {
                "blocks_read_share": [round(rb, 4), round(ra, 4)],
                "shared_blks_read_per_call": [_per_call(b, "shared_blks_read"), _per_call(a, "shared_blks_read")],
            },
        )
    ]


def _setting_causes(before_ev, after_ev, b, a, plan_changed, plan_share) -> list[dict]:
    changed: dict[str, list[dict]] = {}
    sb, sa = before_ev.get("settings") or {}, after_ev.get("settings") or {}
    for name in sorted(set(sb) | set(sa)):
        if sb.get(name) != sa.get(name):
            changed.setdefault(name, []).append({"scope": "server", "before": sb.get(name), "after": sa.get(name)})
    ob, oa = effective_overrides(before_ev), effective_overrides(after_ev)
    for key in sorted(set(ob) | set(oa)):
        if ob.get(key) != oa.get(key):
            name, _, scope = key.partition("@")
            changed.setdefault(name, []).append({"scope": scope, "before": ob.get(key), "after": oa.get(key)})
    temp_b, temp_a = _per_call(b, "temp_blks_written") or 0.0, _per_call(a, "temp_blks_written") or 0.0
    spilled = temp_a > 0 and temp_a > 2 * temp_b
    out = []
    for name, scopes in changed.items():
        if name in SPILL_SETTINGS and spilled:
            out.append(
                _cause(
                    "setting-changed",
                    1.0 if temp_b == 0 else 1.0 - temp_b / temp_a,
                    {"setting": name, "changes": scopes, "temp_blks_written_per_call": [temp_b, temp_a]},
                )
            )
        elif name not in SPILL_SETTINGS and plan_changed:
            out.append(_cause("setting-changed", plan_share, {"setting": name, "changes": scopes}))
    return out


def _lock_causes(after_ev: dict, row: dict, mb: float, ma: float) -> list[dict]:
    waits = (after_ev.get("lock_waits") or {}).get(row.get("after_queryid") or row["queryid"])
    calls = (row["after"] or {}).get("calls") or 0
    if not waits or not calls or ma <= mb:
        return []
    per_call = waits["wait_ms"] / calls
    return [_cause("lock-waits", per_call / (ma - mb), {**waits, "wait_ms_per_call": round(per_call, 3)})]


def _load_causes(context: dict, mb: float, ma: float) -> list[dict]:
    rate_b, rate_a = context.get("calls_per_s_before"), context.get("calls_per_s_after")
    if not rate_b or not rate_a or rate_a < LOAD_FACTOR * rate_b or ma <= mb or mb <= 0:
        return []
    return [
        _cause(
            "load",
            math.log(rate_a / rate_b) / math.log(ma / mb) / 2,
            {"calls_per_s": [round(rate_b, 2), round(rate_a, 2)]},
        )
    ]


def load_context(before: dict, after: dict) -> dict:
    """The whole workload's call rate on each side (report window or store window)."""
    out = {}
    for key, side in (("before", before), ("after", after)):
        window = side.get("window") or {}
        seconds = _seconds(window.get("window_start") or window.get("statistics_since"), window.get("collected_at"))
        if seconds and seconds > 0 and window.get("total_calls"):
            out[f"calls_per_s_{key}"] = window["total_calls"] / seconds
    return out


def cause_summary(cause: dict) -> str:
    """One cause in a few words: its kind, what it names, and its share."""
    e = cause["evidence"]
    named = {
        "index-dropped": e.get("index"),
        "index-created": e.get("index"),
        "index-invalid": e.get("index"),
        "statistics-changed": e.get("table"),
        "setting-changed": e.get("setting"),
        "data-growth": f"{e.get('table')} x{e.get('growth_factor')}" if e.get("table") else None,
        "plan-changed": " / ".join(f"-{n}" for n in e.get("nodes_gone", [])[:2])
        + (" " if e.get("nodes_gone") else "")
        + " / ".join(f"+{n}" for n in e.get("nodes_new", [])[:2])
        if cause["kind"] == "plan-changed"
        else None,
    }.get(cause["kind"])
    return f"{cause['kind']}{' ' + named if named else ''} ({cause['explained_share']:.0%})"
