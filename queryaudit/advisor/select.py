"""Workload-level selection: one set of indexes for the whole top-N workload. Pure.

Greedy on marginal saving, the way Dexter and the AutoAdmin/DB2 advisors do it: a
statement's saving is its total time times the fraction of its cost the best chosen
index removes; an index is worth its marginal saving over what is already chosen,
minus its write penalty. So a composite serving three statements beats three
single-column indexes (it collects three savings for one size), and a second index
whose statements the first already serves adds nothing and is never proposed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from queryaudit.advisor.candidates import Candidate
from queryaudit.snapshot import Snapshot
from queryaudit.sql import quote_ident, quote_table, resolve_tables, statement_kind

# An index must add at least this share of its own stand-alone saving to be chosen.
MIN_MARGINAL_SHARE = 0.2
# One more index adds about this share to the time of each statement writing its table
# (an index entry and its WAL per inserted row or non-HOT update; heap and WAL of the row
# itself and the existing indexes are the rest).
WRITE_SHARE_PER_INDEX = 0.1
# An index must save at least this much planner cost per execution of a statement: halving
# a primary-key lookup (8 -> 4) is a 50 % cut of nothing.
MIN_COST_SAVED = 20.0
NAME_MAX = 63  # NAMEDATALEN - 1


@dataclass
class Evaluated:
    """A candidate with what verification found: fraction of each statement's cost removed."""

    candidate: Candidate
    fractions: dict[str, float] = field(default_factory=dict)  # queryid -> fraction removed (>= threshold)
    costs: dict[str, tuple[float, float]] = field(default_factory=dict)  # queryid -> (before, after)
    size_bytes: int = 0
    size_source: str = "estimate"
    write_penalty_ms: float = 0.0


def statement_weights(snapshot: Snapshot, queryids) -> dict[str, float]:
    by_id = {s.queryid: s for s in snapshot.statements}
    return {q: by_id[q].total_exec_time_ms for q in queryids if q in by_id}


def write_penalty_ms(snapshot: Snapshot, table: str, predicate_fraction: float = 1.0) -> float:
    """What one more index on `table` would add to the statements writing it, in the same
    pg_stat_statements window as the savings: heavily written tables pay most."""
    written_ms = 0.0
    for s in snapshot.statements:
        if statement_kind(s.query) != "dml" or not s.query.lstrip().upper().startswith(("INSERT", "UPDATE",
                                                                                        "DELETE", "MERGE", "WITH")):
            continue
        targets = resolve_tables(s.query, snapshot.tables)
        if targets and targets[0] == table:
            written_ms += s.total_exec_time_ms
    return written_ms * WRITE_SHARE_PER_INDEX * predicate_fraction


