"""Helpers shared by the index hygiene checks: pure functions over the snapshot's indexes."""

from __future__ import annotations

import datetime as dt
import re

from queryaudit.findings import Finding
from queryaudit.snapshot import Index, Snapshot
from queryaudit.sql import quote_qualified


def drop_sql(index: Index) -> str:
    return f"DROP INDEX CONCURRENTLY IF EXISTS {quote_qualified(index.schema, index.name)};"


def protected(index: Index) -> bool:
    """Indexes that enforce something are never proposed for removal."""
    return index.is_unique or index.is_primary or index.is_exclusion or index.constraint_type is not None


def _default_name(index: Index) -> bool:
    table = index.table.split(".", 1)[-1]
    cols = "_".join(re.sub(r"[^a-z0-9]+", "_", c.lower()).strip("_") for c in index.columns)
    return index.name in (f"{table}_{cols}_idx", f"{table}_{cols}_key", f"{table}_pkey")


def _keep_rank(index: Index) -> tuple:
    """Lower ranks are kept: constraint-backed, unique, most scanned, PostgreSQL's own name."""
    return (index.constraint_type is None, not index.is_unique, -index.idx_scan, not _default_name(index), index.name)


def duplicate_groups(snapshot: Snapshot) -> list[tuple[Index, list[Index]]]:
    """(the index to keep, its duplicates that may be dropped): same table, method, key
    columns and expressions, operator classes, INCLUDE columns and predicate."""
    groups: dict[tuple, list[Index]] = {}
    for i in snapshot.indexes:
        if not i.is_valid:
            continue
        key = (i.table, i.method, tuple(i.columns), tuple(i.opclasses), tuple(i.include_columns), i.predicate or "")
        groups.setdefault(key, []).append(i)
    out = []
    for members in groups.values():
        if len(members) < 2:
            continue
        members = sorted(members, key=_keep_rank)
        droppable = [m for m in members[1:] if not protected(m)]
        if droppable:
            out.append((members[0], droppable))
    return out


def redundant_pairs(snapshot: Snapshot) -> list[tuple[Index, Index]]:
    """(redundant, covering): a valid B-tree whose key columns are a left prefix of another
    valid B-tree's on the same table, same predicate, operator classes and INCLUDE columns
    covered. Exact duplicates are left to duplicate-index."""
    by_table: dict[str, list[Index]] = {}
    for i in snapshot.indexes:
        if i.is_valid and i.method == "btree":
            by_table.setdefault(i.table, []).append(i)
    pairs = []
    for indexes in by_table.values():
        for a in indexes:
            if protected(a):
                continue
            best = None
            for b in indexes:
                if b is a or (b.predicate or "") != (a.predicate or ""):
                    continue
                n = len(a.columns)
                if len(b.columns) < n or b.columns[:n] != a.columns or b.opclasses[:n] != a.opclasses:
                    continue
                if not set(a.include_columns) <= set(b.columns) | set(b.include_columns):
                    continue
                if b.columns == a.columns and set(b.include_columns) == set(a.include_columns):
                    continue  # a duplicate
                if best is None or _keep_rank(b) < _keep_rank(best):
                    best = b
            if best is not None:
                pairs.append((a, best))
    return pairs


def stats_since(snapshot: Snapshot) -> str | None:
    return snapshot.server.stats_reset or snapshot.server.postmaster_start


def window_days(snapshot: Snapshot) -> float | None:
    since = stats_since(snapshot)
    if not since:
        return None
    try:
        start = dt.datetime.fromisoformat(since)
        end = dt.datetime.fromisoformat(snapshot.collected_at)
    except ValueError:
        return None
    if start.tzinfo is None or end.tzinfo is None:
        start, end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    return max(0.0, (end - start).total_seconds() / 86400)


def drop_finding(check: str, index: Index, other: Index, relation: str, title: str, medium_bytes: int) -> Finding:
    """A finding whose fix drops `index` because `other` serves everything it does."""
    return Finding(
        check=check,
        severity="medium" if index.bytes >= medium_bytes else "low",
        title=title,
        table=index.table,
        index=index.qualified_name,
        columns=index.columns,
        fix_sql=drop_sql(index),
        confidence="high",
        effort="index",
        evidence={
            "definition": index.definition,
            relation: other.qualified_name,
            "other_definition": other.definition,
            "size_bytes": index.bytes,
            "idx_scan": index.idx_scan,
            "other_idx_scan": other.idx_scan,
        },
    )
