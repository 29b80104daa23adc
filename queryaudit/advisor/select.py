"""Workload-level selection: one set of indexes for the whole top-N workload. Pure.

With HypoPG, `Extend` (Schlosser, Kossmann, Boissier: "Efficient Scalable Multi-Attribute
Index Selection Using Recursive Strategies", ICDE 2019; the best of six algorithms in
Kossmann et al., VLDB 2020): start from nothing; each step either adds a new index
(a single indexable column, or one of the composite, partial, expression or covering
candidates built from the SQL) or extends a chosen index by one more column; the step
with the most workload benefit per byte that still fits the budget wins. The benefit
is the whole workload re-planned with the whole set (index interaction), minus the
write cost one more index adds to the statements writing its table. Costs are cached
per statement and per set of indexes that can serve it, and options are evaluated
lazily (a stale ratio is an upper bound), so a step re-plans only a few statements.
After the steps, an improvement pass (leave out and refill) and a swap pass (swap.py).

Without HypoPG, `choose`: greedy on estimated marginal saving (no planner to ask).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from itertools import combinations

from queryaudit.advisor import ddl
from queryaudit.advisor.candidates import Candidate, table_rows
from queryaudit.snapshot import Snapshot
from queryaudit.sql import resolve_tables, statement_kind

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
        if statement_kind(s.query) != "dml" or not s.query.lstrip().upper().startswith(
            ("INSERT", "UPDATE", "DELETE", "MERGE", "WITH")
        ):
            continue
        targets = resolve_tables(s.query, snapshot.tables)
        if targets and targets[0] == table:
            written_ms += s.total_exec_time_ms
    return written_ms * WRITE_SHARE_PER_INDEX * predicate_fraction


def estimate_size(snapshot: Snapshot, candidate: Candidate, fraction: float = 1.0) -> int:
    """Width x rows when HypoPG cannot say: key and INCLUDE widths from pg_stats (8
    bytes when unknown) plus 16 bytes of tuple header and line pointer, 90 % fill."""
    rows = table_rows(snapshot, candidate.table)
    width = 0
    for c in candidate.columns + candidate.include:
        stats = snapshot.stats_for(candidate.table, c)
        width += stats.avg_width if stats and stats.avg_width else 8
    per_row = 16 + ((width + 7) // 8) * 8
    return max(8192, int(rows * fraction * per_row / 0.9))


def choose(
    evaluated: list[Evaluated], weights: dict[str, float], budget_bytes: int | None, max_indexes: int
) -> list[Evaluated]:
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


def create_sql(candidate: Candidate, name: str | None, concurrently: bool = True, snapshot=None) -> str:
    """The fix SQL (ends with ';'; several lines for a partitioned table when `snapshot` is given)."""
    return ddl.create_index_sql(
        candidate.table,
        candidate.columns,
        name,
        include=candidate.include,
        predicate=candidate.predicate,
        descending=candidate.descending,
        expressions=candidate.expressions,
        snapshot=snapshot,
        concurrently=concurrently,
    )


# -- Extend ------------------------------------------------------------------------------

MAX_WIDTH = 4  # key columns Extend grows an index to
# A composite is put in the DBA's order when its statements cost no more than this
# fraction above the order Extend found (planner costs of equal plans differ in noise).
REORDER_TOLERANCE = 0.001
# The local improvement pass keeps a changed set only when it costs at least this much
# less (planner noise between equal plans is smaller).
IMPROVE_MIN_GAIN = 0.0001
IMPROVE_PAIRS = 4  # pairs left out together: of the chosen indexes this many cheapest to lose
IMPROVE_PLAN_SHARE = 4.0  # the pass plans at most this many times what the steps planned
SWAP_PLAN_SHARE = 1.0  # the swap pass (swap.py) plans at most this many times what came before


@dataclass
class Workload:
    """What Extend knows of the statements: plain data, no server."""

    weight: dict[str, float]  # queryid -> predicted ms per unit of planner cost (total time / cost)
    baseline: dict[str, float]  # queryid -> planner cost with the existing indexes only
    indexable: dict[str, dict[str, set[str]]]  # queryid -> table -> columns an index can lead with
    attributes: dict[str, dict[str, set[str]]]  # queryid -> table -> every column it reads there
    write_ms: dict[str, float] = field(default_factory=dict)  # table -> ms one more index adds to its writes
    expressions: dict[str, set[str]] = field(default_factory=dict)  # table -> indexable entries that are expressions
    parents: dict[str, str] = field(default_factory=dict)  # partition -> its partitioned parent


@dataclass
class _Option:
    added: Candidate
    removed: Candidate | None  # the index `added` extends
    dsize: int
    benefit: float = 0.0
    ratio: float = -math.inf

    @property
    def key(self) -> tuple:
        return (self.added.key, self.removed.key if self.removed else None)


def _score(o: _Option, by_benefit: bool) -> float:
    """What a step maximizes: benefit per byte, or benefit (a useless option never wins)."""
    return o.benefit if by_benefit and o.ratio > -math.inf else o.ratio


def _ceiling(o: _Option, bound: dict, by_benefit: bool) -> float:
    """An upper bound of _score from the option's stale ratio (benefit = ratio x bytes)."""
    ratio = bound.get(o.key, math.inf)
    return ratio * max(o.dsize, 1) if by_benefit and ratio > -math.inf else ratio


