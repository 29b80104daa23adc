"""Dynamic review on a scratch database: apply the migration for real and measure it.

This is the one part of queryaudit that writes, and only to the database the user names
as scratch (`--dsn`). It works on a throwaway copy (`CREATE DATABASE ... TEMPLATE
scratch`, dropped at the end); when the copy cannot be made (other sessions on the
scratch database, no CREATEDB) it applies everything in one transaction and rolls it
back. Either way the scratch database is left as it was.

Per statement it records the table locks the backend holds before commit (its own rows
in pg_locks), the relations whose relfilenode changed (a rewrite), and the duration.
Then it EXPLAINs the top statements of a saved report or snapshot before and after, and
reports regressions (cost up beyond a threshold, an index no longer used, a new
sequential scan on a large table), improvements, and statements that no longer plan.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import conninfo, sql

from queryaudit.connect import APPLICATION_NAME, connection_error_message, named_rows, scalar
from queryaudit.errors import AuditError
from queryaudit.migrations.dynamic_rules import COST_REGRESSION, HIGH_SHARE, LARGE_TABLE_ROWS, NOT_IN_TRANSACTION
from queryaudit.migrations.locks import from_pg_locks, strongest
from queryaudit.migrations.review import MigrationFinding
from queryaudit.migrations.source import MigrationFile, is_transaction
from queryaudit.plans.explain import explain_generic
from queryaudit.sql import statement_kind


@dataclass
class DynamicOptions:
    workload: Path | None = None
    top: int = 20
    cost_threshold: float = COST_REGRESSION
    large_table_rows: int = LARGE_TABLE_ROWS


def _connect(dsn: str, autocommit: bool = True) -> psycopg.Connection:
    try:
        return psycopg.connect(
            dsn, autocommit=autocommit, connect_timeout=10, application_name=f"{APPLICATION_NAME} review-migration"
        )
    except psycopg.Error as exc:
        raise AuditError(connection_error_message(exc, dsn)) from None


def server_version(dsn: str) -> int:
    with _connect(dsn) as conn:
        return conn.info.server_version


def load_workload(path: Path, top: int) -> list[dict]:
    """Top statements of a saved report (`queries`) or snapshot (`statements`), by total time."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise AuditError(f"--workload {path}: cannot read it as JSON ({exc})") from None
    rows = data.get("queries") or data.get("statements") if isinstance(data, dict) else None
    if rows is None:
        raise AuditError(f"--workload {path}: neither a queryaudit report (queries) nor a snapshot (statements)")
    total = sum(float(r.get("total_exec_time_ms") or 0) for r in data.get("statements", [])) or float(
        (data.get("window") or {}).get("total_exec_time_ms") or 0
    )
    out = []
    for r in sorted(rows, key=lambda r: -float(r.get("total_exec_time_ms") or 0)):
        if statement_kind(r.get("query") or "") not in ("read", "dml"):
            continue
        share = r.get("share_of_total_time")
        if share is None and total:
            share = float(r.get("total_exec_time_ms") or 0) / total
        out.append(
            {
                "queryid": str(r.get("queryid")),
                "query": r["query"],
                "calls": r.get("calls"),
                "total_exec_time_ms": r.get("total_exec_time_ms"),
                "share_of_total_time": share or 0.0,
            }
        )
        if len(out) >= top:
            break
    return out


# --- plans ---------------------------------------------------------------------------


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", ()) or ():
        yield from _nodes(child)


def plan_text(plan: dict) -> str:
    """A compact EXPLAIN-like rendering of a JSON plan, for reports."""
    lines = []

    def walk(node, depth):
        label = node["Node Type"]
        if node.get("Index Name"):
            label += f" using {node['Index Name']}"
        if node.get("Relation Name"):
            label += f" on {node['Relation Name']}"
        lines.append(
            f"{'  ' * depth}{'-> ' if depth else ''}{label}  (cost={node.get('Startup Cost', 0):.2f}.."
            f"{node.get('Total Cost', 0):.2f} rows={node.get('Plan Rows', 0)})"
        )
        for key in ("Index Cond", "Filter", "Hash Cond"):
            if node.get(key):
                lines.append(f"{'  ' * (depth + 1)}{key}: {node[key]}")
        for child in node.get("Plans", ()) or ():
            walk(child, depth + 1)

    walk(plan["Plan"], 0)
    return "\n".join(lines)


def _indexes_used(plan: dict) -> set[str]:
    return {n["Index Name"] for n in _nodes(plan["Plan"]) if n.get("Index Name")}


