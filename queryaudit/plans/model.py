"""The plan tree: one PlanNode per node of EXPLAIN (FORMAT JSON), with the numbers
checks reason about (inclusive and exclusive time, q-error, buffers, temp I/O,
conditions) computed once, the same way for every source of plans.

Works on the top object of EXPLAIN (FORMAT JSON) (`{"Plan": {...}, "Execution Time": ...}`)
whether it came from the server or from a text plan parsed into the same structure.

Time accounting (what pev2 and explain.depesz.com do, stated here once):
- "Actual Total Time" is per loop, so a node's inclusive time is total time x loops.
- Below a Gather / Gather Merge every process (workers + the leader) runs its own
  copy of the node and loops counts all of them: the wall-clock time is the per
  process time, so the product is divided by the number of processes.
- A node's exclusive time is its inclusive time minus its children's. The plan of a
  CTE (an InitPlan named "CTE x") runs lazily inside the CTE Scans that read it, so
  its time is taken off those CTE Scans and not off the node that holds it.
- Never-executed nodes (loops = 0) have no time and no q-error.
PostgreSQL 18 prints actual rows with two decimals (per-loop averages such as 0.25);
they are read as floats everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from pglast import ast, parse_sql

from queryaudit.sql import find_nodes

# Field names that moved between versions, in one place.
CONDITION_FIELDS = (
    "Index Cond",
    "Recheck Cond",
    "Filter",
    "Join Filter",
    "Hash Cond",
    "Merge Cond",
    "TID Cond",
    "One-Time Filter",
)
BUFFER_FIELDS = {
    "shared_hit": "Shared Hit Blocks",
    "shared_read": "Shared Read Blocks",
    "shared_dirtied": "Shared Dirtied Blocks",
    "shared_written": "Shared Written Blocks",
    "local_hit": "Local Hit Blocks",
    "local_read": "Local Read Blocks",
    "temp_read": "Temp Read Blocks",
    "temp_written": "Temp Written Blocks",
}
SCAN_TYPES = (
    "Seq Scan",
    "Index Scan",
    "Index Only Scan",
    "Bitmap Heap Scan",
    "Bitmap Index Scan",
    "Tid Scan",
    "Tid Range Scan",
    "Sample Scan",
)
PARALLEL_ROOTS = ("Gather", "Gather Merge")


@dataclass
class PlanNode:
    raw: dict
    path: str  # "0" for the root, "0.1.0" for the first child of its second child
    depth: int
    parent: PlanNode | None = None
    children: list[PlanNode] = field(default_factory=list)
    parallel_processes: int = 1  # processes running this node (workers + leader below a Gather)
    inclusive_ms: float | None = None
    exclusive_ms: float | None = None

    # -- what the node is ---------------------------------------------------------
    @property
    def node_type(self) -> str:
        return self.raw.get("Node Type", "?")

    @property
    def label(self) -> str:
        """What a DBA reads: "Seq Scan on public.orders o", "Index Scan using x on orders"."""
        text = self.node_type
        if self.node_type == "ModifyTable" and self.raw.get("Operation"):
            text = self.raw["Operation"]
        if self.raw.get("Parallel Aware") and not text.startswith("Parallel"):
            text = f"Parallel {text}"
        if self.raw.get("Strategy") in ("Hashed", "Sorted", "Mixed") and self.node_type == "Aggregate":
            text = {"Hashed": "HashAggregate", "Sorted": "GroupAggregate", "Mixed": "MixedAggregate"}[
                self.raw["Strategy"]
            ]
        if self.index_name and self.node_type != "Bitmap Index Scan":
            text += f" using {self.index_name}"
        elif self.index_name:
            text += f" on {self.index_name}"
        if self.relation:
            text += f" on {self.relation}"
            if self.alias and self.alias != self.raw.get("Relation Name"):
                text += f" {self.alias}"
        elif self.raw.get("CTE Name"):
            text += f" on {self.raw['CTE Name']}"
        return text

    @property
    def relation(self) -> str | None:
        """Schema-qualified when VERBOSE printed the schema; else the bare name."""
        name = self.raw.get("Relation Name")
        if not name:
            return None
        schema = self.raw.get("Schema")
        return f"{schema}.{name}" if schema else name

    @property
    def alias(self) -> str | None:
        return self.raw.get("Alias")

    @property
    def index_name(self) -> str | None:
        return self.raw.get("Index Name")

    @property
    def parent_relationship(self) -> str | None:
        return self.raw.get("Parent Relationship")

    @property
    def subplan_name(self) -> str | None:
        return self.raw.get("Subplan Name")

    @property
    def is_cte_plan(self) -> bool:
        return (self.subplan_name or "").startswith("CTE ")

    # -- rows ---------------------------------------------------------------------
    @property
    def estimated_rows(self) -> float:
        """Per loop, as the planner prints it."""
        return float(self.raw.get("Plan Rows") or 0)

    @property
    def actual_rows(self) -> float | None:
        """Per loop (an average: fractional on 18), None without ANALYZE."""
        value = self.raw.get("Actual Rows")
        return float(value) if value is not None else None

    @property
    def loops(self) -> float | None:
        value = self.raw.get("Actual Loops")
        return float(value) if value is not None else None

    @property
    def analyzed(self) -> bool:
        return "Actual Loops" in self.raw or "Actual Rows" in self.raw

    @property
    def never_executed(self) -> bool:
        return self.analyzed and not self.loops

    @property
    def total_actual_rows(self) -> float | None:
        """Rows over all loops: what the node produced in the whole execution."""
        if self.actual_rows is None or self.loops is None:
            return None
        return self.actual_rows * self.loops

    @property
    def q_error(self) -> float | None:
        """max(est/act, act/est) with both clamped to >= 1 (a 0-row actual counts as 1).

        On 18 a per-loop average below one (0.25) is a real count spread over loops;
        clamping keeps 1 row estimated against 0.25 actual at q-error 1, as the planner
        itself never estimates below one row."""
        if self.actual_rows is None or self.never_executed:
            return None
        est = max(1.0, self.estimated_rows)
        act = max(1.0, self.actual_rows)
        return max(est / act, act / est)

    @property
    def underestimated(self) -> bool:
        return self.actual_rows is not None and max(1.0, self.actual_rows) > max(1.0, self.estimated_rows)

    @property
    def rows_removed_by_filter(self) -> float:
        """Over all loops (EXPLAIN prints the per-loop average)."""
        return float(self.raw.get("Rows Removed by Filter") or 0) * (self.loops or 1)

    @property
    def rows_removed_by_index_recheck(self) -> float:
        return float(self.raw.get("Rows Removed by Index Recheck") or 0) * (self.loops or 1)

    @property
    def rows_removed_by_join_filter(self) -> float:
        return float(self.raw.get("Rows Removed by Join Filter") or 0) * (self.loops or 1)

    # -- cost, buffers, I/O -------------------------------------------------------
    @property
    def total_cost(self) -> float:
        return float(self.raw.get("Total Cost") or 0)

    @property
    def startup_cost(self) -> float:
        return float(self.raw.get("Startup Cost") or 0)

    @property
    def buffers(self) -> dict[str, int]:
        """Inclusive of the children (as EXPLAIN prints them)."""
        return {k: int(self.raw.get(v) or 0) for k, v in BUFFER_FIELDS.items()}

    @property
    def exclusive_buffers(self) -> dict[str, int]:
        own = self.buffers
        for child in self.children:
            if child.is_cte_plan:
                continue
            for k, v in child.buffers.items():
                own[k] -= v
        return {k: max(0, v) for k, v in own.items()}

    @property
    def temp_blocks(self) -> int:
        return int(self.raw.get("Temp Read Blocks") or 0) + int(self.raw.get("Temp Written Blocks") or 0)

    # -- conditions ---------------------------------------------------------------
    @property
    def conditions(self) -> dict[str, str]:
        return {name: self.raw[name] for name in CONDITION_FIELDS if self.raw.get(name)}

    def condition_columns(self) -> list[tuple[str | None, str]]:
        """(qualifier or None, column) referenced by the node's own conditions, in order."""
        out: list[tuple[str | None, str]] = []
        for text in self.conditions.values():
            for ref in condition_columns(text):
                if ref not in out:
                    out.append(ref)
        return out

    # -- walking ------------------------------------------------------------------
    def walk(self) -> Iterator[PlanNode]:
        yield self
        for child in self.children:
            yield from child.walk()

    def ancestors(self) -> Iterator[PlanNode]:
        node = self.parent
        while node is not None:
            yield node
            node = node.parent

    @property
    def path_labels(self) -> str:
        """The node path for evidence: "Limit > Index Scan using orders_pkey on orders"."""
        chain = [self, *self.ancestors()]
        return " > ".join(n.label for n in reversed(chain))

    def evidence(self) -> dict:
        """The numbers a reviewer checks against the plan, for a finding's evidence."""
        data = {
            "node": self.label,
            "node_path": self.path_labels,
            "node_id": self.path,
            "estimated_rows": self.estimated_rows,
        }
        if self.analyzed:
            data.update(
                {
                    "actual_rows": self.actual_rows,
                    "loops": self.loops,
                    "inclusive_ms": _round(self.inclusive_ms),
                    "exclusive_ms": _round(self.exclusive_ms),
                }
            )
            if self.q_error is not None:
                data["q_error"] = round(self.q_error, 1)
        if self.conditions:
            data["conditions"] = self.conditions
        return data


