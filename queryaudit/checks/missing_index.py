"""A statement that would be much cheaper with an index that does not exist.

## What it detects
The indexes the index advisor chose for the workload (`snapshot.index_advice`, written
by the advisor stage of collection). The advisor derives candidates from each top
statement's SQL (equality, IN, IS NULL, join keys, ranges, ORDER BY by name, position or
alias, mixed directions as DESC key columns, GROUP BY) and its captured plan (sequential
scans that discard most rows by filter, sorts), plus INCLUDE, partial and expression
candidates. With HypoPG it chooses the set the way Extend does (Schlosser et al. 2019):
start from single columns, at each step add an index or widen a chosen one by one column,
taking the step with the most workload benefit per byte, where the benefit is the whole
workload re-planned with the whole set minus the write cost on written tables; it stops
at the budget (`--index-budget 500MB`, HypoPG's own size estimates, MB = 10^6 bytes) or
when no step cuts the cost of the statements it changes by the threshold. Without HypoPG
each candidate's saving is estimated from the plan and pg_stats and a greedy choice
keeps the best. A table never analyzed is sized from its pages on disk and its fix
starts with ANALYZE; a partitioned table gets the ON ONLY / CONCURRENTLY per partition /
ATTACH PARTITION form.

Each proposal is then sized on the values the workload runs: for every statement whose
plan capture kept a value set close to the workload (pg_stat_statements per call,
`queries[].workload_match`), the statement with those values is planned with and without
the index (HypoPG; without it, the share of rows its analyzed scan keeps). A rare value
the workload asks for (`status = 'failed'`, 0.25 % of the table) is sized on that value;
a proposal that no statement uses with its own values (a range keeping 98 % of the
table) is dropped. The evidence (`workload_sizing`) lists the values and the costs.

## Why it matters
A lookup without a suitable index reads the whole table (or sorts it) on every call; the
time grows with the table. The predicted saving is the summed share of database time of
the statements the index speeds up, times the fraction of their cost it removes.

## How to fix
Create the index concurrently (no write lock; outside a transaction block). An
expression index gets its statistics at the next ANALYZE of the table. Without HypoPG
the proposal is an estimate: install HypoPG to verify it, or verify it for real on a
staging copy with `queryaudit advise-indexes --verify-real`.

## Example
```sql
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_customer_id_idx ON public.orders (customer_id);
-- partitioned: the parent's index first (catalog only), then each partition's, attached
CREATE INDEX IF NOT EXISTS events_blog_id_idx ON ONLY public.events (blog_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS events_p0_blog_id_idx ON public.events_p0 (blog_id);
ALTER INDEX public.events_blog_id_idx ATTACH PARTITION public.events_p0_blog_id_idx;
```

## Thresholds
Severity high when the index saves at least 10 % of total database time, medium from
2 %, low below (the one scale of every check, `findings.severity_from_saving`). The advisor's threshold
(default 5 % of the cost of the statements a step changes), budget and maximum count are its options
(`queryaudit advise-indexes --help`). Confidence high when verified (HypoPG or for real), low when
estimated without HypoPG.

## Known false positives
HypoPG compares planner costs: the generic plan, or the plan for the workload's values
when the plan capture found them; a statement whose values vary widely gains more for
some than for others. Without HypoPG the saving comes from the
table's statistics and is only an estimate.
"""

from __future__ import annotations

from queryaudit.checks import declare
from queryaudit.checks._workload_sizing import plan_sizing
from queryaudit.findings import Finding, Verification, saving_from_share, severity_from_saving
from queryaudit.snapshot import Snapshot

ID = "missing-index"
TITLE = "Missing index"
QUERY_CHARS = 300
CHECK = declare(ID, TITLE, family="workload", fix="create-index", thresholds=("QUERY_CHARS",))


