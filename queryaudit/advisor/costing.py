"""Verification on the server: HypoPG hypothetical indexes, a plan-based estimate when
HypoPG is missing, and --verify-real for scratch databases.

HypoPG keeps hypothetical indexes in the backend's memory and the planner sees them in
that session only; it writes nothing, so it works in a read-only session and on a hot
standby. Each statement is costed on its own values (`value_sets`: the representative
sets the audit found, weighted by calls, else plan capture's values), the generic plan
only where no value is known; every plan goes through queryaudit.plans.explain's one
prepared statement, so pg_stat_statements gets no entry per plan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg
from psycopg import sql

from queryaudit.advisor.candidates import Candidate, _constant_fraction, selectivity
from queryaudit.advisor.select import create_sql
from queryaudit.connect import scalar
from queryaudit.plans.explain import (
    Planner,
    deallocate,
    explain_execute,
    explain_generic,
    parameter_count,
    parameter_types,
    plan_cost,
    prepare,
    set_local,
)
from queryaudit.plans.params import find_slots
from queryaudit.plans.plannable import make_plannable
from queryaudit.snapshot import Snapshot
from queryaudit.sql import quote_table, statement_kind

RANGE_SELECTIVITY = 1 / 3  # PostgreSQL's DEFAULT_INEQ_SEL for an open range with unknown bound
LIMIT_READ_FRACTION = 0.01  # without HypoPG: what an ORDER BY ... LIMIT in index order still reads
# Without verification a prediction is scaled down by this (the index still costs lookups).
ESTIMATE_CAP = 0.9
REAL_RUNS = 2  # EXPLAIN ANALYZE runs per side; the fastest counts (the first warms the cache)
REAL_STATEMENTS_PER_INDEX = 5
# Hypothetical indexes left in place between plans when the next statement cannot use
# them; beyond this many the planner spends more time on them than creating saves.
MAX_PRESENT = 24


def hypopg_version(conn: psycopg.Connection) -> str | None:
    return scalar(conn, "SELECT extversion FROM pg_extension WHERE extname = 'hypopg'")


def install_hint(snapshot: Snapshot) -> str:
    """How to get HypoPG, fitted to how the server was installed as far as the audit can
    tell: version() names Debian and Ubuntu packages; any other build (RPM, from source,
    an embedded or managed server) gets the packages to try and the source build."""
    major = snapshot.server.version_num // 10000
    if "hypopg" in snapshot.server.available_extensions:
        return (
            f"HypoPG is installed on the server but not created in {snapshot.server.database}: "
            "run CREATE EXTENSION hypopg; (as a role allowed to create extensions) and re-run to verify "
            "each index with hypothetical indexes"
        )
    version = snapshot.server.version or ""
    then = "then CREATE EXTENSION hypopg; in the audited database, and re-run to verify each index"
    if "Debian" in version or "Ubuntu" in version:
        return f"install HypoPG on the server (apt install postgresql-{major}-hypopg), {then}"
    return (
        f"install HypoPG for this server's PostgreSQL {major} (from the PGDG packages when the server came "
        f"from them: dnf install hypopg_{major} or apt install postgresql-{major}-hypopg; else build it "
        f"from github.com/HypoPG/hypopg with the server's own pg_config), {then}"
    )


class Hypothetical:
    """Hypothetical indexes in this session; all are removed on exit."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("SELECT hypopg_reset()")
        return self

    def __exit__(self, *exc):
        try:
            self.conn.execute("SELECT hypopg_reset()")
        except psycopg.Error:
            pass

    def create(self, candidate: Candidate) -> tuple[int, int]:
        """(oid, estimated size in bytes) of a new hypothetical index."""
        ddl = self.ddl(candidate)
        oid = scalar(self.conn, "SELECT indexrelid FROM hypopg_create_index(%s)", (ddl,))
        size = scalar(self.conn, "SELECT hypopg_relation_size(%s)", (oid,))
        return int(oid), int(size or 0)

    @staticmethod
    def ddl(candidate: Candidate) -> str:
        """What hypopg_create_index() is given: the proposal's CREATE INDEX, without a name."""
        return create_sql(candidate, None, concurrently=False).rstrip(";")

    def drop(self, oid: int) -> None:
        self.conn.execute("SELECT hypopg_drop_index(%s)", (oid,))


