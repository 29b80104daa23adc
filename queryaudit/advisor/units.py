"""Storage sizes in the unit the user writes: MB = 10^6 bytes, MiB = 2^20 bytes (IEC),
the way PostgreSQL's own pg_size_pretty does not (it prints MiB as "MB"); the output
always names its unit."""

from __future__ import annotations

import re

from queryaudit.errors import AuditError

UNITS = {
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_size(text: str) -> int:
    """'500MB' -> 500000000, '1GiB' -> 1073741824, '250 mb', '1.5GB'; a bare number is MB."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text or "")
    unit = (m.group(2) or "MB").lower() if m else None
    if not m or unit not in UNITS:
        raise AuditError(
            f"--index-budget {text!r}: write a size with its unit, e.g. 500MB (10^6 bytes) or 1GiB (2^30 bytes)"
        )
    return int(float(m.group(1)) * UNITS[unit])


def megabytes(n: int) -> str:
    """A size in MB (10^6 bytes), with its unit."""
    return f"{n / 10**6:.1f} MB"


def budget_bytes_from(budget: str | None, budget_mb: float | None) -> int | None:
    """advise-indexes --index-budget (with its unit) or --index-budget-mb (MB), not both."""
    if budget is not None and budget_mb is not None:
        raise AuditError("give --index-budget or --index-budget-mb, not both")
    if budget is not None:
        return parse_size(budget)
    return int(budget_mb * UNITS["mb"]) if budget_mb is not None else None
