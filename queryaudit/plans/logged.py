"""Concrete text from the server log (--log), preferred to values the audit draws itself.

The log holds what pg_stat_statements throws away: the values. A statement logged by
log_min_duration_statement carries its literals in the text, or its bind values in
`DETAIL: parameters: $1 = '42', ...`; auto_explain logs the whole plan of a slow one.
Plan capture uses them in that order of preference, and the index advisor considers the
statements seen only in the log (never in pg_stat_statements: reset since, evicted,
another database's statistics). Pure: reads snapshot.logs (queryaudit.logs).
"""

from __future__ import annotations

import hashlib

from queryaudit.logs.facts import LogStatement
from queryaudit.plans.explain import parameter_count
from queryaudit.plans.text import load_plan
from queryaudit.snapshot import Snapshot, Statement
from queryaudit.sql import fingerprint, statement_kind


def logged_statement(snapshot: Snapshot, statement: Statement) -> LogStatement | None:
    """The log's entry for a pg_stat_statements statement: by queryid (%Q, csvlog/jsonlog
    14+), else by fingerprint (pglast: constants and placeholders alike)."""
    if snapshot.logs is None:
        return None
    return snapshot.logs.statement_for(statement.queryid, fingerprint(statement.query))


def _unquote(value: str) -> str | None:
    """A value as the log quotes it ('it''s', NULL) -> the text to bind, None for NULL."""
    value = value.strip()
    if value.upper() == "NULL":
        return None
    if len(value) >= 2 and value[0] == "'" and value[-1] == "'":
        return value[1:-1].replace("''", "'")
    return value


def logged_values(logged: LogStatement) -> tuple[str, list[str]] | None:
    """(text, values) to EXPLAIN ANALYZE: the logged literal text (no values needed), or a
    parameterized text with the values of one logged execution. None when the log has
    neither (a parameterized text logged without its DETAIL line, a NULL value)."""
    text = logged.query
    if statement_kind(text) not in ("read", "dml"):
        return None
    wanted = parameter_count(text)
    if wanted == 0:
        return text, []
    values = [_unquote(v) for v in logged.example_parameters]
    if len(values) < wanted or any(v is None for v in values[:wanted]):
        return None
    return text, values[:wanted]


def logged_plan(logged: LogStatement) -> dict | None:
    """The auto_explain plan (JSON, or text parsed into the same structure), if logged."""
    if isinstance(logged.plan, dict) and "Plan" in logged.plan:
        return logged.plan
    if logged.plan_text:
        try:
            return load_plan(logged.plan_text)
        except ValueError:
            return None
    return None


def log_only_statements(snapshot: Snapshot) -> list[Statement]:
    """Statements the log shows that pg_stat_statements does not, with the log's times."""
    if snapshot.logs is None:
        return []
    known_ids = {s.queryid for s in snapshot.statements}
    known_prints = {fingerprint(s.query) for s in snapshot.statements} - {None}
    found = []
    for logged in snapshot.logs.statements:
        if logged.queryid in known_ids or (logged.fingerprint and logged.fingerprint in known_prints):
            continue
        if statement_kind(logged.query) not in ("read", "dml") or not logged.count:
            continue
        queryid = logged.queryid or str(-int(hashlib.sha1(logged.key.encode()).hexdigest()[:15], 16))
        found.append(
            Statement(
                queryid=queryid,
                query=logged.query,
                calls=logged.count,
                total_exec_time_ms=logged.total_ms,
                mean_exec_time_ms=logged.total_ms / logged.count,
                rows=0,
            )
        )
    return found