class WhatIf:
    """Statements planned with exactly a given set of hypothetical indexes: the
    session's HypoPG set is brought to that set (drop what is extra, create what is
    missing) before each plan. Sizes are HypoPG's own estimates (hypopg_relation_size)."""

    def __init__(
        self, hypo: Hypothetical, queries: dict[str, list[ValueSet]], planner: Planner | None = None, on_reject=None
    ):
        self.hypo, self.queries, self.on_reject = hypo, queries, on_reject
        self.planner = planner if planner is not None else Planner(hypo.conn)
        self.present: dict[tuple, int] = {}  # candidate key -> hypothetical index oid

    def sync(self, candidates, harmless=None) -> None:
        """Exactly `candidates`, except that present indexes `harmless(c)` calls harmless
        (the statement cannot lead with them) may stay: fewer creates and drops."""
        want = {c.key: c for c in candidates}
        keep_extra = harmless is not None and len(self.present) <= MAX_PRESENT
        for key in [k for k in self.present if k not in want]:
            if not (keep_extra and harmless(self.present[key][1])):
                self.hypo.drop(self.present.pop(key)[0])
        for key, c in want.items():
            if key not in self.present:
                self.present[key] = (self.hypo.create(c)[0], c)

    def size(self, candidate: Candidate) -> int:
        """HypoPG's size, or -1 when HypoPG refuses the definition."""
        try:
            oid, size = self.hypo.create(candidate)
        except psycopg.Error as exc:
            # HypoPG refuses some definitions (an expression it cannot type): no proposal,
            # but the method section says which and why.
            if self.on_reject is not None:
                self.on_reject("candidate", self.hypo.ddl(candidate), exc, table=candidate.table)
            return -1
        self.hypo.drop(oid)
        return size

    def plan(self, queryid: str, candidates, harmless=None) -> tuple[float, dict] | None:
        try:
            self.sync(candidates, harmless)
            return workload_cost(self.planner, self.queries[queryid])
        except psycopg.Error:
            return None

    def cost(self, queryid: str, candidates, harmless=None) -> float:
        planned = self.plan(queryid, candidates, harmless)
        return planned[0] if planned else float("inf")

    def oid(self, candidate: Candidate) -> int | None:
        found = self.present.get(candidate.key)
        return found[0] if found else None


def generic_cost(conn: psycopg.Connection, query: str) -> tuple[float, dict]:
    plan = explain_generic(conn, query)
    return plan_cost(plan), plan


@dataclass
class ValueSet:
    """Values for a statement's placeholders (the plannable text's $1..$n) and the share
    of its calls they stand for; `values` None: no value is known, the generic plan."""

    query: str
    values: list[str] | None
    weight: float = 1.0
    source: str = ""


def value_sets(snapshot: Snapshot, queryid: str, query: str) -> list[ValueSet]:
    """What the statement is costed on: the parameter sets plan capture found to reproduce
    the workload (weighted by the share of calls each stands for), else the values plan
    capture bound, else the concrete text it explained, else the generic plan."""
    plannable = make_plannable(query).text
    n = parameter_count(plannable)
    if n == 0:
        return [ValueSet(plannable, [], 1.0, "no parameters")]
    capture = next((p for p in snapshot.plans if p.queryid == queryid and p.method != "skipped"), None)
    # Plan capture's sets that reproduced the workload (PlanCapture.parameter_sets, weight > 0),
    # then sets handed in by a caller (extras["parameter_sets"]: [{"values": [...], "weight": w}]).
    offered = [{"values": s.values, "weight": s.weight} for s in (capture.parameter_sets if capture else [])]
    offered += (snapshot.extras.get("parameter_sets") or {}).get(queryid, [])
    found = [
        ValueSet(
            plannable,
            [None if v is None else str(v) for v in item.get("values", [])],
            float(item.get("weight", 1.0)),
            "representative",
        )
        for item in offered
        if len(item.get("values", [])) == n and float(item.get("weight", 1.0)) > 0
    ]
    if found:
        return found
    if capture is not None and len(capture.parameters) == n:
        return [ValueSet(plannable, list(capture.parameters), 1.0, "plan capture")]
    if (
        capture is not None
        and capture.query_text
        and parameter_count(capture.query_text) == 0
        and statement_kind(capture.query_text) == statement_kind(query)
    ):
        return [ValueSet(capture.query_text, [], 1.0, "plan capture (concrete text)")]
    return [ValueSet(plannable, None, 1.0, "generic plan")]


def workload_cost(planner: Planner, sets: list[ValueSet]) -> tuple[float, dict]:
    """Weighted mean planner cost over the statement's value sets, and the plan of the
    heaviest set (the one shown)."""
    total = weight = 0.0
    shown = None
    for v in sets:
        plan = planner.plan(v.query, v.values, generic=v.values is None)
        total += v.weight * plan_cost(plan)
        weight += v.weight
        if shown is None:
            shown = plan
    return total / weight, shown


def _nodes(node: dict):
    yield node
    for child in node.get("Plans", ()) or ():
        yield from _nodes(child)


