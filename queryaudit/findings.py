"""The one Finding model every check returns, and prioritisation.

Priority is predicted saving of database time (Amdahl): the share of the observed
total execution time that applying the fix would remove. Severity breaks ties and
ranks findings that have no time attached (schema hygiene).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Collection
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


# StrEnum: each member is its JSON string ("high" == Severity.HIGH), so the report contract,
# jinja templates and stored history read them unchanged; a value outside the set fails early.
class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"


class Confidence(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class Effort(StrEnum):
    """What applying the fix costs the team: one statement of DDL, a setting, or code."""

    CONFIG = "config"
    MAINTENANCE = "maintenance"
    INDEX = "index"
    SCHEMA = "schema"
    QUERY = "query"
    APPLICATION = "application"


class SavingMethod(StrEnum):
    """How a finding's saving was obtained, surest first: the fix was tried (EXPLAIN ANALYZE
    before and after), planner cost with a HypoPG index, the check's own estimate."""

    MEASURED = "measured"
    HYPOTHETICAL = "hypothetical"
    HEURISTIC = "heuristic"


class Outcome(StrEnum):
    """The verdict of a verified fix (queryaudit.verify)."""

    FASTER = "faster"
    NOT_FASTER = "not-faster"
    INCONCLUSIVE = "inconclusive"
    NOT_REMOVED = "not-removed"  # the spill stays within the bound tried
    UNVERIFIED = "unverified"  # cannot be tried on this server or session
    FAILED = "failed"


SEVERITIES = tuple(Severity)
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}
CONFIDENCES = tuple(Confidence)
EFFORTS = tuple(Effort)
# One severity scale for every finding with a predicted saving (share of total database
# time the fix removes), whichever check made it.
HIGH_SAVING_SHARE = 0.10
MEDIUM_SAVING_SHARE = 0.02


@dataclass
class Saving:
    share_of_total_time: float  # 0..1 of total database execution time
    ms_per_call: float | None = None
    total_ms: float | None = None


@dataclass
class Verification:
    method: str  # hypothetical | real | snapshot | none
    before: dict[str, float] = field(default_factory=dict)  # cost and/or ms (and buffers, round trips)
    after: dict[str, float] = field(default_factory=dict)
    detail: str | None = None
    # Set by fix verification (queryaudit.verify): what was tried, each timed run, the
    # reduction of the median and the verdict (faster | not-faster | inconclusive | not-removed).
    kind: str | None = None
    runs_before: list[float] = field(default_factory=list)
    runs_after: list[float] = field(default_factory=list)
    reduction: float | None = None
    outcome: Outcome | None = None

    def __post_init__(self):
        if self.outcome is not None:
            self.outcome = Outcome(self.outcome)


# Confidence follows how the saving was obtained.
SAVING_METHODS = tuple(SavingMethod)
METHOD_CONFIDENCE = {
    SavingMethod.MEASURED: Confidence.HIGH,
    SavingMethod.HYPOTHETICAL: Confidence.MEDIUM,
    SavingMethod.HEURISTIC: Confidence.LOW,
}


@dataclass
class Finding:
    check: str
    severity: Severity
    title: str
    table: str | None = None
    columns: list[str] = field(default_factory=list)
    index: str | None = None
    queryids: list[str] = field(default_factory=list)
    fix_sql: str | None = None
    advice: str | None = None  # how to fix when no SQL does it (application change, setting)
    predicted_saving: Saving | None = None
    confidence: Confidence = Confidence.MEDIUM
    effort: Effort = Effort.QUERY
    verification: Verification | None = None
    # measured (the fix was tried: EXPLAIN ANALYZE before and after) | hypothetical (planner
    # cost with a HypoPG index) | heuristic (the check's estimate from the plan or statistics)
    saving_method: SavingMethod = SavingMethod.HEURISTIC
    # The check's own estimate, kept beside a measured saving that replaced it.
    heuristic_saving: Saving | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    # What makes this the same problem across runs; defaults to the object it names.
    key: str | None = None

    def __setattr__(self, name, value):
        # Checks and the verifier may pass the plain strings; every assignment lands as the enum.
        if name in _ENUM_FIELDS and value is not None:
            value = _ENUM_FIELDS[name](value)
        object.__setattr__(self, name, value)

    @property
    def id(self) -> str:
        key = self.key or "|".join(
            [self.table or "", self.index or "", ",".join(self.columns), ",".join(self.queryids)]
        )
        return f"{self.check}:{hashlib.sha1(key.encode()).hexdigest()[:12]}"

    @property
    def saving_share(self) -> float:
        return self.predicted_saving.share_of_total_time if self.predicted_saving else 0.0

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data.pop("key")
        if data["predicted_saving"]:  # the contract types each figure as a number: an unknown one is left out
            data["predicted_saving"] = {k: v for k, v in data["predicted_saving"].items() if v is not None}
        return {"id": self.id, **data}


