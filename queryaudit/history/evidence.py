"""What explains a change, kept with every stored audit: plans, catalog state and settings.

Built from the snapshot alone (pure), small enough to store hourly:
- per top statement that has a captured plan: its shape (node types, relations, indexes,
  join order) as a fingerprint, the root's estimated rows and cost, the estimate of each
  scan, and the plan as indented text (the plain EXPLAIN plan capture ran with its
  representative values when ANALYZE is off: `--explain-budget 0`);
- the tables those statements use: reltuples, relpages, size, last analyze / autoanalyze,
  their indexes (validity, size, definition) and the n_distinct and correlation of the
  columns their plans filter on;
- the settings that shape plans (work_mem, hash_mem_multiplier, random_page_cost,
  effective_cache_size, jit, enable_*...) and the per-role / per-database overrides.
Costs and estimates only: nothing here is a time, so two audits of one workload agree.
"""

from __future__ import annotations

import hashlib
import re

EVIDENCE_VERSION = 1
PLAN_SETTINGS = (
    "work_mem",
    "hash_mem_multiplier",
    "random_page_cost",
    "seq_page_cost",
    "effective_cache_size",
    "effective_io_concurrency",
    "jit",
    "jit_above_cost",
    "default_statistics_target",
    "max_parallel_workers_per_gather",
    "plan_cache_mode",
    "shared_buffers",
)
PLAN_TEXT_LINES = 40  # a stored plan is kept short: the shape matters, not every detail
_IDENT = re.compile(r"\b([a-z_][a-z0-9_]*)\s*(?:=|<|>|<=|>=|<>|~~|IS|IN|ANY)", re.I)


def plan_settings(server) -> dict[str, str]:
    return {k: v for k, v in sorted(server.settings.items()) if k in PLAN_SETTINGS or k.startswith("enable_")}


def _node_shape(raw: dict) -> str:
    """One node as the fingerprint sees it: no estimates, no costs, no aliases."""
    parts = [raw.get("Node Type", "?")]
    for key in ("Strategy", "Join Type", "Operation", "Relation Name", "Index Name", "Parent Relationship"):
        if raw.get(key):
            parts.append(f"{key}={raw[key]}")
    return ";".join(parts)


def _walk(raw: dict, depth: int = 0):
    yield raw, depth
    for child in raw.get("Plans") or []:
        if isinstance(child, dict):
            yield from _walk(child, depth + 1)


def _label(raw: dict) -> str:
    text = raw.get("Node Type", "?")
    if raw.get("Strategy") in ("Hashed", "Sorted", "Mixed") and text == "Aggregate":
        text = {"Hashed": "HashAggregate", "Sorted": "GroupAggregate", "Mixed": "MixedAggregate"}[raw["Strategy"]]
    if raw.get("Join Type") and "Join" in text or text == "Nested Loop":
        text = f"{text} ({raw.get('Join Type', 'Inner')})"
    if raw.get("Index Name"):
        text += f" using {raw['Index Name']}"
    if raw.get("Relation Name"):
        text += f" on {raw.get('Schema') + '.' if raw.get('Schema') else ''}{raw['Relation Name']}"
    return text


def plan_shape(explain: dict | list) -> dict | None:
    """The shape of one EXPLAIN (FORMAT JSON) result, or None when it holds no plan."""
    if isinstance(explain, list) and explain:
        explain = explain[0]
    root = explain.get("Plan") if isinstance(explain, dict) else None
    if not isinstance(root, dict):
        return None
    nodes = list(_walk(root))
    shape = "\n".join(f"{depth}:{_node_shape(raw)}" for raw, depth in nodes)
    relations, indexes, scans, lines, filtered = [], [], [], [], []
    for raw, depth in nodes:
        if raw.get("Relation Name"):
            name = f"{raw['Schema']}.{raw['Relation Name']}" if raw.get("Schema") else raw["Relation Name"]
            relations.append(name)  # in plan order: the join order
            scans.append(
                {
                    "node": _label(raw),
                    "relation": name,
                    "index": raw.get("Index Name"),
                    "estimated_rows": raw.get("Plan Rows"),
                }
            )
            for key in ("Filter", "Index Cond", "Recheck Cond"):
                for column in _IDENT.findall(raw.get(key) or ""):
                    if (name, column) not in filtered:
                        filtered.append((name, column))
        if raw.get("Index Name") and raw["Index Name"] not in indexes:
            indexes.append(raw["Index Name"])
        if len(lines) < PLAN_TEXT_LINES:
            lines.append(
                f"{'  ' * depth}{'-> ' if depth else ''}{_label(raw)}  "
                f"(cost={raw.get('Total Cost', 0):.2f} rows={raw.get('Plan Rows', 0):.0f})"
            )
    return {
        "fingerprint": hashlib.sha1(shape.encode()).hexdigest()[:16],
        "nodes": [_label(raw) for raw, _ in nodes],
        "relations": relations,
        "indexes": indexes,
        "join_order": [s["relation"] for s in scans],
        "scans": scans,
        "estimated_rows": root.get("Plan Rows"),
        "total_cost": root.get("Total Cost"),
        "filtered_columns": [list(f) for f in filtered],
        "text": "\n".join(lines),
    }


