"""Table lock modes: what each blocks, in the words a reviewer needs (PostgreSQL docs, 13.3.1)."""

from __future__ import annotations

ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"
EXCLUSIVE = "EXCLUSIVE"
SHARE_ROW_EXCLUSIVE = "SHARE ROW EXCLUSIVE"
SHARE = "SHARE"
SHARE_UPDATE_EXCLUSIVE = "SHARE UPDATE EXCLUSIVE"
ROW_EXCLUSIVE = "ROW EXCLUSIVE"
ROW_SHARE = "ROW SHARE"
ACCESS_SHARE = "ACCESS SHARE"

STRENGTH = [
    ACCESS_SHARE,
    ROW_SHARE,
    ROW_EXCLUSIVE,
    SHARE_UPDATE_EXCLUSIVE,
    SHARE,
    SHARE_ROW_EXCLUSIVE,
    EXCLUSIVE,
    ACCESS_EXCLUSIVE,
]

BLOCKS = {
    ACCESS_EXCLUSIVE: "all reads and writes of the table (SELECT, INSERT, UPDATE, DELETE) "
    "and queue everything behind it",
    EXCLUSIVE: "all writes; only plain SELECT continues",
    SHARE_ROW_EXCLUSIVE: "writes (INSERT, UPDATE, DELETE) and other schema changes; reads continue",
    SHARE: "writes (INSERT, UPDATE, DELETE); reads continue",
    SHARE_UPDATE_EXCLUSIVE: "other schema changes, VACUUM and ANALYZE; reads and writes continue",
    ROW_EXCLUSIVE: "only SHARE and stronger locks (CREATE INDEX, most DDL); reads and writes continue",
    ROW_SHARE: "only EXCLUSIVE and ACCESS EXCLUSIVE locks",
    ACCESS_SHARE: "only ACCESS EXCLUSIVE (most ALTER TABLE, DROP, TRUNCATE, VACUUM FULL)",
}


def from_pg_locks(mode: str) -> str:
    """'ShareUpdateExclusiveLock' (pg_locks.mode) -> 'SHARE UPDATE EXCLUSIVE'."""
    name = mode[:-4] if mode.endswith("Lock") else mode
    words, current = [], ""
    for ch in name:
        if ch.isupper() and current:
            words.append(current)
            current = ch
        else:
            current += ch
    words.append(current)
    return " ".join(words).upper()


def strongest(modes) -> str | None:
    known = [m for m in modes if m in STRENGTH]
    return max(known, key=STRENGTH.index) if known else None


def blocks(mode: str | None) -> str | None:
    return BLOCKS.get(mode) if mode else None