def size_text(n: float | None) -> str:
    """A size the way every title and report table writes it (1024-based, kB/MB/GB), so a
    finding's "208.0 kB" and the report's "208.0 kB reclaimable" read alike."""
    if n is None:
        return "–"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    return f"{value} B"


_ENUM_FIELDS = {"severity": Severity, "confidence": Confidence, "effort": Effort, "saving_method": SavingMethod}


def severity_from_saving(saving: Saving | None, floor: str = "low") -> Severity:
    """high from HIGH_SAVING_SHARE of total time saved, medium from MEDIUM_SAVING_SHARE, else
    `floor` (a check may raise the floor for a cost the saving does not show, e.g. round trips)."""
    share = saving.share_of_total_time if saving else 0.0
    if share >= HIGH_SAVING_SHARE:
        return Severity.HIGH
    if share >= MEDIUM_SAVING_SHARE:
        return Severity.MEDIUM
    return Severity(floor)


def saving_from_share(statement_total_ms: float, fraction_removed: float, total_ms: float, calls: int) -> Saving:
    """The Amdahl arithmetic in one place: removing `fraction_removed` of a statement's
    time removes that much of its share of the database's total time."""
    fraction_removed = max(0.0, min(1.0, fraction_removed))
    saved_ms = statement_total_ms * fraction_removed
    share = saved_ms / total_ms if total_ms > 0 else 0.0
    return Saving(
        share_of_total_time=round(min(1.0, share), 6),
        ms_per_call=round(saved_ms / calls, 4) if calls else None,
        total_ms=round(saved_ms, 3),
    )


EFFORT_RANK = {e: i for i, e in enumerate(EFFORTS)}
CONFIDENCE_RANK = {c: i for i, c in enumerate(CONFIDENCES)}


def prioritise(findings: list[Finding]) -> list[Finding]:
    """Most database time saved first; then severity, the cheaper fix, the surer one; then a stable order."""
    return sorted(
        findings,
        key=lambda f: (
            -f.saving_share,
            SEVERITY_RANK.get(f.severity, 9),
            EFFORT_RANK.get(f.effort, 9),
            CONFIDENCE_RANK.get(f.confidence, 9),
            f.check,
            f.id,
        ),
    )


def combined_saving_share(findings: list[Finding], statement_shares: dict[str, float]) -> float:
    """The share of total time all the fixes together remove, without counting a statement twice.

    Each fix removes a fraction of its statements' time; two fixes of one statement combine
    as Amdahl says: the second removes its fraction of what the first left
    (1 - (1 - f1)(1 - f2)). Findings tied to no known statement add their own share.
    """
    remaining: dict[str, float] = {}
    unattached = 0.0
    for f in findings:
        queryids = [q for q in dict.fromkeys(f.queryids) if statement_shares.get(q)]
        if not queryids:
            unattached += f.saving_share
            continue
        covered = sum(statement_shares[q] for q in queryids)
        fraction = min(1.0, f.saving_share / covered)
        for q in queryids:
            remaining[q] = remaining.get(q, 1.0) * (1.0 - fraction)
    total = sum(statement_shares[q] * (1.0 - r) for q, r in remaining.items()) + unattached
    return round(min(1.0, total), 6)


def _index_leads(longer: list[str], shorter: list[str]) -> bool:
    return bool(shorter) and longer[: len(shorter)] == shorter


