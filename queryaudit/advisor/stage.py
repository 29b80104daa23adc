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

import time
from dataclasses import dataclass

import psycopg

from queryaudit.advisor import candidates as cand
from queryaudit.advisor import select, verify
from queryaudit.advisor.model import IndexAdvice, ProposedIndex, StatementEffect
from queryaudit.connect import SessionLimits, session
from queryaudit.errors import AuditError
from queryaudit.snapshot import Snapshot
from queryaudit.sql import statement_kind

DEFAULT_THRESHOLD = 0.5


@dataclass
class AdvisorOptions:
    enabled: bool = True
    statements: int = 50  # top statements by total time the advisor considers
    threshold: float = DEFAULT_THRESHOLD  # fraction of a statement's cost an index must remove
    budget_mb: float | None = None
    max_indexes: int = 10
    verify_real: bool = False  # scratch/staging only: build each chosen index for real
    max_seconds: float = 300.0  # stop verifying candidates after this long (what was verified counts)


def _statements(snapshot: Snapshot, limit: int):
    from queryaudit.collect.logged import log_only_statements

    # Statements seen only in the server log (--log) compete on their logged time.
    ranked = sorted(snapshot.statements + log_only_statements(snapshot), key=lambda s: s.total_exec_time_ms,
                    reverse=True)
    return [s for s in ranked if statement_kind(s.query) in ("read", "dml")][:limit]


def advise(conn: psycopg.Connection, snapshot: Snapshot, options: AdvisorOptions = AdvisorOptions(),
           real_conn: psycopg.Connection | None = None) -> IndexAdvice:
    started = time.monotonic()
    version = verify.hypopg_version(conn)
    advice = IndexAdvice(method="hypothetical" if version else "none", hypopg_version=version,
                         install_hint=None if version else verify.install_hint(snapshot),
                         threshold=options.threshold, max_indexes=options.max_indexes,
                         budget_bytes=int(options.budget_mb * 1024 * 1024) if options.budget_mb else None)
    baseline: dict[str, tuple[float, dict]] = {}
    statements = []
    for s in _statements(snapshot, options.statements):
        try:
            baseline[s.queryid] = verify.generic_cost(conn, s.query)
            statements.append(s)
        except psycopg.Error as exc:
            advice.notes.append(f"{s.queryid}: not planned ({str(exc).strip().splitlines()[0]})")
    advice.statements_considered = len(statements)
    candidates, touched = cand.workload_candidates(snapshot, statements)
    advice.candidates_considered = len(candidates)
    on_table: dict[str, list] = {}
    for s in statements:
        for t in touched.get(s.queryid, ()):
            on_table.setdefault(t, []).append(s)

    evaluated: list[select.Evaluated] = []
    if version:
        with verify.Hypothetical(conn) as hypo:
            for c in candidates:
                if time.monotonic() - started > options.max_seconds:
                    advice.notes.append(f"verification stopped after {options.max_seconds:.0f} s "
                                        f"({advice.candidates_verified} of {len(candidates)} candidates)")
                    break
                evaluated.append(_verify_hypothetical(hypo, conn, c, on_table.get(c.table, []), baseline,
                                                      options.threshold))
                advice.candidates_verified += 1
    else:
        for c in candidates:
            e = select.Evaluated(c, size_bytes=select.estimate_size(snapshot, c, _predicate_fraction(snapshot, c)))
            for s in on_table.get(c.table, []):
                fraction = verify.estimated_fraction(baseline[s.queryid][1], c, snapshot)
                if fraction >= options.threshold and baseline[s.queryid][0] * fraction >= select.MIN_COST_SAVED:
                    e.fractions[s.queryid] = fraction
                    e.costs[s.queryid] = (baseline[s.queryid][0], baseline[s.queryid][0] * (1 - fraction))
            evaluated.append(e)
            advice.candidates_verified += 1
    written = {t: select.write_penalty_ms(snapshot, t) for t in {e.candidate.table for e in evaluated}}
    for e in evaluated:
        e.write_penalty_ms = written[e.candidate.table] * _predicate_fraction(snapshot, e.candidate)

    weights = select.statement_weights(snapshot, [s.queryid for s in statements])
    weights.update({s.queryid: s.total_exec_time_ms for s in statements if s.queryid not in weights})
    chosen = select.choose(evaluated, weights, advice.budget_bytes, options.max_indexes)
    if version and chosen:
        _workload_cost(conn, chosen, statements, baseline, advice)
    owners = select.attribute(chosen, weights)
    taken = {i.name for i in snapshot.indexes}
    built: dict[str, cand.Candidate] = {}
    for n, e in enumerate(chosen):
        c = e.candidate
        name = select.index_name(c, taken)
        effects = [StatementEffect(queryid=q, cost_before=round(e.costs[q][0], 2), cost_after=round(e.costs[q][1], 2),
                                   fraction_removed=round(f, 4), saving_ms=round(weights.get(q, 0.0) * f, 3))
                   for q, f in sorted(owners[n].items(), key=lambda x: -weights.get(x[0], 0.0) * x[1])]
        if not effects:
            continue
        built[name] = c
        advice.proposed.append(ProposedIndex(
            table=c.table, name=name, columns=list(c.columns), include=list(c.include), predicate=c.predicate,
            create_sql=select.create_sql(c, name) + ";", reasons=sorted(c.reasons), size_bytes=e.size_bytes,
            size_source=e.size_source, write_penalty_ms=round(e.write_penalty_ms, 3),
            verification=advice.method, statements=effects, saving_ms=round(sum(x.saving_ms for x in effects), 3)))
    if real_conn is not None and advice.proposed:
        _verify_real(real_conn, snapshot, advice, built, options.threshold)
    advice.duration_ms = round((time.monotonic() - started) * 1000, 1)
    return advice


