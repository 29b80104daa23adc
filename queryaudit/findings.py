"""The one Finding model every check returns, and prioritisation.

Priority is predicted saving of database time (Amdahl): the share of the observed
total execution time that applying the fix would remove. Severity breaks ties and
ranks findings that have no time attached (schema hygiene).
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("critical", "high", "medium", "low", "info")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}
CONFIDENCES = ("high", "medium", "low")
# What applying the fix costs the team: one statement of DDL, a setting, or code.
EFFORTS = ("config", "maintenance", "index", "schema", "query", "application")


@dataclass
class Saving:
    share_of_total_time: float  # 0..1 of total database execution time
    ms_per_call: float | None = None
    total_ms: float | None = None


@dataclass
class Verification:
    method: str  # hypothetical | real | snapshot | none
    before: dict[str, float] = field(default_factory=dict)  # cost and/or ms
    after: dict[str, float] = field(default_factory=dict)
    detail: str | None = None


@dataclass
class Finding:
    check: str
    severity: str
    title: str
    table: str | None = None
    columns: list[str] = field(default_factory=list)
    index: str | None = None
    queryids: list[str] = field(default_factory=list)
    fix_sql: str | None = None
    advice: str | None = None  # how to fix when no SQL does it (application change, setting)
    predicted_saving: Saving | None = None
    confidence: str = "medium"
    effort: str = "query"
    verification: Verification | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    # What makes this the same problem across runs; defaults to the object it names.
    key: str | None = None

    @property
    def id(self) -> str:
        key = self.key or "|".join([self.table or "", self.index or "", ",".join(self.columns),
                                    ",".join(self.queryids)])
        return f"{self.check}:{hashlib.sha1(key.encode()).hexdigest()[:12]}"

    @property
    def saving_share(self) -> float:
        return self.predicted_saving.share_of_total_time if self.predicted_saving else 0.0

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data.pop("key")
        return {"id": self.id, **data}


def saving_from_share(statement_total_ms: float, fraction_removed: float, total_ms: float,
                      calls: int) -> Saving:
    """The Amdahl arithmetic in one place: removing `fraction_removed` of a statement's
    time removes that much of its share of the database's total time."""
    fraction_removed = max(0.0, min(1.0, fraction_removed))
    saved_ms = statement_total_ms * fraction_removed
    share = saved_ms / total_ms if total_ms > 0 else 0.0
    return Saving(share_of_total_time=round(min(1.0, share), 6),
                  ms_per_call=round(saved_ms / calls, 4) if calls else None,
                  total_ms=round(saved_ms, 3))


def prioritise(findings: list[Finding]) -> list[Finding]:
    """Most database time saved first; then severity; then a stable order by id."""
    return sorted(findings, key=lambda f: (-f.saving_share, SEVERITY_RANK.get(f.severity, 9), f.check, f.id))
