"""Measurements into findings (pure): a measured fix is ranked by what it measured.

Predicted saving = the measured reduction of the statement's time x the statement's
share of total time (Amdahl, findings.saving_from_share). A fix that does what it says
(removes the spill) without making the statement faster becomes a low-severity note.
Confidence follows how the saving was obtained: measured, hypothetical, heuristic.
"""

from __future__ import annotations

from queryaudit.findings import (
    CONFIDENCE_RANK,
    CONFIDENCES,
    METHOD_CONFIDENCE,
    Finding,
    Outcome,
    Saving,
    Verification,
    saving_from_share,
    severity_from_saving,
)
from queryaudit.snapshot import Snapshot
from queryaudit.verify.model import FixMeasurement

SPILL_CHECKS = ("disk-sort", "hash-spill")
MEASURED_OUTCOMES = (Outcome.FASTER, Outcome.NOT_FASTER, Outcome.INCONCLUSIVE)


def _ms(value: float) -> str:
    return f"{value:.3f} ms" if value < 1 else f"{value:,.1f} ms"


def _verification(m: FixMeasurement) -> Verification:
    before = {k: v for k, v in m.before.items() if v is not None}
    after = {k: v for k, v in m.after.items() if v is not None}
    reduction = round(1 - after["ms"] / before["ms"], 4) if before.get("ms") and "ms" in after else None
    return Verification(
        method="real" if m.method == "real" else "none",
        before=before,
        after=after,
        detail=m.detail,
        kind=m.fix,
        runs_before=list(m.before_ms),
        runs_after=list(m.after_ms),
        reduction=reduction,
        outcome=m.outcome,
    )


def _lower(confidence: str) -> str:
    return CONFIDENCES[min(len(CONFIDENCES) - 1, CONFIDENCE_RANK.get(confidence, 1) + 1)]


def _measured(f: Finding, m: FixMeasurement, snapshot: Snapshot) -> None:
    f.verification = _verification(m)
    if m.method != "real":  # could not be tried here: a prediction nothing checked
        f.confidence = _lower(f.confidence)
        return
    if m.fix_sql:
        f.fix_sql = m.fix_sql
    if m.kind == "work_mem" and m.fix:
        f.evidence["suggested_work_mem"] = m.fix.split("'")[1]
    f.evidence["work_mem_steps" if m.kind == "work_mem" else "measurement_steps"] = m.steps or None
    if m.outcome == "not-removed":
        f.fix_sql = f.evidence.get("index_sql")
        f.confidence = "low"
        f.advice = f"measured: {m.detail}" + (f"; an index giving the order instead: {f.fix_sql}" if f.fix_sql else "")
        return
    if m.outcome not in MEASURED_OUTCOMES:
        return
    if not m.before_ms:  # the fix was checked (the spill goes) but not timed: the estimate stays
        f.advice = f"checked: {m.detail}"
        return
    statement = snapshot.statement(m.queryid)
    reduction = f.verification.reduction or 0.0
    fraction = max(0.0, reduction) if m.outcome != "not-faster" else 0.0
    f.heuristic_saving = f.predicted_saving
    if statement is not None:
        f.predicted_saving = saving_from_share(
            statement.total_exec_time_ms, fraction, snapshot.total_exec_time_ms, statement.calls
        )
    f.saving_method = "measured"
    f.confidence = "high" if m.outcome != "inconclusive" else "medium"
    # The fix quoted inside a sentence: without its closing ';' ("with ANALYZE public.events, the ...").
    what = (m.fix or "the fix").rstrip().rstrip(";")
    if m.kind == "keyset":
        what = f"the keyset form `{m.fix}` (its last parameters: the key of the previous page's last row)"
    elif m.kind == "batch":
        what = f"one `{m.fix}` for {m.before.get('round_trips', 0):.0f} lookups"
    timing = f"{_ms(m.before.get('ms', 0))} → {_ms(m.after.get('ms', 0))} (median)"
    if m.outcome == "not-faster":
        f.severity = "low"
        f.title += " (measured: not faster with the fix)"
        f.advice = (
            f"a note, not a fix: measured with {what}, "
            + ("the spill goes but " if m.kind == "work_mem" else "")
            + f"the statement is not materially faster ({timing}, {len(m.before_ms)} runs each)"
        )
    else:
        f.severity = severity_from_saving(f.predicted_saving) if f.predicted_saving else f.severity
        f.advice = f"measured: {what}: {timing}" + (f"; {f.advice}" if f.advice and m.kind != "work_mem" else "")


def _same_fix(f: Finding, lead: Finding, m: FixMeasurement) -> None:
    """A second spill of a statement whose work_mem fix was measured on the first: one fix,
    counted once."""
    f.verification = _verification(m)
    if m.outcome in MEASURED_OUTCOMES:
        f.heuristic_saving, f.predicted_saving = f.predicted_saving, Saving(0.0, 0.0, 0.0)
        f.saving_method, f.severity = "measured", "low"
        f.fix_sql = m.fix_sql or f.fix_sql
        f.advice = f"the same fix as {lead.id} ({m.fix}), measured there"


def _real_index_saving(f: Finding, snapshot: Snapshot) -> Saving | None:
    """missing-index --verify-real: the index was built and each statement timed."""
    share = total = 0.0
    calls = 0
    for e in f.evidence.get("statements") or []:
        statement = snapshot.statement(e.get("queryid") or "")
        if statement is None or not e.get("ms_before") or e.get("ms_after") is None:
            continue
        s = saving_from_share(
            statement.total_exec_time_ms,
            1 - e["ms_after"] / e["ms_before"],
            snapshot.total_exec_time_ms,
            statement.calls,
        )
        share, total, calls = share + s.share_of_total_time, total + (s.total_ms or 0), calls + statement.calls
    if not total:
        return None
    return Saving(round(min(1.0, share), 6), round(total / calls, 4) if calls else None, round(total, 3))


def apply_measurements(snapshot: Snapshot, findings: list[Finding]) -> list[Finding]:
    verification = snapshot.fix_verification
    by_id = {m.finding_id: m for m in verification.measurements} if verification else {}
    spill_by_statement = {m.queryid: m for m in by_id.values() if m.kind == "work_mem"}
    leads = {f.id: f for f in findings if f.id in by_id}
    for f in findings:
        m = by_id.get(f.id)
        if m is not None:
            _measured(f, m, snapshot)
        elif f.check in SPILL_CHECKS and f.queryids and f.queryids[0] in spill_by_statement:
            m = spill_by_statement[f.queryids[0]]
            if m.finding_id in leads:
                _same_fix(f, leads[m.finding_id], m)
        if f.predicted_saving is None or f.saving_method == "measured":
            continue
        method = f.verification.method if f.verification else None
        if method == "real" and f.check == "missing-index":
            real = _real_index_saving(f, snapshot)
            if real is not None:
                f.heuristic_saving, f.predicted_saving, f.saving_method = f.predicted_saving, real, "measured"
                f.confidence = METHOD_CONFIDENCE["measured"]
                continue
        f.saving_method = "hypothetical" if method in ("hypothetical", "real") else "heuristic"
        if CONFIDENCE_RANK.get(f.confidence, 9) < CONFIDENCE_RANK[METHOD_CONFIDENCE[f.saving_method]]:
            f.confidence = METHOD_CONFIDENCE[f.saving_method]
    return findings
