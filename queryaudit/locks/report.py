"""Lock facts for readers: the report's `locks` section (timeline, chains as trees, top
blockers and waiters, open transactions) and the terminal output of `queryaudit locks`.
Pure: it formats facts a collector or a log analysis produced."""

from __future__ import annotations

from collections import defaultdict

from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from queryaudit.checks import ids, run_checks
from queryaudit.findings import prioritise
from queryaudit.locks.facts import LockFacts, describe, short
from queryaudit.snapshot import Snapshot

TOP = 10


def _top(facts: LockFacts, snapshot: Snapshot | None, key_of) -> list[dict]:
    totals: dict[str, dict] = {}
    for w in facts.waits:
        key = key_of(w)
        if not key:
            continue
        entry = totals.setdefault(key, {"wait_ms": 0.0, "waits": 0, "relations": set(), "modes": set()})
        entry["wait_ms"] += w.wait_ms
        entry["waits"] += w.samples
        if w.relation:
            entry["relations"].add(w.relation)
        entry["modes"].add(w.mode)
    ranked = sorted(totals.items(), key=lambda kv: -kv[1]["wait_ms"])[:TOP]
    return [
        {
            **describe(facts, k, snapshot),
            "wait_ms": round(v["wait_ms"], 1),
            "waits": v["waits"],
            "relations": sorted(v["relations"]),
            "modes": sorted(v["modes"]),
        }
        for k, v in ranked
    ]


def facts_section(facts: LockFacts, snapshot: Snapshot | None = None) -> dict:
    by_relation: dict[str, float] = defaultdict(float)
    for w in facts.waits:
        by_relation[w.relation or f"({w.locktype})"] += w.wait_ms
    return {
        "source": facts.source,
        "database": facts.database,
        "started_at": facts.started_at,
        "window_s": facts.window_s,
        "elapsed_s": facts.elapsed_s,
        "rate_hz": facts.rate_hz,
        "ticks": facts.ticks,
        "lost_ticks": facts.lost_ticks,
        "ticks_with_waits": sum(1 for t in facts.timeline if t.waiting),
        "lock_queries": facts.lock_queries,
        "interrupted": facts.interrupted,
        "max_waiting": max((t.waiting for t in facts.timeline), default=0),
        "total_wait_ms": round(sum(w.wait_ms for w in facts.waits), 1),
        "wait_ms_by_relation": {k: round(v, 1) for k, v in sorted(by_relation.items(), key=lambda kv: -kv[1])},
        "timeline": [{"t_ms": t.t_ms, "waiting": t.waiting, "relations": t.relations} for t in facts.timeline],
        "chains": [
            {
                "root_pid": e.root_pid,
                "root": describe(facts, e.root_statement, snapshot),
                "root_state": e.root_state,
                "root_xact_start": e.root_xact_start,
                "first_ms": e.first_ms,
                "last_ms": e.last_ms,
                "ticks": e.ticks,
                "max_waiters": e.max_waiters,
                "wait_ms": e.wait_ms,
                "relations": e.relations,
                "modes": e.modes,
                "tree": e.tree,
            }
            for e in facts.episodes[:20]
        ],
        "top_blockers": _top(facts, snapshot, lambda w: w.root or w.blocking),
        "top_waiters": _top(facts, snapshot, lambda w: w.waiting),
        "transactions": [
            {
                "pid": o.pid,
                "usename": o.usename,
                "application_name": o.application_name,
                "xact_start": o.xact_start,
                "age_s": o.max_age_s,
                "state": o.last_state,
                "idle_in_transaction_s": o.max_idle_in_transaction_s,
                "holds_xid": o.holds_xid,
                "held_locks": o.held_locks,
                "blocked_others_ms": o.blocked_ms,
                **{k: v for k, v in describe(facts, o.statement, snapshot).items() if k != "statement"},
            }
            # Waiters are observed too (their transaction may be young): list only
            # the ones past a threshold, or that held others up.
            for o in [
                o
                for o in facts.transactions
                if o.max_age_s >= min(facts.long_transaction_s, facts.idle_in_transaction_s) or o.blocked_ms > 0
            ][:50]
        ],
        "deadlocks": facts.deadlocks[:20],
        "lock_timeouts": facts.lock_timeouts[:20],
    }


def locks_section(snapshot: Snapshot) -> dict | None:
    """The report's `locks` key: {"sample": ..., "log": ...}, each None when absent; None
    when there are no lock facts at all."""
    if snapshot.lock_samples is None and snapshot.lock_log is None:
        return None
    return {
        "sample": facts_section(snapshot.lock_samples, snapshot) if snapshot.lock_samples else None,
        "log": facts_section(snapshot.lock_log, snapshot) if snapshot.lock_log else None,
    }


def lock_findings(snapshot: Snapshot) -> list:

    return prioritise(run_checks(snapshot, only=set(ids(family="locks"))))


