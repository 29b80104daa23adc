"""The advisor as a collection stage: it re-plans in its own read-only session (HypoPG
state never leaks into plan capture) and stores an IndexAdvice in the snapshot.

Steps: baseline generic plan of each top statement; candidates from its SQL and its
captured plan; each candidate verified alone (HypoPG: re-plan every statement on its
table, keep it where it removes >= threshold of the cost; without HypoPG: an estimate
from the baseline plan and pg_stats); one set chosen for the workload; with HypoPG the
whole set re-planned together for the workload's before/after cost; with --verify-real
each chosen index built for real in a rolled-back transaction and timed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import psycopg

from queryaudit.advisor import candidates as cand
from queryaudit.advisor import costing, ddl, select
from queryaudit.advisor.model import IndexAdvice, ProposedIndex, StatementEffect
from queryaudit.advisor.search import search_indexes
from queryaudit.connect import SessionLimits, session
from queryaudit.errors import AuditError
from queryaudit.plans.explain import Planner
from queryaudit.plans.logged import log_only_statements
from queryaudit.snapshot import Snapshot
from queryaudit.sql import quote_qualified, statement_kind

# The share of the cost of the statements a step changes that it must remove: below it
# the gain is within the noise of a planner estimate, not worth an index.
DEFAULT_THRESHOLD = 0.05
# Without --max-indexes: this many without a budget; with a budget, the budget decides.
DEFAULT_MAX_INDEXES = 10
# Without HypoPG a candidate counts for a statement only when its estimate removes this
# share of the statement's cost: an estimate is too rough for smaller cuts.
ESTIMATE_MIN_FRACTION = 0.5
# --verify-real keeps an index when a statement runs at least this much faster for real:
# below it a timing is within the noise of a warm cache.
REAL_MIN_FASTER = 0.2


@dataclass
class AdvisorOptions:
    enabled: bool = True
    statements: int = 50  # top statements by total time the advisor considers
    threshold: float = DEFAULT_THRESHOLD  # fraction of the changed statements' cost a step must remove
    budget_bytes: int | None = None  # storage for the whole set, in bytes (see units.parse_size)
    max_indexes: int | None = None  # None: DEFAULT_MAX_INDEXES without a budget, no count limit with one
    verify_real: bool = False  # scratch/staging only: build each chosen index for real
    max_seconds: float = 300.0  # stop searching after this long (what was chosen counts)


def _max_indexes(options: AdvisorOptions) -> int:
    if options.max_indexes is not None:
        return options.max_indexes
    return DEFAULT_MAX_INDEXES if options.budget_bytes is None else 1000


def _statements(snapshot: Snapshot, limit: int):
    # Statements seen only in the server log (--log) compete on their logged time.
    ranked = sorted(
        snapshot.statements + log_only_statements(snapshot), key=lambda s: s.total_exec_time_ms, reverse=True
    )
    return [s for s in ranked if statement_kind(s.query) in ("read", "dml")][:limit]


def advise(
    conn: psycopg.Connection,
    snapshot: Snapshot,
    options: AdvisorOptions = AdvisorOptions(),
    real_conn: psycopg.Connection | None = None,
) -> IndexAdvice:
    started = time.monotonic()
    version = costing.hypopg_version(conn)
    advice = IndexAdvice(
        method="hypothetical" if version else "none",
        hypopg_version=version,
        install_hint=None if version else costing.install_hint(snapshot),
        threshold=options.threshold,
        max_indexes=_max_indexes(options),
        budget_bytes=options.budget_bytes,
    )
    planner = Planner(conn)
    try:
        _advise(conn, planner, snapshot, options, real_conn, advice, started)
    finally:
        planner.close()
    advice.duration_ms = round((time.monotonic() - started) * 1000, 1)
    return advice


def _advise(
    conn, planner: Planner, snapshot: Snapshot, options: AdvisorOptions, real_conn, advice: IndexAdvice, started: float
) -> None:
    version = advice.hypopg_version
    baseline: dict[str, tuple[float, dict]] = {}
    statements = []
    sets: dict[str, list[costing.ValueSet]] = {}
    for s in _statements(snapshot, options.statements):
        try:
            sets[s.queryid] = costing.value_sets(snapshot, s.queryid, s.query)
            baseline[s.queryid] = costing.workload_cost(planner, sets[s.queryid])
            statements.append(s)
        except psycopg.Error as exc:
            advice.notes.append(f"{s.queryid}: not planned ({str(exc).strip().splitlines()[0]})")
            advice.reject("statement", s.query, exc, queryid=s.queryid)
    advice.statements_considered = len(statements)
    generic = [q for q, v in sets.items() if q in baseline and any(x.values is None for x in v)]
    if generic:
        advice.notes.append(
            f"{len(generic)} of {len(statements)} statements costed on their generic plan: "
            f"no parameter value known ({', '.join(generic[:5])}{', ...' if len(generic) > 5 else ''})"
        )
    advice.costed_on = {q: v[0].source for q, v in sets.items() if q in baseline}
    candidates, touched, advice.unresolved = cand.workload_candidates(snapshot, statements)
    for q, why in advice.unresolved.items():
        advice.notes.append(f"{q}: names not all resolved, candidates from its SQL may be missing ({why})")
    weights = select.statement_weights(snapshot, [s.queryid for s in statements])
    weights.update({s.queryid: s.total_exec_time_ms for s in statements if s.queryid not in weights})
    if version:
        chosen, effects = _extend(
            conn, planner, sets, snapshot, statements, baseline, candidates, options, advice, started
        )
    else:
        chosen = _estimated(snapshot, statements, baseline, candidates, touched, options, advice, weights)
        owners = select.attribute(chosen, weights)
        effects = [
            [(q, *e.costs[q], weights.get(q, 0.0) * f) for q, f in owners[n].items()] for n, e in enumerate(chosen)
        ]
    taken = {i.name for i in snapshot.indexes}
    built: dict[str, cand.Candidate] = {}
    due = {e.candidate.table for e in chosen if cand.analyze_due(snapshot.table(e.candidate.table))}
    for e, found in zip(chosen, effects, strict=True):
        c = e.candidate
        name = select.index_name(c, taken)
        stmt_effects = [
            StatementEffect(
                queryid=q,
                cost_before=round(before, 2),
                cost_after=round(after, 2),
                fraction_removed=round(1 - after / before, 4) if before else 0.0,
                saving_ms=round(saving, 3),
            )
            for q, before, after, saving in sorted(found, key=lambda x: -x[3])
        ]
        if not stmt_effects:
            continue
        built[name] = c
        fix = select.create_sql(c, name, snapshot=snapshot)
        if c.table in due:  # the planner's row counts for this table are guesses until it is analyzed
            fix = f"ANALYZE {quote_qualified(*ddl.split_table(c.table))};\n{fix}"
        advice.proposed.append(
            ProposedIndex(
                table=c.table,
                name=name,
                columns=list(c.columns),
                include=list(c.include),
                predicate=c.predicate,
                descending=list(c.descending),
                create_sql=fix,
                reasons=sorted(c.reasons),
                size_bytes=e.size_bytes,
                size_source=e.size_source,
                write_penalty_ms=round(e.write_penalty_ms, 3),
                verification=advice.method,
                statements=stmt_effects,
                analyze_due=c.table in due,
                saving_ms=round(sum(x.saving_ms for x in stmt_effects), 3),
            )
        )
    for table in sorted(due & {p.table for p in advice.proposed}):
        advice.notes.append(
            f"{table} has never been analyzed: its row count is estimated from its size on disk; "
            f"ANALYZE is due (the fix SQL starts with it)"
        )
    if real_conn is not None and advice.proposed:
        _verify_real(real_conn, snapshot, statements, advice, built, max(options.threshold, REAL_MIN_FASTER))
    advice.total_size_bytes = sum(p.size_bytes for p in advice.proposed)
    advice.planner_calls = planner.plans


def _workload(snapshot: Snapshot, statements, baseline) -> select.Workload:
    w = select.Workload(weight={}, baseline={}, indexable={}, attributes={})
    for s in statements:
        cost = baseline[s.queryid][0]
        if cost <= 0:
            continue
        w.baseline[s.queryid] = cost
        w.weight[s.queryid] = s.total_exec_time_ms / cost
        indexable, attributes = w.indexable.setdefault(s.queryid, {}), w.attributes.setdefault(s.queryid, {})
        for use in cand.all_uses(s, snapshot).tables:
            if cand.table_rows(snapshot, use.table) < cand.MIN_TABLE_ROWS:
                continue
            cols = {p.column for p in use.predicates} | set(use.sort) | set(use.group)
            indexable.setdefault(use.table, set()).update(cols)
            w.expressions.setdefault(use.table, set()).update(p.column for p in use.predicates if p.expression)
            names = {c.name for c in snapshot.table(use.table).columns}
            attributes.setdefault(use.table, set()).update(c for c in cols | (use.referenced or set()) if c in names)
    for table in {t for per in w.indexable.values() for t in per}:
        w.write_ms[table] = select.write_penalty_ms(snapshot, table)
    w.parents = {t.qualified_name: t.partition_of for t in snapshot.tables if t.partition_of}
    return w


def _seeds(snapshot: Snapshot, w: select.Workload, candidates) -> list[cand.Candidate]:
    """Extend's start: one single-column index per indexable column, plus the composite,
    partial, expression and covering candidates the SQL suggests (a step may add those)."""
    existing: dict[str, list] = {}
    for i in snapshot.indexes:
        existing.setdefault(i.table, []).append(i)
    singles = {}
    for q, per in w.indexable.items():
        for table, cols in per.items():
            for col in cols:
                expression = (col,) if col in w.expressions.get(table, ()) else ()
                c = singles.setdefault(
                    (table, col),
                    cand.Candidate(table, (col,), equality_prefix=1, reasons={"extend"}, expressions=expression),
                )
                c.queryids.add(q)
    out = [c for c in singles.values() if not any(cand.covered_by(c, i) for i in existing.get(c.table, []))]
    keys = {c.key for c in out}
    return out + [
        c for c in candidates if c.key not in keys and c.table in {t for per in w.indexable.values() for t in per}
    ]


def _extend(
    conn,
    planner,
    sets,
    snapshot: Snapshot,
    statements,
    baseline,
    candidates,
    options: AdvisorOptions,
    advice: IndexAdvice,
    started: float,
):
    """Extend with HypoPG; then the whole set planned together for the report: each
    statement's final cost, and which chosen index its plan uses."""
    w = _workload(snapshot, statements, baseline)
    seeds = _seeds(snapshot, w, candidates)
    advice.candidates_considered = len(seeds)
    by_id = {s.queryid: s for s in statements}
    with costing.Hypothetical(conn) as hypo:
        whatif = costing.WhatIf(hypo, {q: sets[q] for q in w.baseline}, planner, on_reject=advice.reject)
        search = select.Extend(
            w,
            whatif.cost,
            whatif.size,
            options.budget_bytes,
            advice.max_indexes,
            options.threshold,
            deadline=started + options.max_seconds,
        )
        config = search_indexes(search, seeds)
        advice.candidates_verified = len(search.sizes)
        if search.stopped_early:
            advice.notes.append(f"search stopped after {options.max_seconds:.0f} s: the set chosen so far is shown")
        config = search.reorder(config, lambda table, column: cand.selectivity(snapshot, table, column))
        config, final, users, dropped = final_set(whatif, config, list(w.baseline))
        for c in dropped:
            advice.notes.append(f"{c.table} ({', '.join(c.columns)}): chosen, but no final plan uses it: left out")
    chosen, effects = [], []
    before = after = 0.0
    for q, cost in w.baseline.items():
        new = min(cost, final[q][0]) if final[q] else cost
        before += by_id[q].calls * cost
        after += by_id[q].calls * new
    advice.workload_cost_before, advice.workload_cost_after = round(before, 2), round(after, 2)
    for c in config:
        found = []
        for q in users[c.key]:
            cost, new = w.baseline[q], min(w.baseline[q], final[q][0])
            share = sum(1 for k in users if q in users[k])  # a statement several indexes serve: split its saving
            found.append((q, cost, new, by_id[q].total_exec_time_ms * (1 - new / cost) / share))
        if not found:
            advice.notes.append(f"{c.table} ({', '.join(c.columns)}): chosen, but no final plan uses it: left out")
            continue
        chosen.append(
            select.Evaluated(
                c, size_bytes=search.size(c), size_source="hypopg", write_penalty_ms=w.write_ms.get(c.table, 0.0)
            )
        )
        effects.append(found)
    return chosen, effects