def _combined_saving(findings: list[Finding]) -> Saving | None:
    """Savings of different statements add up (Amdahl over disjoint time); a finding whose
    statements are all covered by another's counts once, through the larger."""
    kept: list[tuple[frozenset, Saving]] = []
    ordered = sorted(
        (f for f in findings if f.predicted_saving is not None), key=lambda f: (-len(f.queryids), -f.saving_share)
    )
    for f in ordered:
        assert f.predicted_saving is not None  # filtered above
        statements = frozenset(f.queryids) or frozenset([f.id])
        covering = next((i for i, (s, _) in enumerate(kept) if statements <= s), None)
        if covering is None:
            kept.append((statements, f.predicted_saving))
        elif f.saving_share > kept[covering][1].share_of_total_time:
            kept[covering] = (kept[covering][0], f.predicted_saving)
    if not kept:
        return None
    savings = [s for _, s in kept]
    total_ms = [s.total_ms for s in savings if s.total_ms is not None]
    return Saving(
        share_of_total_time=round(min(1.0, sum(s.share_of_total_time for s in savings)), 6),
        ms_per_call=savings[0].ms_per_call if len(savings) == 1 else None,
        total_ms=round(sum(total_ms), 3) if total_ms else None,
    )


def _merge_group(group: list[Finding]) -> Finding:
    """One fix for the group: the widest index (it serves the others), every statement, the
    summed saving; the absorbed findings stay in evidence.merged, with their ids."""
    primary = max(
        group,
        key=lambda f: (f.check != "seq-scan-large-table", len(f.columns), f.check == "missing-index", f.saving_share),
    )
    others = [f for f in group if f is not primary]
    queryids = list(dict.fromkeys(q for f in [primary, *others] for q in f.queryids))
    # The merged saving is as sure as the best way any member's saving was obtained.
    methods = [f.saving_method for f in group if f.predicted_saving is not None] or [primary.saving_method]
    method = min(methods, key=lambda m: SAVING_METHODS.index(m) if m in SAVING_METHODS else 9)
    confidence = min((f.confidence for f in group), key=lambda c: CONFIDENCE_RANK.get(c, 9))
    if method in METHOD_CONFIDENCE and CONFIDENCE_RANK[confidence] < CONFIDENCE_RANK[METHOD_CONFIDENCE[method]]:
        confidence = METHOD_CONFIDENCE[method]
    merged = dataclasses.replace(
        primary,
        severity=min((f.severity for f in group), key=lambda s: SEVERITY_RANK.get(s, 9)),
        confidence=confidence,
        saving_method=method,
        queryids=queryids,
        predicted_saving=_combined_saving(group),
        evidence={**primary.evidence, "merged": [f.to_dict() for f in others]},
        key=f"index-fix|{primary.table}|{','.join(primary.columns)}",
    )
    checks = sorted({f.check for f in others} - {primary.check})
    served = f"; serves {len(queryids)} statements" if len(queryids) > max(1, len(primary.queryids)) else ""
    also = f" (also {', '.join(checks)})" if checks else ""
    merged.title = f"{primary.title}{also}{served}"
    return merged


def merge_overlapping(findings: list[Finding], index_creating: Collection[str]) -> list[Finding]:
    """One fix, one entry: findings whose fix is the same index (same table, columns of one
    leading the other's) become one finding listing every statement it serves.

    `index_creating`: the checks whose fix is one new index on (table, columns), from the
    registry (`checks.ids(fix="create-index")`); one index serves them all when the columns
    of one lead the other's (an index on (a, b) also serves a lookup by a)."""
    groups: list[list[Finding]] = []
    rest: list[Finding] = []
    for f in findings:
        if f.check not in index_creating or not f.table or not f.columns:
            rest.append(f)
            continue
        for group in groups:
            if group[0].table == f.table and all(
                _index_leads(g.columns, f.columns) or _index_leads(f.columns, g.columns) for g in group
            ):
                group.append(f)
                break
        else:
            groups.append([f])
    merged = [g[0] if len(g) == 1 else _merge_group(g) for g in groups]
    return merged + rest