def _seq_scans(plan: dict) -> set[str]:
    return {n["Relation Name"] for n in _nodes(plan["Plan"]) if n["Node Type"] == "Seq Scan" and n.get("Relation Name")}


def _reltuples(conn, names: set[str]) -> dict[str, float]:
    if not names:
        return {}
    rows = named_rows(
        conn,
        "SELECT relname, max(reltuples) AS reltuples FROM pg_class WHERE relname = ANY(%s) GROUP BY relname",
        (list(names),),
    )
    return {r["relname"]: float(r["reltuples"]) for r in rows}


def compare_plans(before: dict, after: dict, reltuples: dict[str, float], options: DynamicOptions) -> dict:
    cost_b, cost_a = float(before["Plan"]["Total Cost"]), float(after["Plan"]["Total Cost"])
    ratio = cost_a / cost_b if cost_b > 0 else (1.0 if cost_a == 0 else float("inf"))
    lost = sorted(_indexes_used(before) - _indexes_used(after))
    gained = sorted(_indexes_used(after) - _indexes_used(before))
    new_seq = sorted(
        t for t in _seq_scans(after) - _seq_scans(before) if reltuples.get(t, 0) >= options.large_table_rows
    )
    reasons = []
    if ratio > 1 + options.cost_threshold:
        reasons.append(f"cost {cost_b:.1f} -> {cost_a:.1f} (x{ratio:.1f})")
    reasons += [f"index {i} no longer used" for i in lost]
    reasons += [f"new sequential scan on {t} ({int(reltuples[t])} rows)" for t in new_seq]
    verdict = "regression" if reasons else None
    if not reasons and (ratio < 1 - options.cost_threshold or gained):
        verdict = "improvement"
        reasons = ([f"cost {cost_b:.1f} -> {cost_a:.1f}"] if ratio < 1 - options.cost_threshold else []) + [
            f"now uses index {i}" for i in gained
        ]
    return {
        "verdict": verdict,
        "reasons": reasons,
        "cost_before": cost_b,
        "cost_after": cost_a,
        "cost_ratio": round(ratio, 3) if ratio != float("inf") else None,
        "indexes_lost": lost,
        "indexes_gained": gained,
        "new_seq_scans": new_seq,
    }


# --- applying the migration ------------------------------------------------------------

_RELATIONS = """SELECT c.oid, c.relfilenode AS filenode, c.relkind AS kind, n.nspname || '.' || c.relname AS name,
       pg_relation_size(c.oid) AS size
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm', 'i', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%%' AND n.nspname NOT LIKE 'pg_temp%%'"""
_LOCKS = """SELECT l.relation AS oid, l.mode, n.nspname || '.' || c.relname AS name
FROM pg_locks l LEFT JOIN pg_class c ON c.oid = l.relation LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted
  AND coalesce(n.nspname, '') NOT IN ('pg_catalog', 'information_schema')"""


def _relations(conn) -> dict[int, dict]:
    """Each relation by oid: its filenode (a rewrite changes it), kind, name and size."""
    return {r.pop("oid"): r for r in named_rows(conn, _RELATIONS)}


def _held_locks(conn, names: dict[int, dict]) -> dict[str, set[str]]:
    held: dict[str, set[str]] = {}
    for r in named_rows(conn, _LOCKS):
        label = r["name"] or names.get(r["oid"], {}).get("name") or f"oid {r['oid']}"
        held.setdefault(label, set()).add(from_pg_locks(r["mode"]))
    return held