def estimate_size(snapshot: Snapshot, candidate: Candidate, fraction: float = 1.0) -> int:
    """Width x rows when HypoPG cannot say: key and INCLUDE widths from pg_stats (8
    bytes when unknown) plus 16 bytes of tuple header and line pointer, 90 % fill."""
    t = snapshot.table(candidate.table)
    rows = max(t.reltuples, 0.0) if t else 0.0
    width = 0
    for c in candidate.columns + candidate.include:
        stats = snapshot.stats_for(candidate.table, c)
        width += (stats.avg_width if stats and stats.avg_width else 8)
    per_row = 16 + ((width + 7) // 8) * 8
    return max(8192, int(rows * fraction * per_row / 0.9))


def choose(evaluated: list[Evaluated], weights: dict[str, float], budget_bytes: int | None,
           max_indexes: int) -> list[Evaluated]:
    """The greedy set, then without any chosen index another chosen one makes redundant."""
    best: dict[str, float] = {}  # queryid -> best fraction removed by the chosen set
    chosen: list[Evaluated] = []
    used = 0
    pool = [e for e in evaluated if e.fractions]

    def standalone(e: Evaluated) -> float:
        return sum(weights.get(q, 0.0) * f for q, f in e.fractions.items())

    def marginal(e: Evaluated) -> float:
        return sum(weights.get(q, 0.0) * max(0.0, f - best.get(q, 0.0)) for q, f in e.fractions.items())

    while pool and len(chosen) < max_indexes:
        scored = []
        for e in pool:
            if budget_bytes is not None and used + e.size_bytes > budget_bytes:
                continue
            if any(_serves(c.candidate, e.candidate) for c in chosen):
                continue
            gain = marginal(e)
            if gain <= 0 or gain < MIN_MARGINAL_SHARE * standalone(e) or gain <= e.write_penalty_ms:
                continue
            scored.append((gain - e.write_penalty_ms, -e.size_bytes, -len(e.candidate.columns), e))
        if not scored:
            break
        scored.sort(key=lambda x: x[:3], reverse=True)
        pick = scored[0][3]
        chosen.append(pick)
        used += pick.size_bytes
        pool.remove(pick)
        for q, f in pick.fractions.items():
            best[q] = max(best.get(q, 0.0), f)
    # A chosen index that is a left prefix of another chosen one, whose statements the
    # longer one serves as well, is dropped: never two where one covers both.
    final = []
    for e in chosen:
        wider = [o for o in chosen if o is not e and _serves(o.candidate, e.candidate)]
        if wider and all(any(o.fractions.get(q, 0) >= f * 0.9 for o in wider) for q, f in e.fractions.items()):
            continue
        final.append(e)
    return final


def _serves(wide: Candidate, narrow: Candidate) -> bool:
    """wide's definition starts with narrow's (same table and predicate), so it serves
    every lookup narrow serves."""
    if wide.table != narrow.table or wide.predicate != narrow.predicate:
        return False
    n = len(narrow.columns)
    if len(wide.columns) < n:
        return False
    k = narrow.equality_prefix
    if set(wide.columns[:k]) != set(narrow.columns[:k]) or wide.columns[k:n] != narrow.columns[k:]:
        return False
    return set(narrow.include) <= set(wide.columns) | set(wide.include)


def attribute(chosen: list[Evaluated], weights: dict[str, float]) -> dict[int, dict[str, float]]:
    """Each statement's saving goes to the chosen index that removes most of its cost,
    so summed savings never count a statement twice."""
    owner: dict[str, tuple[int, float]] = {}
    for n, e in enumerate(chosen):
        for q, f in e.fractions.items():
            if q not in owner or f > owner[q][1]:
                owner[q] = (n, f)
    out: dict[int, dict[str, float]] = {n: {} for n in range(len(chosen))}
    for q, (n, f) in owner.items():
        out[n][q] = f
    return out


def index_name(candidate: Candidate, taken: set[str]) -> str:
    """<table>_<columns>[_partial]_idx, lower-case, at most 63 bytes, not already taken."""
    table = re.sub(r"[^a-z0-9]+", "_", candidate.table.split(".", 1)[-1].lower()).strip("_")
    parts = [re.sub(r"[^a-z0-9]+", "_", c.lower()).strip("_") for c in candidate.columns]
    base = f"{table}_{'_'.join(p for p in parts if p)}"
    suffix = ("_partial" if candidate.predicate else "") + ("_incl" if candidate.include else "") + "_idx"
    base = base[: NAME_MAX - len(suffix) - 3] + suffix
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base[: NAME_MAX - len(str(n)) - 1]}{n}"
    taken.add(name)
    return name


def create_sql(candidate: Candidate, name: str, concurrently: bool = True) -> str:
    """CREATE INDEX for the candidate, every name quoted by the one rule (sql.quote_ident)."""
    cols = ", ".join(candidate.key_sql(c) for c in candidate.columns)
    include = f" INCLUDE ({', '.join(quote_ident(c) for c in candidate.include)})" if candidate.include else ""
    where = f" WHERE {candidate.predicate}" if candidate.predicate else ""
    how = "CONCURRENTLY IF NOT EXISTS " if concurrently else ""
    return f"CREATE INDEX {how}{quote_ident(name)} ON {quote_table(candidate.table)} ({cols}){include}{where}"