def _predicate_fraction(snapshot: Snapshot, c: cand.Candidate) -> float:
    return cand._constant_fraction(snapshot, c.table, c.predicate) if c.predicate else 1.0


def _verify_hypothetical(hypo: verify.Hypothetical, conn, c: cand.Candidate, statements, baseline,
                         threshold: float) -> select.Evaluated:
    e = select.Evaluated(c, size_source="hypopg")
    try:
        oid, e.size_bytes = hypo.create(c)
    except psycopg.Error:
        return e  # HypoPG refuses some definitions (e.g. an expression it cannot type): no evidence, no proposal
    try:
        for s in statements:
            before = baseline[s.queryid][0]
            try:
                after, _ = verify.generic_cost(conn, s.query)
            except psycopg.Error:
                continue
            if before > 0 and (before - after) / before >= threshold and before - after >= select.MIN_COST_SAVED:
                e.fractions[s.queryid] = (before - after) / before
                e.costs[s.queryid] = (before, after)
    finally:
        hypo.drop(oid)
    return e


def _workload_cost(conn, chosen, statements, baseline, advice: IndexAdvice) -> None:
    """The whole chosen set together, every statement re-planned: calls x cost before and after."""
    before = after = 0.0
    with verify.Hypothetical(conn) as hypo:
        for e in chosen:
            try:
                hypo.create(e.candidate)
            except psycopg.Error:
                pass
        for s in statements:
            cost = baseline[s.queryid][0]
            try:
                new, _ = verify.generic_cost(conn, s.query)
            except psycopg.Error:
                new = cost
            before += s.calls * cost
            after += s.calls * min(cost, new)
    advice.workload_cost_before, advice.workload_cost_after = round(before, 2), round(after, 2)


def _verify_real(conn, snapshot: Snapshot, advice: IndexAdvice, built: dict[str, cand.Candidate],
                 threshold: float) -> None:
    by_id = {s.queryid: s for s in snapshot.statements}
    kept = []
    for p in advice.proposed:
        runs = []
        for effect in p.statements[:verify.REAL_STATEMENTS_PER_INDEX]:
            s = by_id[effect.queryid]
            r = verify.runnable(conn, snapshot, s.queryid, s.query, {p.table})
            if r:
                runs.append((s.queryid, r[0], r[1]))
        if not runs:
            advice.notes.append(f"{p.name}: no statement could be run with values; kept unverified for real")
            kept.append(p)
            continue
        try:
            timings = verify.measure_real(conn, built[p.name], runs)
        except psycopg.Error as exc:
            advice.notes.append(f"{p.name}: real verification failed ({str(exc).strip().splitlines()[0]})")
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
        raise AuditError("--verify-real builds indexes and cannot run on a hot standby: "
                         "point it at a writable scratch or staging copy")
    with session(dsn, limits) as conn:
        if options.verify_real:
            with session(dsn, limits, read_only=False) as real_conn:
                snapshot.index_advice = advise(conn, snapshot, options, real_conn)
        else:
            snapshot.index_advice = advise(conn, snapshot, options)
    advice = snapshot.index_advice
    snapshot.extras["index_advisor"] = {
        "method": advice.method, "hypopg_version": advice.hypopg_version, "install_hint": advice.install_hint,
        "proposed": len(advice.proposed), "statements_considered": advice.statements_considered,
        "duration_ms": advice.duration_ms}


def stage(dsn: str, limits: SessionLimits, options: AdvisorOptions):
    """(name, fn(conn, snapshot)) for CollectOptions.stages."""
    return "index advisor", lambda _conn, snapshot: run_stage(dsn, limits, options, snapshot)
