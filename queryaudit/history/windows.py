"""Per-window deltas of pg_stat_statements' cumulative counters.

pg_stat_statements counts from its last reset (or from when an entry was created),
so one audit's numbers mix everything since then. The window of an audit is what
happened between the previous stored audit of the same target and this one: the
difference of the counters, taken only where that difference is meaningful.

A difference would be wrong, and is never taken, when
- the whole view was reset in between (pg_stat_statements_info.stats_reset moved, 14+),
  or the target is another cluster (system identifier changed): every entry then
  counts from the reset, so its cumulative numbers are the window;
- one entry restarted: it was evicted (pg_stat_statements.max, counted in
  pg_stat_statements_info.dealloc) or reset on its own and created again. On 17+ its
  stats_since moves; before, its counters go down. Either way the entry was created
  after the previous audit, so its cumulative numbers are all inside the window;
- the previous audit did not keep the entry because it kept only the top statements:
  where the entry started is unknown, so it gets no window numbers at all.
An entry absent from a previous audit that kept every entry was created after it.
So every window number is either a non-negative difference or a whole count that
started inside the window, never a mix.

Known limit: before 17, an entry evicted and re-created between audits whose counters
have grown past their old values again looks like an ordinary difference and is
undercounted; the window then says how many entries were evicted (dealloc).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

# The counters kept per entry and window; all cumulative and monotonic between resets.
COUNTERS = ("calls", "total_exec_time_ms", "rows", "shared_blks_hit", "shared_blks_read", "temp_blks_written")
# The sum of squared execution times (ms²), rebuilt from pg_stat_statements' calls, mean and
# (population) stddev: its window difference gives the window's spread, which the Welch
# test of a before/after verdict needs. Kept apart from COUNTERS: rebuilt from floats, it
# may wobble in the last digits, so it never decides whether an entry restarted.
SUMSQ = "sumsq_exec_time"

# How an entry's window numbers were obtained.
DELTA = "delta"  # difference with the previous audit
NEW = "new"  # created after the previous audit: its whole count
RESTARTED = "restarted"  # evicted or reset on its own and created again: its whole count
SINCE_RESET = "since-reset"  # first audit of the target, or after a reset of the view
UNKNOWN = "unknown"  # the previous audit did not keep it: no window numbers


@dataclass
class Sample:
    """One pg_stat_statements entry at one audit: cumulative counters."""

    queryid: str
    userid: int | None = None
    toplevel: bool | None = None
    calls: int = 0
    total_exec_time_ms: float = 0.0
    rows: int = 0
    shared_blks_hit: int = 0
    shared_blks_read: int = 0
    temp_blks_written: int = 0
    stats_since: str | None = None
    query: str = ""
    sumsq_exec_time: float | None = None  # None: not recorded (stores before schema 3)

    @property
    def key(self) -> tuple[str, str, str]:
        # pg_stat_statements' own key within a database: (userid, queryid, toplevel).
        return (self.queryid, str(self.userid), str(self.toplevel))

    @classmethod
    def from_statement(cls, statement) -> Sample:
        return cls(
            queryid=statement.queryid,
            userid=statement.userid,
            toplevel=statement.toplevel,
            calls=statement.calls,
            total_exec_time_ms=statement.total_exec_time_ms,
            rows=statement.rows,
            shared_blks_hit=statement.shared_blks_hit,
            shared_blks_read=statement.shared_blks_read,
            temp_blks_written=statement.temp_blks_written,
            stats_since=statement.stats_since,
            query=statement.query,
            sumsq_exec_time=statement.calls * (statement.stddev_exec_time_ms**2 + statement.mean_exec_time_ms**2),
        )


@dataclass
class AuditPoint:
    """What a window is computed from: one audit's time, server markers and entries."""

    collected_at: str
    samples: dict[tuple, Sample]
    pgss_stats_reset: str | None = None
    pgss_dealloc: int | None = None
    system_identifier: str | None = None
    statistics_since: str | None = None  # pgss reset, else server start
    # Whether the audit kept every entry of the database (not only the top ones).
    complete: bool = True


@dataclass
class Entry:
    sample: Sample
    kind: str
    delta: dict[str, float] | None  # None when kind is UNKNOWN