def _round(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


@dataclass
class Plan:
    """One EXPLAIN output: the root node and the statement-level facts around it."""

    raw: dict
    root: PlanNode
    nodes: list[PlanNode]
    # Time of CTE plans beyond what the CTE Scans reading them spent: a data-modifying
    # CTE runs to completion after the main plan stops (e.g. at its Limit), outside the
    # root node's time. Sum of exclusive times = root inclusive + this.
    outside_root_ms: float = 0.0

    @property
    def analyzed(self) -> bool:
        return self.root.analyzed

    @property
    def execution_ms(self) -> float | None:
        value = self.raw.get("Execution Time", self.raw.get("Total Runtime"))
        return float(value) if value is not None else None

    @property
    def planning_ms(self) -> float | None:
        value = self.raw.get("Planning Time")
        return float(value) if value is not None else None

    @property
    def total_ms(self) -> float | None:
        """The denominator of a node's share: execution time, else the root's inclusive time."""
        return self.execution_ms if self.execution_ms is not None else self.root.inclusive_ms

    @property
    def settings(self) -> dict[str, str]:
        return dict(self.raw.get("Settings") or {})

    @property
    def triggers(self) -> list[dict]:
        return list(self.raw.get("Triggers") or [])

    @property
    def jit(self) -> dict | None:
        return self.raw.get("JIT")

    @property
    def jit_ms(self) -> float | None:
        """JIT total time. 17+ nests Generation as {"Deform": ..., "Total": ...}."""
        jit = self.jit
        if not jit or not isinstance(jit.get("Timing"), dict):
            return None
        total = jit["Timing"].get("Total")
        return float(total) if isinstance(total, (int, float)) else None

    def share(self, node: PlanNode) -> float:
        """The node's exclusive time as a share (0..1) of the statement's execution."""
        total = self.total_ms
        if not total or node.exclusive_ms is None:
            return 0.0
        return max(0.0, min(1.0, node.exclusive_ms / total))

    def subtree_share(self, node: PlanNode) -> float:
        total = self.total_ms
        if not total or node.inclusive_ms is None:
            return 0.0
        return max(0.0, min(1.0, node.inclusive_ms / total))

    def most_costly(self) -> PlanNode:
        """The node with the most exclusive time (ANALYZE), else the highest own cost."""
        if self.analyzed:
            return max(self.nodes, key=lambda n: n.exclusive_ms or 0.0)
        return max(self.nodes, key=lambda n: n.total_cost - sum(c.total_cost for c in n.children))

    def scans(self) -> Iterator[PlanNode]:
        return (n for n in self.nodes if n.node_type in SCAN_TYPES or n.relation)


# The field map: the type each EXPLAIN field has. A plan from a file or an old
# snapshot may carry anything; `build` keeps a field only when it has its type, so the
# model and the checks never see a string where a number belongs.
NUMBER_FIELDS = {
    "Plan Rows",
    "Plan Width",
    "Actual Rows",
    "Actual Loops",
    "Actual Total Time",
    "Actual Startup Time",
    "Total Cost",
    "Startup Cost",
    "Rows Removed by Filter",
    "Rows Removed by Index Recheck",
    "Rows Removed by Join Filter",
    "Heap Fetches",
    "Hash Batches",
    "Original Hash Batches",
    "Hash Buckets",
    "Peak Memory Usage",
    "HashAgg Batches",
    "Disk Usage",
    "Planned Partitions",
    "Sort Space Used",
    "Workers Planned",
    "Workers Launched",
    "Exact Heap Blocks",
    "Lossy Heap Blocks",
    "Execution Time",
    "Planning Time",
    "Total Runtime",
    "Time",
    "Calls",
    "Functions",
    *BUFFER_FIELDS.values(),
}
TEXT_FIELDS = {
    "Node Type",
    "Relation Name",
    "Schema",
    "Alias",
    "Index Name",
    "Parent Relationship",
    "Subplan Name",
    "CTE Name",
    "Sort Method",
    "Sort Space Type",
    "Strategy",
    "Operation",
    "Join Type",
    "Trigger Name",
    "Constraint Name",
    "Relation",
    "Partial Mode",
    *CONDITION_FIELDS,
}


def _clean(value, depth: int = 0):
    """A copy of an EXPLAIN object with every known field of the right type (others dropped)."""
    if not isinstance(value, dict) or depth > 200:
        return {}
    out = {}
    for key, item in value.items():
        if key in NUMBER_FIELDS:
            if (
                isinstance(item, (int, float))
                and not isinstance(item, bool)
                and item == item
                and abs(item) != float("inf")
            ):
                out[key] = item
        elif key in TEXT_FIELDS:
            if isinstance(item, str):
                out[key] = item
        elif key in ("Plans", "Workers", "Triggers"):
            if isinstance(item, list):
                out[key] = [_clean(v, depth + 1) for v in item if isinstance(v, dict)]
        elif key in (
            "Plan",
            "JIT",
            "Timing",
            "Settings",
            "Full-sort Groups",
            "Pre-sorted Groups",
            "Sort Space Disk",
            "Generation",
            "Planning",
        ):
            if isinstance(item, dict):
                out[key] = item if key == "Settings" else _clean(item, depth + 1)
        elif key in ("Sort Key", "Group Key"):
            if isinstance(item, list):
                out[key] = [v for v in item if isinstance(v, str)]
        else:
            out[key] = item
    return out


def build(explain: dict | list) -> Plan:
    """The tree of an EXPLAIN (FORMAT JSON) result: its top object, or the one-element
    list the server returns. Raises ValueError when it holds no plan."""
    if isinstance(explain, list) and explain:
        explain = explain[0]
    if not isinstance(explain, dict) or not isinstance(explain.get("Plan"), dict):
        raise ValueError("not an EXPLAIN (FORMAT JSON) result: no Plan")
    explain = _clean(explain)
    nodes: list[PlanNode] = []
    root = _build_node(explain["Plan"], "0", 0, None, 1, nodes)
    outside = _compute_times(root)
    return Plan(raw=explain, root=root, nodes=nodes, outside_root_ms=outside)


def _build_node(
    raw: dict, path: str, depth: int, parent: PlanNode | None, processes: int, nodes: list[PlanNode]
) -> PlanNode:
    node = PlanNode(raw=raw, path=path, depth=depth, parent=parent, parallel_processes=processes)
    nodes.append(node)
    child_processes = processes
    if node.node_type in PARALLEL_ROOTS:
        launched = raw.get("Workers Launched", raw.get("Workers Planned"))
        # The leader runs the plan too (parallel_leader_participation, on by default).
        child_processes = int(launched or 0) + 1
    for i, child in enumerate(raw.get("Plans") or []):
        node.children.append(_build_node(child, f"{path}.{i}", depth + 1, node, child_processes, nodes))
    return node


def _inclusive(node: PlanNode) -> float | None:
    total = node.raw.get("Actual Total Time")
    if total is None:
        return None if not node.analyzed else 0.0
    loops = node.loops or 0.0
    # A node below a Gather that only some processes ran (loops < processes) is
    # divided by the processes that ran it.
    return float(total) * loops / max(1.0, min(loops, float(node.parallel_processes)))


def _compute_times(root: PlanNode) -> float:
    """Fill inclusive and exclusive times; returns the CTE time spent outside the root."""
    for node in root.walk():
        node.inclusive_ms = _inclusive(node)
    if root.inclusive_ms is None:
        return 0.0
    outside = 0.0
    cte_time: dict[str, float] = {}
    cte_readers: dict[str, list[PlanNode]] = {}
    for node in root.walk():
        if node.is_cte_plan and node.inclusive_ms is not None:
            cte_time[node.subplan_name[4:]] = node.inclusive_ms
        if node.node_type == "CTE Scan" and node.raw.get("CTE Name"):
            cte_readers.setdefault(node.raw["CTE Name"], []).append(node)
    for node in root.walk():
        own = node.inclusive_ms or 0.0
        for child in node.children:
            if not child.is_cte_plan:
                own -= child.inclusive_ms or 0.0
        node.exclusive_ms = own
    # A CTE's plan runs inside the scans reading it: take its time off them, in
    # proportion to what each of them spent.
    for name, readers in cte_readers.items():
        spent = cte_time.pop(name, None)
        if not spent:
            continue
        total = sum(max(0.0, r.exclusive_ms or 0.0) for r in readers)
        for reader in readers:
            part = spent * (max(0.0, reader.exclusive_ms or 0.0) / total) if total else 0.0
            taken = min(part, max(0.0, reader.exclusive_ms or 0.0))
            reader.exclusive_ms = (reader.exclusive_ms or 0.0) - taken
            spent -= taken
        outside += max(0.0, spent)
    outside += sum(cte_time.values())  # CTEs no scan reads (data-modifying ones)
    for node in root.walk():
        # Rounding of the printed times (3 decimals) can leave -0.001, and parallel
        # timings are averages that need not add up exactly; never negative.
        node.exclusive_ms = max(0.0, node.exclusive_ms or 0.0)
    return outside


# -- conditions as column references -------------------------------------------------
_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_COLUMN_REF = re.compile(rf"(?<![\w.'\"$])({_IDENT})(?:\.({_IDENT}))?(?:\.({_IDENT}))?(?![\w\"(])")
_NOT_COLUMNS = {
    "and",
    "or",
    "not",
    "is",
    "null",
    "true",
    "false",
    "any",
    "all",
    "in",
    "like",
    "ilike",
    "between",
    "text",
    "integer",
    "bigint",
    "numeric",
    "date",
    "timestamp",
    "with",
    "time",
    "zone",
    "without",
    "character",
    "varying",
    "boolean",
    "double",
    "precision",
    "real",
    "smallint",
    "interval",
    "array",
    "subplan",
    "hashed",
    "initplan",
    "case",
    "when",
    "then",
    "else",
    "end",
    "distinct",
    "from",
    "cast",
    "some",
    "similar",
    "escape",
    "collate",
    "operator",
    "returns",
    "row",
    "exists",
    "uuid",
    "jsonb",
    "json",
    "bytea",
    "timestamptz",
    "varchar",
    "bpchar",
    "int",
    "int4",
    "int8",
    "int2",
    "float8",
    "float4",
    "name",
    "oid",
    "regclass",
    "tsquery",
    "tsvector",
    "inet",
    "cidr",
    "bit",
}


def _unquote(ident: str) -> str:
    return ident[1:-1].replace('""', '"') if ident.startswith('"') else ident


@lru_cache(maxsize=4096)
def _condition_columns(text: str) -> tuple[tuple[str | None, str], ...]:
    try:
        stmt = parse_sql(f"SELECT 1 WHERE {text}")[0].stmt
        found: list[tuple[str | None, str]] = []
        for ref in find_nodes(stmt, ast.ColumnRef):
            names = [f.sval for f in ref.fields if isinstance(f, ast.String)]
            if names:
                found.append((names[-2] if len(names) > 1 else None, names[-1]))
        return tuple(found)
    except Exception:
        pass
    # Text plans can hold what does not parse ("(hashed SubPlan 1)", "$0"): identifiers
    # outside string literals, not followed by "(" (functions) and not SQL keywords.
    stripped = re.sub(r"'(?:[^']|'')*'", "''", text)
    stripped = re.sub(r"::\s*" + _IDENT + r"(?:\s+" + _IDENT + r")*(?:\[\])?", "", stripped)
    out = []
    for m in _COLUMN_REF.finditer(stripped):
        parts = [p for p in m.groups() if p]
        if not parts or parts[-1].lower() in _NOT_COLUMNS or parts[-1][0].isdigit():
            continue
        out.append((_unquote(parts[-2]) if len(parts) > 1 else None, _unquote(parts[-1])))
    return tuple(out)


def condition_columns(text: str) -> list[tuple[str | None, str]]:
    """Column references in a printed condition such as "((city = 'x'::text) AND (zip = 'y'::text))"."""
    return list(_condition_columns(text))
