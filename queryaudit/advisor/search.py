"""The advisor's search with HypoPG: Extend's steps (select.py), its improvement pass, then
the swap pass (swap.py), each held to a share of the plans made before it. Its own module:
swap.py builds on select.py, so select.py cannot call it."""

from __future__ import annotations

from queryaudit.advisor.candidates import Candidate
from queryaudit.advisor.select import IMPROVE_PLAN_SHARE, SWAP_PLAN_SHARE, Extend
from queryaudit.advisor.swap import swap


def search_indexes(extend: Extend, seeds: list[Candidate]) -> list[Candidate]:
    """The chosen set: the steps from nothing, then the improvement pass (up to
    IMPROVE_PLAN_SHARE times the plans the steps made), then the swap pass (up to
    SWAP_PLAN_SHARE times what both made)."""
    config = extend.grow(seeds, [])
    config = extend.improve(seeds, config, extend.planner_calls * (1 + IMPROVE_PLAN_SHARE))
    return swap(extend, seeds, config, extend.planner_calls * (1 + SWAP_PLAN_SHARE))