def locks_result(snapshot: Snapshot) -> dict:
    """What `queryaudit locks --json` writes."""
    return {
        "target": {"database": snapshot.server.database, "server_version_num": snapshot.server.version_num},
        "errors": [{"stage": e.stage, "message": e.message} for e in snapshot.errors],
        "locks": locks_section(snapshot),
        "findings": [f.to_dict() for f in lock_findings(snapshot)],
    }


# -- terminal ----------------------------------------------------------------------------
def _line(node: dict) -> str:
    who = f"pid {node['pid']}"
    if node.get("mode"):
        obj = node.get("relation") or node.get("locktype")
        row = f" row {node['row']}" if node.get("row") else ""
        waited = f" for {node['waiting_ms'] / 1000:.1f} s" if node.get("waiting_ms") is not None else ""
        head = f"{who} waits{waited}: {node['mode']} on {node.get('locktype')} {obj}{row}"
    else:
        age = f", transaction open {node['xact_age_s']:.1f} s" if node.get("xact_age_s") is not None else ""
        head = f"{who} ({node.get('state') or node.get('backend_type') or '?'}{age})"
    qid = f" [queryid {node['queryid']}]" if node.get("queryid") else ""
    return f"{head}: {short(node.get('query'), 90)}{qid}"


def print_section(section: dict, console, title: str) -> None:

    if section["source"] == "sample":
        lost = section.get("lost_ticks")  # absent from reports written before it was counted
        console.print(
            Text(
                f"{title}: {section['elapsed_s']:.1f} s at {section['rate_hz']:g} Hz, "
                f"{section['ticks']} samples"
                f"{f' ({lost} lost: slower than the sampler statement_timeout)' if lost else ''}"
                f", {section['ticks_with_waits']} with lock waits "
                f"(at most {section['max_waiting']} sessions waiting), "
                f"{section['total_wait_ms'] / 1000:.1f} s waited in total"
                f"{' (interrupted)' if section['interrupted'] else ''}"
            )
        )
    else:
        console.print(
            Text(
                f"{title}: {sum(b['waits'] for b in section['top_waiters'])} logged lock waits, "
                f"{len(section['deadlocks'])} deadlocks, {len(section['lock_timeouts'])} lock timeouts"
            )
        )
    for chain in section["chains"][:5]:

        def add(branch, node):
            for child in node.get("children", []):
                add(branch.add(Text(_line(child))), child)

        tree = Tree(
            Text(
                f"chain on {', '.join(chain['relations']) or '?'}: {chain['wait_ms'] / 1000:.1f} s waited, "
                f"up to {chain['max_waiters']} waiting — root " + _line(chain["tree"] or {"pid": chain["root_pid"]})
            )
        )
        add(tree, chain["tree"] or {})
        console.print(tree)
    if section["top_blockers"]:
        table = Table(title="Top blockers (root of the chains)", title_justify="left")
        for col in ("wait caused", "relations", "modes", "queryid", "statement"):
            table.add_column(col)
        for b in section["top_blockers"]:
            table.add_row(
                f"{b['wait_ms'] / 1000:.1f} s",
                Text(", ".join(b["relations"])),
                ", ".join(b["modes"]),
                b["queryid"] or "",
                Text(" ".join((b["query"] or "?").split())[:80]),
            )
        console.print(table)
    if section["transactions"]:
        table = Table(title="Open transactions past the threshold", title_justify="left")
        for col in ("pid", "age", "state", "idle", "blocked others", "last statement"):
            table.add_column(col)
        for t in section["transactions"][:10]:
            table.add_row(
                str(t["pid"]),
                f"{t['age_s']:.1f} s",
                t["state"] or "?",
                f"{t['idle_in_transaction_s']:.1f} s",
                f"{t['blocked_others_ms'] / 1000:.1f} s",
                Text(" ".join((t["query"] or "?").split())[:70]),
            )
        console.print(table)
    for d in section["deadlocks"][:5]:
        console.print(
            Text(
                f"deadlock at {d.get('timestamp')}: {d.get('relation') or '?'}: "
                + "; ".join(" ".join((p.get("query") or "?").split())[:60] for p in d.get("processes", []))
            )
        )


def print_locks(result: dict, console) -> None:
    section = result["locks"] or {}
    for name, title in (("sample", "Lock sample"), ("log", "Lock waits in the log")):
        if section.get(name):
            print_section(section[name], console, title)
    for error in result["errors"]:
        console.print(Text(f"partial: {error['stage']}: {error['message']}"))
    if not result["findings"]:
        console.print("No lock contention, long or idle transaction found.")
    for f in result["findings"]:
        console.print(Text(f"[{f['severity']}] {f['check']}: {f['title']}"))
        saving = f.get("predicted_saving") or {}
        if saving.get("share_of_total_time"):
            console.print(
                Text(
                    f"    predicted saving: {saving['share_of_total_time']:.1%} of database time "
                    f"({(saving.get('total_ms') or 0) / 1000:.1f} s of sampled lock wait)"
                )
            )
        if f.get("advice"):
            console.print(Text(f"    {f['advice']}"))
        if f.get("fix_sql"):
            console.print(Text(f"    fix: {f['fix_sql']}"))
