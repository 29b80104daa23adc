"""Helpers the three lock checks share (not a check: the name starts with an underscore)."""
from __future__ import annotations

from queryaudit.lock_facts import LockFacts, LockStatement
from queryaudit.snapshot import Snapshot
from queryaudit.sql import quote_ident


def lock_facts(snapshot: Snapshot) -> list[LockFacts]:
    return [f for f in (snapshot.lock_samples, snapshot.lock_log) if f is not None]


def describe(facts: LockFacts, key: str | None, snapshot: Snapshot | None) -> dict:
    """A statement as evidence: its queryid and text (pg_stat_statements' text when it has one)."""
    stmt: LockStatement | None = facts.statement(key)
    if stmt is None:
        return {"statement": key, "queryid": None, "query": None}
    known = snapshot.statement(stmt.queryid) if snapshot is not None and stmt.queryid else None
    return {"statement": key, "queryid": stmt.queryid, "query": known.query if known else stmt.query}


def real_queryids(facts: LockFacts, keys) -> list[str]:
    """pg_stat_statements queryids only (a text fingerprint is not one)."""
    out = []
    for key in keys:
        stmt = facts.statement(key)
        if stmt and stmt.queryid and stmt.queryid not in out:
            out.append(stmt.queryid)
    return out


def short(text: str | None, limit: int = 70) -> str:
    one = " ".join((text or "?").split())
    return one if len(one) <= limit else one[: limit - 1] + "…"


def setting_is_off(facts: LockFacts, name: str) -> bool:
    """Off on the server (the sampler records pg_settings.reset_val, not the audit
    session's own timeouts); unknown counts as off."""
    value = (facts.settings or {}).get(name)
    return value is None or value.split()[0] in ("0", "")


def alter_database_sql(snapshot: Snapshot, name: str, value: str) -> str:
    return f"ALTER DATABASE {quote_ident(snapshot.server.database or 'postgres')} SET {name} = '{value}';"