class Extend:
    """cost_of(queryid, candidates) plans a statement with exactly those hypothetical
    indexes (besides the real ones); size_of(candidate) is HypoPG's size estimate."""

    def __init__(
        self,
        workload: Workload,
        cost_of,
        size_of,
        budget_bytes: int | None,
        max_indexes: int,
        threshold: float,
        max_width: int = MAX_WIDTH,
        deadline: float | None = None,
    ):
        self.w, self.cost_of, self.size_of = workload, cost_of, size_of
        self.budget = budget_bytes if budget_bytes is not None else math.inf
        self.max_indexes, self.threshold, self.max_width, self.deadline = max_indexes, threshold, max_width, deadline
        self.cache: dict[tuple, float] = {}
        self.sizes: dict[tuple, int] = {}
        self.planner_calls = 0
        self.stopped_early = False
        self.bound: dict[tuple, float] = {}  # option key -> its last ratio, an upper bound for later steps
        self.touches: dict[tuple, set[str]] = {}  # option key -> the statements its benefit depends on

    def _serves(self, q: str, c: Candidate) -> bool:
        return bool(c.columns) and c.columns[0] in self.w.indexable.get(q, {}).get(c.table, ())

    def relevant(self, c: Candidate) -> list[str]:
        return [q for q in self.w.baseline if self._serves(q, c)]

    def cost(self, q: str, config) -> float:
        """q's cost with the indexes of `config` that can serve it: the cache key, since
        an index q cannot lead with does not change q's plan."""
        useful = sorted((c for c in config if self._serves(q, c)), key=lambda c: repr(c.key))
        if not useful:
            return self.w.baseline[q]
        key = (q, tuple(c.key for c in useful))
        if key not in self.cache:
            self.planner_calls += 1
            self.cache[key] = min(self.w.baseline[q], self.cost_of(q, useful, lambda c: not self._serves(q, c)))
        return self.cache[key]

    def size(self, c: Candidate) -> int:
        if c.key not in self.sizes:
            self.sizes[c.key] = self.size_of(c)
        return self.sizes[c.key]

    def step_options(self, config: list[Candidate], seeds: list[Candidate]) -> list[_Option]:
        """The moves from `config`: add a seed, widen a chosen index by one column, or swap it
        for a seed holding its leading column further in (the swap pass draws from these too)."""
        out = []
        keys = {c.key for c in config}
        if len(config) < self.max_indexes:
            for s in seeds:
                if s.key in keys or any(is_prefix_of(s, c) for c in config):
                    continue
                out.append(_Option(s, None, 0))
        for c in config:
            if len(c.columns) >= self.max_width or c.include:
                continue
            extra = set()
            for q in self.relevant(c):
                extra |= self.w.attributes.get(q, {}).get(c.table, set())
            for a in sorted(extra - set(c.columns)):
                expression = (a,) if a in self.w.expressions.get(c.table, ()) else ()
                wider = Candidate(
                    c.table,
                    c.columns + (a,),
                    (),
                    c.predicate,
                    c.equality_prefix,
                    c.reasons | {"extend"},
                    set(c.queryids),
                    c.descending,
                    c.expressions + expression,
                )
                if wider.key not in keys:
                    out.append(_Option(wider, c, 0))
        # Extend only ever appends columns, so a cheap single column can win a step that a
        # composite in another order wins outright (tenant_id = $1 ... ORDER BY created_at
        # LIMIT 20: (created_at) is smaller, (tenant_id, created_at) far better): a chosen
        # index may also be swapped for a candidate that contains its leading column.
        for c in config:
            for s in seeds:
                if s.table == c.table and s.key not in keys and c.columns[0] in s.columns[1:]:
                    out.append(_Option(s, c, 0))
        return out

    def _evaluate(self, o: _Option, config: list[Candidate], current: dict[str, float]) -> None:
        new = [c for c in config if c is not o.removed] + [o.added]
        changed = set(self.relevant(o.added)) | (set(self.relevant(o.removed)) if o.removed else set())
        cuts = {q: (current[q], self.cost(q, new)) for q in changed}
        # a wider index can make some statement dearer: the net counts it
        net = sum(self.w.weight[q] * (was - now) for q, (was, now) in cuts.items())
        useful = step_pays(list(cuts.values()), self.threshold, adds_index=o.removed is None)
        write = 0.0 if o.removed else self.w.write_ms.get(o.added.table, 0.0)
        o.benefit = net - write
        o.ratio = o.benefit / max(o.dsize, 1) if useful and o.benefit > 0 else -math.inf
        self.touches[o.key] = changed

    def grow(
        self, seeds: list[Candidate], config: list[Candidate], banned=frozenset(), bound=None, largest_first=False
    ) -> list[Candidate]:
        """Extend's steps from `config` until no step fits the budget or pays; `banned`
        keys are never added; `bound`: ratios known to be upper bounds from `config` on.
        `largest_first`: the first step takes the option of most benefit, not most per
        byte (the refill of a freed budget: see improve)."""
        config = list(config)
        used = sum(self.size(c) for c in config)
        current = {q: self.cost(q, config) for q in self.w.baseline}
        self.bound = bound = {} if bound is None else bound
        while True:
            options = [o for o in self.step_options(config, seeds) if not self.is_banned(o.added, banned)]
            for o in options:
                o.dsize = self.size(o.added) - (self.size(o.removed) if o.removed else 0)
            options = [o for o in options if used + o.dsize <= self.budget]
            by_benefit = largest_first
            options.sort(key=lambda o: -_ceiling(o, bound, by_benefit))
            best = None
            for o in options:
                if best is not None and _ceiling(o, bound, by_benefit) <= _score(best, by_benefit):
                    break  # benefits only shrink as the set grows: a stale ratio is an upper bound
                if self.deadline is not None and time.monotonic() > self.deadline:
                    self.stopped_early = True
                    break
                self._evaluate(o, config, current)
                bound[o.key] = o.ratio
                if o.ratio > -math.inf and (best is None or _score(o, by_benefit) > _score(best, by_benefit)):
                    best = o
            if best is None:
                return config
            largest_first = False
            config = [c for c in config if c is not best.removed] + [best.added]
            used += best.dsize
            for q in set(self.relevant(best.added)) | (set(self.relevant(best.removed)) if best.removed else set()):
                current[q] = self.cost(q, config)

    def is_banned(self, c: Candidate, banned) -> bool:
        """c, or c as one partition's share of a banned index on the parent: a parent's
        index left out is not to come back split over its partitions."""
        parent = self.w.parents.get(c.table)
        return c.key in banned or (parent is not None and (parent, *c.key[1:]) in banned)

    def objective(self, config: list[Candidate]) -> float:
        """What Extend minimizes: the workload's weighted cost with `config`, plus what
        its indexes add to the writes."""
        reads = sum(self.w.weight[q] * self.cost(q, config) for q in self.w.baseline)
        return reads + sum(self.w.write_ms.get(c.table, 0.0) for c in config)

    def improve(self, seeds: list[Candidate], config: list[Candidate], max_plans: float = math.inf) -> list[Candidate]:
        """Local improvement after the greedy steps, which never take a choice back: each
        chosen index is left out in turn, then each pair of the IMPROVE_PAIRS cheapest to
        lose, and the budget refilled by Extend's steps (without them); the first set that
        costs less is kept, until none does or `max_plans` is reached. The index whose
        loss costs least per byte is tried first. Benefit per byte picks small indexes
        early and can leave the budget in pieces no large, better index fits in; this
        gives it back. Each freed budget is refilled twice: by Extend's steps, and with a
        first step of most benefit (a small index of high ratio taken first can leave no
        room for a larger one that saves more: the knapsack greedy's known gap)."""
        best = self.objective(config)
        bound = self.bound
        improved = True
        while improved and not self.stopped_early:
            improved = False
            loss = {c.key: (self.objective([x for x in config if x is not c]) - best) / self.size(c) for c in config}
            order = sorted(config, key=lambda c: (loss[c.key], repr(c.key)))
            for out in [[c] for c in order] + [list(p) for p in combinations(order[:IMPROVE_PAIRS], 2)]:
                if self.deadline is not None and time.monotonic() > self.deadline:
                    self.stopped_early = True
                    break
                if self.planner_calls >= max_plans:
                    return config
                # Without them only the statements they serve can gain more: every other
                # ratio known stays an upper bound, so the refill re-plans little.
                served = {q for c in out for q in self.relevant(c)}
                kept = {k: r for k, r in bound.items() if not self.touches.get(k, served) & served}
                rest = [x for x in config if all(x is not c for c in out)]
                banned = {c.key for c in out}
                trial = self.grow(seeds, rest, banned=banned, bound=dict(kept))
                cost, trial_bound = self.objective(trial), self.bound
                if self.planner_calls < max_plans:
                    larger = self.grow(seeds, rest, banned=banned, bound=dict(kept), largest_first=True)
                    if self.objective(larger) < cost:
                        trial, cost, trial_bound = larger, self.objective(larger), self.bound
                if cost < best * (1 - IMPROVE_MIN_GAIN):
                    config, best, improved, bound = trial, cost, True, trial_bound
                    break
        return config

    def leaders(self, table: str, column: str) -> int:
        """How many statements could lead with `column` of `table`: an index starting
        with it serves them all."""
        return sum(1 for per in self.w.indexable.values() if column in per.get(table, ()))

    def reorder(self, config: list[Candidate], selectivity) -> list[Candidate]:
        """Each chosen composite in the order a DBA would pick when the planner cannot
        tell them apart: the column more statements can lead with first, then the more
        selective (more distinct values; `selectivity(table, column)`), never list order.
        Kept only when the statements it serves cost no more (a range or sort column
        moved ahead of an equality costs more and is refused)."""
        out = list(config)
        for n, c in enumerate(out):
            if len(c.columns) < 2 or c.expressions:
                continue
            order = tuple(
                sorted(c.columns, key=lambda col: (-self.leaders(c.table, col), selectivity(c.table, col), col))
            )
            if order == c.columns:
                continue
            alt = Candidate(
                c.table,
                order,
                c.include,
                c.predicate,
                c.equality_prefix,
                set(c.reasons),
                set(c.queryids),
                c.descending,
                c.expressions,
            )
            used = sum(self.size(x) for x in out)
            if used - self.size(c) + self.size(alt) > self.budget:
                continue
            trial = out[:n] + [alt] + out[n + 1 :]
            changed = set(self.relevant(c)) | set(self.relevant(alt))
            now = sum(self.w.weight[q] * self.cost(q, out) for q in changed)
            then = sum(self.w.weight[q] * self.cost(q, trial) for q in changed)
            if then <= now * (1 + REORDER_TOLERANCE):
                out = trial
        return out

    def config_cost(self, config: list[Candidate]) -> dict[str, float]:
        return {q: self.cost(q, config) for q in self.w.baseline}


def step_pays(cuts: list[tuple[float, float]], threshold: float, adds_index: bool) -> bool:
    """A step pays when some statement it changes gets `threshold` cheaper ((cost before,
    cost after) per statement), as --verify-real keeps an index: a pooled cut would refuse
    an index that makes one statement 11 % cheaper because it also trims a large one by 1 %
    (TPC-H customer(c_custkey): Q13 and Q8 against Q18). MIN_COST_SAVED guards against a
    new index for a negligible gain; widening or swapping a chosen one adds no index."""
    cut_enough = any(now <= was * (1 - threshold) for was, now in cuts)
    return cut_enough and (not adds_index or max((was - now for was, now in cuts), default=0.0) >= MIN_COST_SAVED)


def is_prefix_of(narrow: Candidate, wide: Candidate) -> bool:
    """wide starts with narrow's columns (same table, predicate and directions): adding
    narrow next to wide serves nothing wide does not."""
    n = len(narrow.columns)
    return (
        wide.table == narrow.table
        and wide.predicate == narrow.predicate
        and not narrow.include
        and wide.columns[:n] == narrow.columns
        and set(narrow.descending) == set(wide.descending) & set(narrow.columns)
    )
