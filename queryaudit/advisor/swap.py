"""The swap pass after Extend and its improvement pass: one chosen index replaced by one
candidate, the budget refilled, kept when the workload costs less. Pure.

The improvement pass leaves indexes out and refills the budget greedily, so it only
reaches a set whose new indexes the greedy would pick first. A better set can start
with an index no greedy step takes first: on a TPC-H ANALYZE sample at 1000 MB the
steps widen lineitem(l_orderkey) to (l_orderkey, l_quantity); the narrower index saves
almost as much and the 94 MB it frees buy more elsewhere (49.39 -> 48.91 %). Here that
index is put in by force (in place of a chosen one, or beside them when it fits), the
rest refilled by Extend's steps, and the best such move kept.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

from queryaudit.advisor.candidates import Candidate
from queryaudit.advisor.select import IMPROVE_MIN_GAIN, Extend, is_prefix_of, step_pays

# Of the moves, this many of lowest cost before the refill are refilled and compared
# (each refill re-plans; the moves below are seldom better once refilled).
SWAP_REFILLS = 30


def prefixes(c: Candidate) -> list[Candidate]:
    """c's shorter left prefixes, without INCLUDE: a chosen index that Extend widened may
    have been better left narrow."""
    out = []
    for n in range(1, len(c.columns)):
        cols = c.columns[:n]
        out.append(
            replace(
                c,
                columns=cols,
                include=(),
                equality_prefix=min(c.equality_prefix, n),
                reasons=set(c.reasons),
                queryids=set(c.queryids),
                descending=tuple(d for d in c.descending if d in cols),
                expressions=tuple(e for e in c.expressions if e in cols),
            )
        )
    return out


def pays(search: Extend, added: Candidate, without: list[Candidate], with_: list[Candidate]) -> bool:
    """`added` passes Extend's own test for a new index (select.step_pays)."""
    cuts = [(search.cost(q, without), search.cost(q, with_)) for q in search.relevant(added)]
    return step_pays(cuts, search.threshold, adds_index=True)


def moves(search: Extend, seeds: list[Candidate], config: list[Candidate], max_plans: float = math.inf):
    """(cost before any refill, new set, index taken out or None, index put in), cheapest
    first; those costed before `max_plans` plans were made."""
    pool = {c.key: c for c in seeds}
    for o in search.step_options(config, seeds):  # widenings and reorderings of the chosen ones
        pool.setdefault(o.added.key, o.added)
    for c in config:
        for p in prefixes(c):
            pool.setdefault(p.key, p)
    keys = {c.key for c in config}
    out, seen = [], set()
    for x in pool.values():
        if x.key in keys or search.is_banned(x, ()) or search.size(x) < 0:
            continue
        for out_ in [None, *config]:
            if search.planner_calls >= max_plans:
                break
            # x in place of out_; a chosen prefix of x is served by x and leaves too.
            new = [c for c in config if c is not out_ and not is_prefix_of(c, x)]
            if any(is_prefix_of(x, c) for c in new) or len(new) >= search.max_indexes:
                continue
            if sum(search.size(c) for c in new) + search.size(x) > search.budget:
                continue
            new.append(x)
            if frozenset(c.key for c in new) in seen:
                continue  # x beside a chosen prefix of it, and x in its place: one set
            seen.add(frozenset(c.key for c in new))
            out.append((search.objective(new), new, out_, x))
    out.sort(key=lambda m: (m[0], repr(m[3].key)))
    return out


def swap(search: Extend, seeds: list[Candidate], config: list[Candidate], max_plans: float = math.inf):
    """The best set one swap and a refill reach, repeated while the cost falls by at least
    IMPROVE_MIN_GAIN and fewer than `max_plans` plans were made."""
    best = search.objective(config)
    improved = True
    while improved and not search.stopped_early and search.planner_calls < max_plans:
        improved = False
        tried = 0
        for _, new, out, x in moves(search, seeds, config, max_plans):
            if tried >= SWAP_REFILLS or search.planner_calls >= max_plans:
                break
            if search.deadline is not None and time.monotonic() > search.deadline:
                search.stopped_early = True
                break
            if not pays(search, x, [c for c in new if c is not x], new):
                continue
            tried += 1
            trial = search.grow(seeds, new, banned={out.key} if out is not None else frozenset())
            cost = search.objective(trial)
            if cost < best * (1 - IMPROVE_MIN_GAIN):
                config, best, improved = trial, cost, True
                break
    return config