def _measure(
    conn,
    stmt_text: str,
    start_relations: dict[int, dict],
    in_outer_tx: bool,
    already_held: dict[str, set[str]] | None = None,
) -> dict:
    """Run one statement and measure it. In copy mode each runs in its own transaction; a
    statement PostgreSQL refuses in a transaction block runs alone (its locks are not visible)."""
    before = _relations(conn)
    t0 = time.perf_counter()
    measured_locks = True
    if in_outer_tx:
        with conn.transaction():
            conn.execute(stmt_text)
        elapsed = time.perf_counter() - t0
        held = _held_locks(conn, before)
        if already_held is not None:
            held = {k: v - already_held.get(k, set()) for k, v in held.items()}
            held = {k: v for k, v in held.items() if v}
    else:
        try:
            with conn.transaction():
                conn.execute(stmt_text)
                elapsed = time.perf_counter() - t0
                held = _held_locks(conn, before)
                after = _relations(conn)
        except psycopg.Error as exc:
            if getattr(exc, "sqlstate", None) != NOT_IN_TRANSACTION:
                raise
            t0 = time.perf_counter()
            conn.execute(stmt_text)
            elapsed = time.perf_counter() - t0
            held, measured_locks = {}, False
    after = _relations(conn)
    rewritten = []
    for oid, rel in before.items():
        if (
            oid in after
            and after[oid]["filenode"] != rel["filenode"]
            and rel["kind"] in ("r", "m")
            and oid in start_relations
        ):
            rewritten.append(
                {
                    "relation": rel["name"],
                    "bytes_before": rel["size"],
                    "relfilenode_before": rel["filenode"],
                    "relfilenode_after": after[oid]["filenode"],
                }
            )
    locks = [
        {"relation": rel, "modes": sorted(modes), "strongest": strongest(modes)} for rel, modes in sorted(held.items())
    ]
    return {
        "duration_ms": round(elapsed * 1000, 3),
        "locks": locks,
        "locks_measured": measured_locks,
        "strongest_lock": strongest([lk["strongest"] for lk in locks]),
        "rewritten": rewritten,
    }


def _explain_all(conn, workload: list[dict]) -> dict[str, dict]:
    plans = {}
    for item in workload:
        try:
            plans[item["queryid"]] = {"plan": explain_generic(conn, item["query"])}
        except psycopg.Error as exc:
            plans[item["queryid"]] = {"error": str(exc).strip().splitlines()[0]}
    return plans


def _dsn_for(dsn: str, dbname: str) -> str:
    return conninfo.make_conninfo(dsn, dbname=dbname)


def run_dynamic(dsn: str, migrations: list[MigrationFile], options: DynamicOptions) -> dict:
    """Apply the migrations to a copy of the scratch database (or in a rolled-back
    transaction) and measure them; returns the dynamic section of the review."""
    workload = load_workload(options.workload, options.top) if options.workload else []
    with _connect(dsn) as conn:
        scratch = scalar(conn, "SELECT current_database()")
        version = conn.info.server_version
    copy_name = f"queryaudit_review_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    mode, note = "copy", None
    admin_dsn = _dsn_for(dsn, "postgres")
    try:
        with _connect(admin_dsn) as admin:
            admin.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(copy_name), sql.Identifier(scratch))
            )
    except (psycopg.Error, AuditError) as exc:
        mode = "rollback"
        note = f"could not copy {scratch} ({str(exc).strip().splitlines()[0]}): applied in one transaction, rolled back"
    result = {
        "scratch_database": scratch,
        "server_version_num": version,
        "mode": mode,
        "note": note,
        "statements": [],
        "plans": [],
        "workload_size": len(workload),
    }
    try:
        work_dsn = _dsn_for(dsn, copy_name) if mode == "copy" else dsn
        with _connect(work_dsn) as conn:
            if mode == "copy":
                _apply(conn, migrations, workload, result, in_outer_tx=False)
            else:
                with conn.transaction(force_rollback=True):
                    _apply(conn, migrations, workload, result, in_outer_tx=True)
    finally:
        if mode == "copy":
            with _connect(admin_dsn) as admin:
                force = " WITH (FORCE)" if version >= 130000 else ""
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}" + force).format(sql.Identifier(copy_name)))
    return result


def _apply(conn, migrations, workload, result, in_outer_tx: bool) -> None:
    before_plans = _explain_all(conn, workload)
    start_relations = _relations(conn)
    already: dict[str, set[str]] = {}
    failed = False
    for mig in migrations:
        for stmt in mig.statements:
            if is_transaction(stmt.node) or failed:
                continue
            entry = {"path": mig.path, "line": stmt.line, "end_line": stmt.end_line, "statement": stmt.text.strip()}
            try:
                if in_outer_tx and stmt.text.strip().upper().find("CONCURRENTLY") >= 0:
                    entry.update(skipped="runs outside a transaction block; not measured in rollback mode")
                else:
                    entry.update(_measure(conn, stmt.text, start_relations, in_outer_tx, already))
                    if in_outer_tx:
                        already = _held_locks(conn, {})
            except psycopg.Error as exc:
                entry["error"] = str(exc).strip().splitlines()[0]
                failed = True
            result["statements"].append(entry)
    if failed:
        result["failed"] = True
        return
    after_plans = _explain_all(conn, workload)
    seq_tables = set()
    for p in list(after_plans.values()):
        if "plan" in p:
            seq_tables |= _seq_scans(p["plan"])
    reltuples = _reltuples(conn, seq_tables)
    for item in workload:
        b, a = before_plans[item["queryid"]], after_plans[item["queryid"]]
        entry = {
            **item,
            "before_plan": plan_text(b["plan"]) if "plan" in b else None,
            "after_plan": plan_text(a["plan"]) if "plan" in a else None,
        }
        if "error" in b:
            entry.update(verdict="skipped", reasons=[f"does not plan on the scratch database: {b['error']}"])
        elif "error" in a:
            entry.update(verdict="breaks", reasons=[a["error"]])
        else:
            entry.update(compare_plans(b["plan"], a["plan"], reltuples, DynamicOptions()))
        result["plans"].append(entry)