def final_set(whatif: costing.WhatIf, config: list, queryids: list[str]):
    """The chosen set planned together, each statement once. An index no final plan uses
    (a later choice serves its statements better) is dropped and the rest planned
    again, until every index left serves a statement. Returns (set, plans, users of
    each index by key, dropped)."""
    dropped = []
    while True:
        final = {q: whatif.plan(q, config) for q in queryids}
        oids = {c.key: whatif.oid(c) for c in config}
        users: dict[tuple, list[str]] = {c.key: [] for c in config}
        for q, planned in final.items():
            if planned is None:
                continue
            text = json.dumps(planned[1])
            for c in config:
                if oids[c.key] is not None and f"<{oids[c.key]}>" in text:
                    users[c.key].append(q)
        unused = [c for c in config if not users[c.key]]
        if not unused:
            return config, final, users, dropped
        dropped += unused
        config = [c for c in config if users[c.key]]


def _estimated(
    snapshot: Snapshot, statements, baseline, candidates, touched, options: AdvisorOptions, advice: IndexAdvice, weights
) -> list[select.Evaluated]:
    """Without HypoPG: each candidate's saving estimated from the baseline plan and pg_stats."""
    advice.candidates_considered = len(candidates)
    on_table: dict[str, list] = {}
    for s in statements:
        for t in touched.get(s.queryid, ()):
            on_table.setdefault(t, []).append(s)
    indexable = _workload(snapshot, statements, baseline).indexable
    evaluated = []
    for c in candidates:
        e = select.Evaluated(c, size_bytes=select.estimate_size(snapshot, c, _predicate_fraction(snapshot, c)))
        for s in on_table.get(c.table, []):
            if c.columns[0] not in indexable.get(s.queryid, {}).get(c.table, ()):
                continue  # the statement cannot lead with this index's first column
            fraction = costing.estimated_fraction(baseline[s.queryid][1], c, snapshot)
            if fraction >= ESTIMATE_MIN_FRACTION and baseline[s.queryid][0] * fraction >= select.MIN_COST_SAVED:
                e.fractions[s.queryid] = fraction
                e.costs[s.queryid] = (baseline[s.queryid][0], baseline[s.queryid][0] * (1 - fraction))
        evaluated.append(e)
        advice.candidates_verified += 1
    written = {t: select.write_penalty_ms(snapshot, t) for t in {e.candidate.table for e in evaluated}}
    for e in evaluated:
        e.write_penalty_ms = written[e.candidate.table] * _predicate_fraction(snapshot, e.candidate)
    return select.choose(evaluated, weights, options.budget_bytes, advice.max_indexes)


