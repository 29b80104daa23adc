"""What fix verification stores in the snapshot: plain dataclasses with a JSON round trip."""

from __future__ import annotations

from dataclasses import dataclass, field

from queryaudit.findings import Outcome


@dataclass
class FixMeasurement:
    """One fix tried on the server: the statement timed before and after it."""

    finding_id: str  # the Finding.id this measures (checks give the same id from the same snapshot)
    check: str
    queryid: str
    kind: str  # work_mem | jit | keyset | batch | statistics
    # real: EXPLAIN ANALYZE ran with and without the fix; none: it could not be tried here.
    method: str = "real"
    outcome: Outcome = Outcome.UNVERIFIED
    fix: str | None = None  # what was tried, as a DBA would type it: SET LOCAL work_mem = '22MB'
    fix_sql: str | None = None  # the fix SQL to print, when the measurement changed it
    before_ms: list[float] = field(default_factory=list)  # one entry per timed run
    after_ms: list[float] = field(default_factory=list)
    before: dict[str, float] = field(default_factory=dict)  # buffers, round trips... of a representative run
    after: dict[str, float] = field(default_factory=dict)
    steps: list[dict] = field(default_factory=list)  # work_mem values tried on the way up, what each did
    detail: str | None = None  # one line: what was done, or why it was not

    def __setattr__(self, name, value):
        object.__setattr__(self, name, Outcome(value) if name == "outcome" else value)


@dataclass
class FixVerification:
    budget_s: float = 0.0  # what was left of the EXPLAIN budget when verification began
    duration_ms: float = 0.0
    verify_real: bool = False  # statistics measured on a writable scratch copy
    measurements: list[FixMeasurement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
