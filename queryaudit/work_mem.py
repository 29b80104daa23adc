"""work_mem for a spill: how much memory holds it, and the SQL that grants it to one
statement. Shared by the spill checks (their fix SQL) and fix verification (what it tries)."""

from __future__ import annotations


def work_mem_for(kilobytes: float) -> str:
    """A work_mem that holds `kilobytes` in memory, rounded up to a power-of-two MB.

    An in-memory sort or hash needs more than its on-disk size (tuple headers and
    pointers): twice the spilled size is the usual rule of thumb."""
    needed_mb = max(1.0, 2 * kilobytes / 1024)
    mb = 1
    while mb < needed_mb:
        mb *= 2
    return f"{mb}MB" if mb < 1024 else f"{mb // 1024}GB"


def scoped_work_mem_sql(value: str) -> str:
    return (
        f"-- for this statement only, inside its transaction:\nSET LOCAL work_mem = '{value}';\n"
        f"-- or for the role that runs it:\n-- ALTER ROLE <app_role> SET work_mem = '{value}';"
    )


def block_size(snapshot) -> int:
    """The server's block size in bytes (temp blocks are counted in it)."""
    try:
        return int(snapshot.server.settings.get("block_size") or 8192)
    except ValueError:
        return 8192