def _predicate_fraction(snapshot: Snapshot, c: cand.Candidate) -> float:
    return cand._constant_fraction(snapshot, c.table, c.predicate) if c.predicate else 1.0


def _verify_real(
    conn, snapshot: Snapshot, statements, advice: IndexAdvice, built: dict[str, cand.Candidate], threshold: float
) -> None:
    by_id = {s.queryid: s for s in statements}  # the advised statements, log-only ones included
    kept = []
    for p in advice.proposed:
        runs = []
        for effect in p.statements[: costing.REAL_STATEMENTS_PER_INDEX]:
            s = by_id.get(effect.queryid)
            if s is None:
                continue
            r = costing.runnable(conn, snapshot, s.queryid, s.query, {p.table})
            if r:
                runs.append((s.queryid, r[0], r[1]))
        if not runs:
            advice.notes.append(f"{p.name}: no statement could be run with values; kept unverified for real")
            kept.append(p)
            continue
        try:
            timings = costing.measure_real(conn, built[p.name], runs)
        except psycopg.Error as exc:
            advice.notes.append(f"{p.name}: real verification failed ({str(exc).strip().splitlines()[0]})")
            advice.reject("candidate", p.create_sql, exc, table=p.table)
            kept.append(p)
            continue
        faster = False
        for effect in p.statements:
            if effect.queryid in timings:
                effect.ms_before, effect.ms_after = (round(v, 3) for v in timings[effect.queryid])
                if effect.ms_before > 0 and (effect.ms_before - effect.ms_after) / effect.ms_before >= threshold:
                    faster = True
        if faster:
            p.verification = "real"
            kept.append(p)
        else:
            advice.notes.append(f"{p.name}: built for real, no statement got {threshold:.0%} faster: dropped")
    advice.proposed = kept
    advice.method = "real"


def run_stage(dsn: str, limits: SessionLimits, options: AdvisorOptions, snapshot: Snapshot) -> None:
    """Collection stage body: its own read-only session (a writable one only for --verify-real)."""
    if options.verify_real and snapshot.server.in_recovery:
        raise AuditError(
            "--verify-real builds indexes and cannot run on a hot standby: "
            "point it at a writable scratch or staging copy"
        )
    with session(dsn, limits) as conn:
        if options.verify_real:
            with session(dsn, limits, read_only=False) as real_conn:
                snapshot.index_advice = advise(conn, snapshot, options, real_conn)
        else:
            snapshot.index_advice = advise(conn, snapshot, options)
    advice = snapshot.index_advice
    snapshot.extras["index_advisor"] = {
        "method": advice.method,
        "hypopg_version": advice.hypopg_version,
        "install_hint": advice.install_hint,
        "proposed": len(advice.proposed),
        "statements_considered": advice.statements_considered,
        "duration_ms": advice.duration_ms,
    }


def stage(dsn: str, limits: SessionLimits, options: AdvisorOptions):
    """(name, fn(conn, snapshot)) for CollectOptions.stages."""
    return "index advisor", lambda _conn, snapshot: run_stage(dsn, limits, options, snapshot)