def estimated_fraction(plan: dict, candidate: Candidate, snapshot: Snapshot) -> float:
    """Without HypoPG: the share of the plan's cost spent in sequential scans of the
    candidate's table, times the fraction of rows the index would skip (pg_stats)."""
    root = plan["Plan"]
    total = float(root.get("Total Cost") or 0)
    if total <= 0:
        return 0.0
    tables = {candidate.table.split(".", 1)[-1]}
    for t in snapshot.tables:  # a partitioned table is scanned partition by partition
        if t.partition_of and t.partition_of.split(".", 1)[-1] in tables:
            tables.add(t.name)
    scans = [n for n in _nodes(root) if n.get("Node Type") == "Seq Scan" and n.get("Relation Name") in tables]
    if not scans:
        return 0.0
    scan_cost = sum(float(n.get("Total Cost") or 0) * max(1.0, float(n.get("Plan Loops", 1) or 1)) for n in scans)
    share = min(1.0, scan_cost / total)
    kept = 1.0
    for n, column in enumerate(candidate.columns):
        if n < candidate.equality_prefix:
            kept *= selectivity(snapshot, candidate.table, column)
        elif not candidate.reasons & {"range"}:
            break
        else:
            kept *= RANGE_SELECTIVITY
            break
    sorts = [
        [re.sub(r"\s+(DESC|ASC|NULLS).*$", "", k).split(".")[-1].strip('"') for k in n.get("Sort Key") or ()]
        for n in _nodes(root)
        if n.get("Node Type") in ("Sort", "Incremental Sort")
    ]
    rest = list(candidate.columns[candidate.equality_prefix :])
    if (
        "sort" in candidate.reasons
        and root.get("Node Type") == "Limit"
        and any(keys and rest[: len(keys)] == keys for keys in sorts)
    ):
        # ORDER BY ... LIMIT read in index order: the scan stops after the first rows and
        # the sort is gone; the sort sits above the scan, so its cost counts as well.
        share = 1.0
        kept *= LIMIT_READ_FRACTION
    if candidate.predicate:
        kept *= _constant_fraction(snapshot, candidate.table, candidate.predicate)
    return round(ESTIMATE_CAP * share * (1.0 - kept), 4)


# -- --verify-real ----------------------------------------------------------------------


def sample_parameters(query: str, snapshot: Snapshot, tables: set[str], types: list[str]) -> list[str] | None:
    """Values for $1..$n from pg_stats: for `col op $n` (the column as queryaudit.names
    resolves it) the middle histogram bound, else the most common value; None when a
    parameter cannot be tied to a column."""
    values = []
    for slot in find_slots(query, snapshot.tables, parameter_count(query)):
        value = None
        stats = snapshot.stats_for(slot.table, slot.column) if slot.table and slot.column else None
        if stats and stats.histogram_bounds:
            value = stats.histogram_bounds[len(stats.histogram_bounds) // 2]
        elif stats and stats.most_common_vals:
            value = stats.most_common_vals[0]
        if value is None:
            n = slot.number
            if n <= len(types) and types[n - 1] in ("integer", "bigint", "smallint", "numeric"):
                value = "100"  # LIMIT/OFFSET and counts
            else:
                return None
        values.append(value)
    return values


def _analyze_ms(conn: psycopg.Connection, query: str, values: list[str] | None) -> float:
    """The fastest of REAL_RUNS EXPLAIN ANALYZE runs, through the one prepared statement
    (deallocated before the next statement is prepared)."""
    best = None
    prepare(conn, query, values)
    for _ in range(REAL_RUNS):
        ms = float(explain_execute(conn, "ANALYZE, FORMAT JSON").get("Execution Time", 0.0))
        best = ms if best is None else min(best, ms)
    deallocate(conn)  # on failure the caller's finally does it, after the rollback
    return best or 0.0


def measure_real(
    conn: psycopg.Connection, candidate: Candidate, statements: list[tuple[str, str, list[str] | None]]
) -> dict[str, tuple[float, float]]:
    """Build the index for real inside a transaction, EXPLAIN ANALYZE each statement
    before and after, and roll back: the index (and any row a DML statement touched)
    is gone afterwards, even if the session dies midway. Needs a writable session."""
    out: dict[str, tuple[float, float]] = {}
    try:
        with conn.transaction(force_rollback=True):
            set_local(conn, "plan_cache_mode", "force_custom_plan")
            before = {q: _analyze_ms(conn, query, values) for q, query, values in statements}
            conn.execute(create_sql(candidate, "queryaudit_verify_real_idx", concurrently=False))
            if "expression" in candidate.reasons:  # an expression index brings statistics of its own
                conn.execute(sql.SQL("ANALYZE {}").format(sql.SQL(quote_table(candidate.table))))
            after = {q: _analyze_ms(conn, query, values) for q, query, values in statements}
    finally:
        deallocate(conn)  # after the transaction, also when a run failed
    for q in before:
        out[q] = (before[q], after[q])
    return out


def runnable(
    conn: psycopg.Connection, snapshot: Snapshot, queryid: str, query: str, tables: set[str]
) -> tuple[str, list[str] | None] | None:
    """The statement with values to execute: the plan capture's bound text when there
    is one, else the normalized text with values sampled from pg_stats."""
    capture = next((p for p in snapshot.plans if p.queryid == queryid and p.query_text), None)
    if capture and parameter_count(capture.query_text) == 0:
        return capture.query_text, None
    if parameter_count(query) == 0:
        return query, None
    try:
        types = parameter_types(conn, query)
    except psycopg.Error:
        return None
    values = sample_parameters(query, snapshot, tables, types)
    return (query, values) if values is not None else None
