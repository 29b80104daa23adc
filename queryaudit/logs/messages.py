"""Log records -> typed events: what each PostgreSQL message means.

The message texts are PostgreSQL's own (postgres.c, proc.c, deadlock.c, fd.c,
auto_explain.c); they are not translated when `lc_messages` is C or English, which
log analysis assumes (pgBadger does too).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from queryaudit.logs.events import LockEvent, LogEvent, PlanEvent, SessionEndEvent, StatementEvent, TempFileEvent
from queryaudit.logs.reader import Record

_DURATION = re.compile(r"duration: (\d+(?:\.\d+)?) ms(?:  (.*))?\Z", re.S)
# `statement: ...`, `execute S_1: ...`, `execute fetch from S_1/C_1: ...`, `parse <unnamed>: ...`, `bind ...`
_STATEMENT = re.compile(r"(statement|execute|parse|bind)(?: ([^:]*?))?: (.*)\Z", re.S)
_PARAM = re.compile(r"\$(\d+) = (NULL|'(?:[^']|'')*'(?:\.\.\.)?)")
_LOCK_LINE = re.compile(
    r"process (\d+) (still waiting for|acquired|avoided deadlock for|detected deadlock "
    r"while waiting for) (\S+) on (.+?)(?: by rearranging queue order)? after "
    r"(\d+(?:\.\d+)?) ms"
)
_LOCK_KIND = {
    "still waiting for": "waiting",
    "acquired": "acquired",
    "avoided deadlock for": "deadlock-avoided",
    "detected deadlock while waiting for": "detected",
}
_HOLDERS = re.compile(r"Process(?:es)? holding the lock: ([\d, ]*)\. Wait queue: ([\d, ]*)\.")
_REL_OID = re.compile(r"relation (\d+)")
_DB_OID = re.compile(r"of database (\d+)")
_REL_NAME = re.compile(r'(?:in|of) relation "([^"]+)"')
_TEMP = re.compile(r'temporary file: path "([^"]*)", size (\d+)')
_DEADLOCK_WAIT = re.compile(r"Process (\d+) waits for (\S+) on (.+?); blocked by process (\d+)\.")


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _none_if_zero(value: str | None) -> str | None:
    return None if value in (None, "", "0") else value


def _header(rec: Record) -> dict:
    h = rec.header
    return {
        "timestamp": h.get("timestamp"),
        "pid": _int(h.get("pid")),
        "session_id": h.get("session_id") or None,
        "line_num": _int(h.get("line_num")),
        "vxid": h.get("vxid") or None,
        "xid": _none_if_zero(h.get("xid")),
        "user": h.get("user") or None,
        "database": h.get("database") or None,
        "application": h.get("application") or None,
        "host": h.get("host") or h.get("remote") or None,
        "queryid": _none_if_zero(h.get("queryid")),
        "sqlstate": h.get("sqlstate") or None,
        "severity": rec.severity,
        "source": rec.source,
    }


def parse_parameters(text: str | None) -> list[str]:
    """`parameters: $1 = '42', $2 = NULL` -> ["'42'", "NULL"], in $n order (18 writes `Parameters:`)."""
    if not text or "arameters:" not in text:
        return []
    found = sorted(((int(n), v) for n, v in _PARAM.findall(text)), key=lambda p: p[0])
    return [v for _, v in found]


def _lock_object(obj: str) -> tuple[str, int | None, int | None]:
    """`tuple (0,1) of relation 16384 of database 5` -> ('tuple', 16384, 5)."""
    lock_type = re.split(r" [\d(\[]", obj, maxsplit=1)[0]
    rel = _REL_OID.search(obj)
    db = _DB_OID.search(obj)
    return lock_type, int(rel.group(1)) if rel else None, int(db.group(1)) if db else None


def _plan_event(header: dict, duration: float, body: str) -> PlanEvent:
    body = body.strip("\n")
    stripped = body.strip()
    if stripped.startswith("{"):
        try:
            plan = json.loads(stripped)
        except ValueError:
            plan = None
        if isinstance(plan, dict):
            return PlanEvent(**header, duration_ms=duration, query=str(plan.get("Query Text") or ""), plan_json=plan)
    query, _, tree = body.partition("\n")
    query = query.strip()
    if query.startswith("Query Text: "):
        query = query[len("Query Text: ") :]
    else:
        query, tree = "", body
    return PlanEvent(**header, duration_ms=duration, query=query, plan_text=tree)


def to_events(rec: Record) -> Iterator[LogEvent]:
    msg = rec.message
    if rec.severity == "LOG":
        duration = None
        rest = msg
        if msg.startswith("duration: "):
            m = _DURATION.match(msg)
            if m is None:
                return
            duration = float(m.group(1))
            rest = m.group(2)
            if rest is None:  # log_duration alone: the statement was logged before, without it
                return
            if rest.startswith("plan:"):
                yield _plan_event(_header(rec), duration, rest[5:])
                return
        m = _STATEMENT.match(rest)
        if m is not None:
            phase, name, query = m.groups()
            yield StatementEvent(
                **_header(rec),
                query=query,
                duration_ms=duration,
                phase="simple" if phase == "statement" else phase,
                prepared_name=name,
                parameters=parse_parameters(rec.detail) if phase != "statement" else [],
            )
            return
        if msg.startswith("process "):
            m = _LOCK_LINE.match(msg)
            if m is not None:
                pid, kind, mode, obj, waited = m.groups()
                lock_type, rel, db = _lock_object(obj)
                holders = _HOLDERS.search(rec.detail or "")
                name = _REL_NAME.search(rec.context or "")
                yield LockEvent(
                    **_header(rec),
                    kind=_LOCK_KIND[kind],
                    lock_mode=mode,
                    lock_object=obj,
                    lock_type=lock_type,
                    relation_oid=rel,
                    database_oid=db,
                    waited_ms=float(waited),
                    holders=[int(p) for p in holders.group(1).split(",") if p.strip()] if holders else [],
                    wait_queue=([int(p) for p in holders.group(2).split(",") if p.strip()] if holders else []),
                    relation_name=name.group(1) if name else None,
                    statement=rec.statement,
                    detail=rec.detail,
                    context=rec.context,
                )
            return
        if msg.startswith("temporary file: "):
            m = _TEMP.match(msg)
            if m is not None:
                yield TempFileEvent(
                    **_header(rec), path=m.group(1), size_bytes=int(m.group(2)), statement=rec.statement
                )
            return
        if msg.startswith("disconnection: "):
            yield SessionEndEvent(**_header(rec))
        return
    if rec.severity == "ERROR":
        if msg.startswith("deadlock detected"):
            waits = _DEADLOCK_WAIT.findall(rec.detail or "")
            header = _header(rec)
            first = waits[0] if waits else None
            lock_type, rel, db = _lock_object(first[2]) if first else (None, None, None)
            name = _REL_NAME.search(rec.context or "")
            yield LockEvent(
                **header,
                kind="deadlock",
                lock_mode=first[1] if first else None,
                lock_object=first[2] if first else None,
                lock_type=lock_type,
                relation_oid=rel,
                database_oid=db,
                holders=sorted({int(w[3]) for w in waits}),
                wait_queue=sorted({int(w[0]) for w in waits}),
                relation_name=name.group(1) if name else None,
                statement=rec.statement,
                detail=rec.detail,
                context=rec.context,
            )
        elif msg.startswith("canceling statement due to lock timeout") or msg.startswith("could not obtain lock"):
            name = _REL_NAME.search(msg) or _REL_NAME.search(rec.context or "")
            yield LockEvent(
                **_header(rec),
                kind="timeout",
                relation_name=name.group(1) if name else None,
                lock_type="tuple" if " on row " in msg else ("relation" if "relation" in msg else None),
                statement=rec.statement,
                detail=rec.detail,
                context=rec.context,
            )