def run(snapshot: Snapshot) -> list[Finding]:
    advice = snapshot.index_advice
    if advice is None:
        return []
    by_id = {s.queryid: s for s in snapshot.statements}
    findings = []
    sizings = snapshot.extras.get("index_sizing") or {}
    for proposed in advice.proposed:
        statements = [by_id[e.queryid] for e in proposed.statements if e.queryid in by_id]
        statement_ms = sum(s.total_exec_time_ms for s in statements)
        sized = {r["queryid"]: {"method": "hypopg", **r} for r in sizings.get(proposed.name) or []}
        for e in proposed.statements:  # without HypoPG: the representative plan's own scan
            if (
                e.queryid not in sized
                and proposed.columns
                and (found := plan_sizing(snapshot, proposed.table, proposed.columns[0], e.queryid)) is not None
            ):
                sized[e.queryid] = found
        fractions = {e.queryid: _fraction(e, sized.get(e.queryid)) for e in proposed.statements}
        if sized and not any(fractions.values()):
            continue  # with the values the workload runs, no statement would use it
        saving_ms = (
            sum(by_id[q].total_exec_time_ms * f for q, f in fractions.items() if q in by_id)
            if sized
            else proposed.saving_ms
        )
        saving = saving_from_share(
            statement_ms,
            saving_ms / statement_ms if statement_ms else 0.0,
            snapshot.total_exec_time_ms,
            sum(s.calls for s in statements),
        )
        lead = proposed.statements[0]
        before = {k: v for k, v in (("cost", lead.cost_before), ("ms", lead.ms_before)) if v is not None}
        after = {k: v for k, v in (("cost", lead.cost_after), ("ms", lead.ms_after)) if v is not None}
        # HypoPG's costs with the workload's values replace the generic plan's; an index built
        # and timed for real keeps its measured times, which no estimate beats.
        if lead.queryid in sized and proposed.verification != "real":
            lead_sized = sized[lead.queryid]
            before, after = (
                ({"cost": lead_sized["cost_before"]}, {"cost": lead_sized["cost_after"]})
                if lead_sized["method"] == "hypopg"
                else ({}, {})
            )
        verified = proposed.verification in ("hypothetical", "real")
        detail = {
            "hypothetical": f"HypoPG {advice.hypopg_version}: generic plans re-planned with the index",
            "real": "built for real in a rolled-back transaction, EXPLAIN ANALYZE before and after",
            # HypoPG's install hint is said once, in the report's method section.
            "none": "estimated from the plan and pg_stats, not verified (no HypoPG: see the method section)",
        }[proposed.verification]
        what = (
            ", ".join(proposed.columns)
            + (f" INCLUDE ({', '.join(proposed.include)})" if proposed.include else "")
            + (f" WHERE {proposed.predicate}" if proposed.predicate else "")
        )
        n = len(proposed.statements)
        if sized:
            detail += "; sized on the values the workload runs: " + "; ".join(
                f"{', '.join(map(str, r['values']))}: "
                + (
                    f"HypoPG cost {r['cost_before']:g} -> {r['cost_after']:g}"
                    if r["method"] == "hypopg"
                    else f"its scan keeps {r['rows_kept']:,.0f} of {r['rows_read']:,.0f} rows"
                )
                + ("" if r["uses_index"] else " (not used)")
                for r in sized.values()
            )
        cut = max(fractions.values())
        if proposed.verification == "real":  # built and timed: the title says what was measured
            cut = max(
                (1 - e.ms_after / e.ms_before for e in proposed.statements if e.ms_before and e.ms_after is not None),
                default=cut,
            )
        # 99.9 % is not written as 100 %: the statements still take some time
        cut_text = f"{cut:.0%}" if cut < 0.99 else f"{min(cut, 0.999):.1%}"
        findings.append(
            Finding(
                check=ID,
                severity=severity_from_saving(saving),
                title=f"Index on {proposed.table} ({what}) would cut {n} statement{'s' if n > 1 else ''} "
                f"by {cut_text}" + (" (sized on the workload's values)" if sized else ""),
                table=proposed.table,
                columns=list(proposed.columns),
                queryids=[e.queryid for e in proposed.statements],
                fix_sql=proposed.create_sql,
                predicted_saving=saving,
                confidence="high" if verified else "low",
                effort="index",
                advice=" ".join(
                    filter(
                        None,
                        (
                            f"{proposed.table} has never been analyzed: ANALYZE is due (the fix runs it first)"
                            if proposed.analyze_due
                            else None,
                        ),
                    )
                )
                or None,
                verification=Verification(method=proposed.verification, before=before, after=after, detail=detail),
                key=f"{proposed.table}|{','.join(proposed.columns)}|{','.join(proposed.include)}|"
                f"{proposed.predicate or ''}",
                evidence={
                    "index_name": proposed.name,
                    "include": proposed.include,
                    "predicate": proposed.predicate,
                    "reasons": proposed.reasons,
                    "size_bytes": proposed.size_bytes,
                    "size_source": proposed.size_source,
                    "descending": proposed.descending,
                    "analyze_due": proposed.analyze_due,
                    "write_penalty_ms": proposed.write_penalty_ms,
                    "saving_ms": proposed.saving_ms,
                    "threshold": advice.threshold,
                    # Each statement planned with and without the index for the values its plan
                    # capture found closest to the workload (queryaudit/verify/index_sizing.py).
                    "workload_sizing": list(sized.values()),
                    "statements": [
                        {
                            "queryid": e.queryid,
                            "query": by_id[e.queryid].query[:QUERY_CHARS] if e.queryid in by_id else None,
                            "cost_before": e.cost_before,
                            "cost_after": e.cost_after,
                            "ms_before": e.ms_before,
                            "ms_after": e.ms_after,
                            "fraction_removed": fractions[e.queryid],
                            "saving_ms": e.saving_ms,
                        }
                        for e in proposed.statements
                    ],
                },
            )
        )
    return findings


def _fraction(effect, sized: dict | None) -> float:
    """The statement's share removed: on the workload's values when sized, else the advisor's generic figure."""
    if sized is None:
        return effect.fraction_removed
    return sized["fraction_removed"] if sized["uses_index"] else 0.0