def _matches(name: str, qualified: str) -> bool:
    return name == qualified or qualified.endswith("." + name)


def evidence_from_snapshot(snapshot) -> dict:
    """The evidence of one audit (a plain JSON dict, stored as is)."""
    statements: dict[str, dict] = {}
    for capture in snapshot.plans:
        shape = plan_shape(capture.plan) if capture.plan else None
        if shape is None:
            continue
        shape["method"] = capture.method
        statements[capture.queryid] = shape
    used = {r for s in statements.values() for r in s["relations"]}
    filtered = {tuple(f) for s in statements.values() for f in s["filtered_columns"]}
    tables: dict[str, dict] = {}
    for table in snapshot.tables:
        qualified = f"{table.schema}.{table.name}"
        if not any(_matches(r, qualified) for r in used):
            continue
        columns = {}
        for stats in snapshot.column_stats:
            if stats.table == qualified and any(_matches(r, qualified) and c == stats.column for r, c in filtered):
                columns[stats.column] = {"n_distinct": stats.n_distinct, "correlation": stats.correlation}
        tables[qualified] = {
            "reltuples": table.reltuples,
            "relpages": table.relpages,
            "total_bytes": table.total_bytes,
            "last_analyze": table.last_analyze,
            "last_autoanalyze": table.last_autoanalyze,
            "n_mod_since_analyze": table.n_mod_since_analyze,
            "columns": columns,
            "indexes": {
                f"{i.schema}.{i.name}": {
                    "valid": i.is_valid and i.is_ready,
                    "bytes": i.bytes,
                    "definition": i.definition,
                }
                for i in snapshot.indexes
                if i.table == qualified
            },
        }
    return {
        "version": EVIDENCE_VERSION,
        "collected_at": snapshot.collected_at,
        "settings": plan_settings(snapshot.server),
        "role_settings": snapshot.server.role_settings,
        "statements": statements,
        "tables": tables,
        "lock_waits": lock_waits(snapshot),
    }


def lock_waits(snapshot) -> dict[str, dict]:
    """Lock wait time per queryid, sampled (--sample-locks) or from log_lock_waits."""
    out: dict[str, dict] = {}
    for facts in (snapshot.lock_samples, snapshot.lock_log):
        if facts is None:
            continue
        for wait in facts.waits:
            statement = facts.statement(wait.waiting)
            if statement is None or not statement.queryid:
                continue
            entry = out.setdefault(
                statement.queryid, {"wait_ms": 0.0, "samples": 0, "relations": [], "source": facts.source}
            )
            entry["wait_ms"] += wait.wait_ms
            entry["samples"] += wait.samples
            if wait.relation and wait.relation not in entry["relations"]:
                entry["relations"].append(wait.relation)
    return out


def effective_overrides(evidence: dict) -> dict[str, str]:
    """Overrides from pg_db_role_setting as "name@role/database" -> value, for comparison."""
    out = {}
    for row in evidence.get("role_settings") or []:
        scope = f"{row.get('role') or 'all roles'}/{row.get('database') or 'all databases'}"
        for item in row.get("settings") or []:
            name, _, value = item.partition("=")
            out[f"{name}@{scope}"] = value
    return out
