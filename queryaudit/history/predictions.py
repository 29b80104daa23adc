"""Predicted against realized: what a fix was expected to save, per statement, next to what
the next audit measured. Pure.

A finding's prediction per statement is, in order: the fraction of its time the fix
removes (the finding's per-statement evidence, e.g. missing-index's cost before/after),
the verification's before/after (hypothetical or real), else its predicted ms per call
(one statement). Realized: the mean before minus the mean after. The error factor is
predicted / realized saving; a prediction is flagged when it is off by more than
OFF_FACTOR either way, or when nothing was saved at all.
"""

from __future__ import annotations

import statistics

OFF_FACTOR = 2.0


def prediction_of(finding: dict) -> dict | None:
    """What a finding predicts its fix saves, per statement; None without a fix or a figure."""
    if not finding.get("fix_sql"):
        return None
    statements: dict[str, dict] = {}
    for s in (finding.get("evidence") or {}).get("statements") or []:
        if isinstance(s, dict) and s.get("queryid") and s.get("fraction_removed") is not None:
            statements[str(s["queryid"])] = {"fraction": float(s["fraction_removed"])}
    verification = finding.get("verification") or {}
    before, after = verification.get("before") or {}, verification.get("after") or {}
    for key in ("ms", "cost"):
        if not statements and before.get(key) and after.get(key) is not None:
            fraction = 1.0 - after[key] / before[key]
            statements = {q: {"fraction": fraction} for q in finding.get("queryids") or []}
    saving = finding.get("predicted_saving") or {}
    if not statements and saving.get("ms_per_call") and len(finding.get("queryids") or []) == 1:
        statements = {finding["queryids"][0]: {"ms_per_call": saving["ms_per_call"]}}
    if not statements:
        return None
    return {"kind": finding.get("check"), "fix_sql": finding["fix_sql"], "statements": statements}


def _predicted_ms(entry: dict, mean_before: float) -> float:
    if "fraction" in entry:
        return max(0.0, entry["fraction"]) * mean_before
    return float(entry["ms_per_call"])


def predicted_vs_realized(applied: list[dict], rows_by_before_id: dict[str, dict]) -> list[dict]:
    """One line per applied fix and statement it predicted for, measured on both sides.
    `applied`: findings of the first report whose fix was applied (each with its prediction
    or enough to build one); rows: compared statements by their queryid in the first report."""
    out = []
    for finding in applied:
        prediction = finding.get("prediction") or prediction_of(finding)
        if not prediction:
            out.append(_unmeasured(finding, None, None, "its finding predicted no saving per statement"))
            continue
        for queryid, entry in prediction["statements"].items():
            row = rows_by_before_id.get(queryid)
            mb, ma = (
                ((row or {}).get("before") or {}).get("mean_exec_time_ms"),
                ((row or {}).get("after") or {}).get("mean_exec_time_ms"),
            )
            if mb is None or ma is None:
                out.append(_unmeasured(finding, prediction, row, "the statement did not run in both reports"))
                continue
            predicted, realized = _predicted_ms(entry, mb), mb - ma
            factor = predicted / realized if realized > 0 and predicted > 0 else None
            off = factor is None or not (1 / OFF_FACTOR <= factor <= OFF_FACTOR)
            out.append(
                {
                    "finding": finding["id"],
                    "fix_kind": prediction["kind"],
                    "fix_sql": prediction["fix_sql"],
                    "queryid": queryid,
                    "query": row["query"],
                    "mean_before_ms": mb,
                    "mean_after_ms": ma,
                    "predicted_saving_ms": round(predicted, 4),
                    "realized_saving_ms": round(realized, 4),
                    "predicted_share": round(predicted / mb, 4) if mb else None,
                    "realized_share": round(realized / mb, 4) if mb else None,
                    "error_factor": round(factor, 3) if factor is not None else None,
                    "status": row["status"],
                    "off_by_more_than_2x": off,
                    "error_note": None
                    if factor is not None
                    else ("nothing saved" if realized <= 0 else "no saving predicted"),
                }
            )
    return out


def _unmeasured(finding: dict, prediction: dict | None, row: dict | None, note: str) -> dict:
    """An applied fix (or one of its statements) with nothing to hold it against: listed, not scored."""
    return {
        "finding": finding["id"],
        "fix_kind": (prediction or {}).get("kind") or finding.get("check"),
        "fix_sql": finding.get("fix_sql"),
        "queryid": (row or {}).get("queryid"),
        "query": (row or {}).get("query"),
        "mean_before_ms": None,
        "mean_after_ms": None,
        "predicted_saving_ms": None,
        "realized_saving_ms": None,
        "predicted_share": None,
        "realized_share": None,
        "error_factor": None,
        "status": (row or {}).get("status"),
        "off_by_more_than_2x": False,
        "note": note,
    }


def scored(lines: list[dict]) -> list[dict]:
    """The lines that hold a prediction against a measurement (the track record's)."""
    return [line for line in lines if not line.get("note")]


def error_of(line: dict) -> float:
    """How far off a prediction was, as a factor >= 1 (infinite when nothing was saved)."""
    factor = line.get("error_factor")
    if not factor:
        return float("inf")
    return max(factor, 1 / factor)


def track_record(lines: list[dict]) -> dict[str, dict]:
    """Median error factor of predictions by fix kind (the tool's own track record)."""
    by_kind: dict[str, list[float]] = {}
    for line in lines:
        by_kind.setdefault(line["fix_kind"] or "?", []).append(error_of(line))
    return {
        kind: {
            "predictions": len(errors),
            "median_error_factor": _finite(statistics.median(errors)),
            "off_by_more_than_2x": sum(1 for e in errors if e > OFF_FACTOR),
        }
        for kind, errors in sorted(by_kind.items())
    }


def _finite(value: float) -> float | None:
    return round(value, 3) if value != float("inf") else None  # JSON has no infinity: "never saved"


def prediction_text(line: dict) -> str:
    if line.get("note"):
        return f"{line['fix_kind']} {line['finding']}: not measured ({line['note']})"
    note = f": {line['error_note']}" if line.get("error_note") else ""
    flag = f" (off by more than 2x{note})" if line["off_by_more_than_2x"] else ""
    return (
        f"{line['fix_kind']} {line['finding']}: predicted {line['predicted_saving_ms']:.3g} ms/call saved, "
        f"realized {line['realized_saving_ms']:.3g} ms/call ({line['mean_before_ms']:.3g} -> "
        f"{line['mean_after_ms']:.3g} ms){flag}"
    )