@dataclass
class Window:
    kind: str  # first | delta | reset
    start: str | None
    end: str
    entries: list[Entry] = field(default_factory=list)
    note: str | None = None
    evicted: int | None = None  # entries evicted during the window (dealloc difference)

    def entry(self, key: tuple) -> Entry | None:
        return next((e for e in self.entries if e.sample.key == key), None)


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def utc_iso(value: str) -> str:
    """An ISO time normalised to UTC, so stored times sort as text."""
    parsed = parse_time(value)
    return parsed.astimezone(dt.UTC).isoformat() if parsed else value


def _whole(sample: Sample) -> dict[str, float]:
    return {**{c: getattr(sample, c) for c in COUNTERS}, SUMSQ: sample.sumsq_exec_time}


def _difference(sample: Sample, before: Sample) -> dict[str, float]:
    delta = {c: getattr(sample, c) - getattr(before, c) for c in COUNTERS}
    if sample.sumsq_exec_time is not None and before.sumsq_exec_time is not None:
        delta[SUMSQ] = max(0.0, sample.sumsq_exec_time - before.sumsq_exec_time)
    else:
        delta[SUMSQ] = None
    return delta


def _went_down(current: Sample, previous: Sample) -> bool:
    return any(getattr(current, c) < getattr(previous, c) for c in COUNTERS)


def _same_instant(a: str | None, b: str | None) -> bool:
    pa, pb = parse_time(a), parse_time(b)
    return pa == pb if pa and pb else a == b


def compute_window(previous: AuditPoint | None, current: AuditPoint) -> Window:
    """The window of `current` after `previous` (the last stored audit of the same target)."""
    samples = list(current.samples.values())
    if previous is None:
        return Window(
            "first",
            current.statistics_since,
            current.collected_at,
            [Entry(s, SINCE_RESET, _whole(s)) for s in samples],
            note="first audit of this target: the window is everything since the statistics began",
        )
    reset_note = None
    if (
        previous.system_identifier
        and current.system_identifier
        and previous.system_identifier != current.system_identifier
    ):
        reset_note = (
            f"another cluster answers at this target (system identifier {previous.system_identifier} -> "
            f"{current.system_identifier}): counting starts again"
        )
    elif (
        previous.pgss_stats_reset
        and current.pgss_stats_reset
        and not _same_instant(previous.pgss_stats_reset, current.pgss_stats_reset)
    ):
        reset_note = (
            f"pg_stat_statements was reset at {current.pgss_stats_reset} (after the previous audit): "
            "the window starts at the reset; what ran between the previous audit and it is not counted"
        )
    if reset_note:
        return Window(
            "reset",
            current.pgss_stats_reset or current.statistics_since,
            current.collected_at,
            [Entry(s, SINCE_RESET, _whole(s)) for s in samples],
            note=reset_note,
        )

    evicted = None
    if previous.pgss_dealloc is not None and current.pgss_dealloc is not None:
        evicted = max(0, current.pgss_dealloc - previous.pgss_dealloc)
    previous_time = parse_time(previous.collected_at)
    entries = []
    for sample in samples:
        before = previous.samples.get(sample.key)
        if before is None:
            since = parse_time(sample.stats_since)
            if (since and previous_time and since > previous_time) or previous.complete:
                entries.append(Entry(sample, NEW, _whole(sample)))
            else:
                entries.append(Entry(sample, UNKNOWN, None))
        elif (
            sample.stats_since and before.stats_since and not _same_instant(sample.stats_since, before.stats_since)
        ) or _went_down(sample, before):
            entries.append(Entry(sample, RESTARTED, _whole(sample)))
        else:
            entries.append(Entry(sample, DELTA, _difference(sample, before)))
    restarted = sum(1 for e in entries if e.kind == RESTARTED)
    notes = []
    if restarted:
        notes.append(f"{restarted} entries restarted (evicted or reset on their own) and count from their restart")
    if evicted:
        notes.append(f"{evicted} entries were evicted during the window (pg_stat_statements.max)")
    return Window(
        "delta", previous.collected_at, current.collected_at, entries, note="; ".join(notes) or None, evicted=evicted
    )


def point_from_snapshot(snapshot) -> AuditPoint:
    server = snapshot.server
    samples = {}
    for statement in snapshot.statements:
        sample = Sample.from_statement(statement)
        samples[sample.key] = sample
    return AuditPoint(
        collected_at=utc_iso(snapshot.collected_at),
        samples=samples,
        pgss_stats_reset=server.pgss_stats_reset,
        pgss_dealloc=server.pgss_dealloc,
        system_identifier=getattr(server, "system_identifier", None),
        statistics_since=server.pgss_stats_reset or server.postmaster_start,
        complete=len(snapshot.statements) >= snapshot.statement_count,
    )