def dynamic_findings(dynamic: dict, options: DynamicOptions) -> list[MigrationFinding]:
    """Findings from what the scratch run measured."""
    out = []
    for s in dynamic.get("statements", []):
        base = dict(path=s["path"], line=s["line"], column=1, end_line=s["end_line"], statement=s["statement"])
        if s.get("error"):
            out.append(
                MigrationFinding(
                    rule="migration-error",
                    severity="critical",
                    title="The migration fails",
                    message=f"fails on the scratch database: {s['error']}",
                    **base,
                )
            )
        for r in s.get("rewritten", []):
            out.append(
                MigrationFinding(
                    rule="table-rewrite",
                    severity="high",
                    title="Measured table rewrite",
                    message=f"rewrote {r['relation']} ({r['bytes_before']} bytes on scratch; relfilenode "
                    f"{r['relfilenode_before']} -> {r['relfilenode_after']}) in {s['duration_ms']} ms",
                    lock=s.get("strongest_lock"),
                    rewrite=True,
                    table=r["relation"],
                    measured=_measured(s),
                    **base,
                )
            )
    statements = dynamic.get("statements", [])
    for p in dynamic.get("plans", []):
        if p.get("verdict") not in ("regression", "improvement", "breaks"):
            continue
        share = float(p.get("share_of_total_time") or 0)
        rule = {"regression": "plan-regression", "improvement": "plan-improvement", "breaks": "statement-breaks"}[
            p["verdict"]
        ]
        severity = {
            "plan-regression": "high" if share >= HIGH_SHARE else "medium",
            "plan-improvement": "info",
            "statement-breaks": "critical",
        }[rule]
        query = " ".join(p["query"].split())
        first = _culprit(statements, p)
        out.append(
            MigrationFinding(
                rule=rule,
                severity=severity,
                title={
                    "plan-regression": "Plan regression",
                    "plan-improvement": "Plan improvement",
                    "statement-breaks": "Statement breaks",
                }[rule],
                message=f"top statement {p['queryid']} ({share:.1%} of database time): {'; '.join(p['reasons'])}",
                path=first["path"] if first else "-",
                line=first["line"] if first else 1,
                column=1,
                end_line=first["line"] if first else 1,
                statement=query[:500],
                evidence={
                    "queryid": p["queryid"],
                    "query": p["query"],
                    "before_plan": p.get("before_plan"),
                    "after_plan": p.get("after_plan"),
                    "cost_before": p.get("cost_before"),
                    "cost_after": p.get("cost_after"),
                    "share_of_total_time": share,
                },
            )
        )
    return out


def _measured(s: dict) -> dict:
    return {k: s.get(k) for k in ("duration_ms", "locks", "strongest_lock", "rewritten", "locks_measured", "skipped")}


def attach_measurements(findings: list[MigrationFinding], dynamic: dict) -> None:
    """Give each static finding what the scratch run measured for its statement."""
    for f in findings:
        for s in dynamic.get("statements", []):
            if s["path"] == f.path and s["line"] <= f.line <= s["end_line"] and f.measured is None:
                f.measured = _measured(s)
                if "rewritten" in s and f.rewrite is None:
                    f.rewrite = bool(s["rewritten"])


def _culprit(statements: list[dict], plan: dict) -> dict | None:
    """The migration statement a plan change points at: the one naming a lost (or gained)
    index or a seq-scanned table, else the first statement."""
    names = plan.get("indexes_lost", []) + plan.get("indexes_gained", []) + plan.get("new_seq_scans", [])
    for name in names:
        for s in statements:
            if name.lower() in s["statement"].lower():
                return s
    return statements[0] if statements else None
