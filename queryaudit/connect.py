"""Safe sessions on the audited server, DSN resolution and one-line connection errors.

Every session the auditor opens is read-only by default and bounded in time, so an
audit of a production replica can neither write nor hold anything for long.
"""

from __future__ import annotations

import os
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import conninfo, sql
from psycopg.rows import dict_row

from queryaudit.errors import AuditError

APPLICATION_NAME = "queryaudit"
# Every statement the auditor sends ends with this comment, so its own statements can be
# left out of the workload it audits. At the end, not the start: PostgreSQL 18 stores
# a statement's text from its first token, dropping leading comments.
MARKER = "/* queryaudit */"
OWN_STATEMENT_PATTERN = "%" + MARKER  # LIKE pattern over pg_stat_statements.query


# What the audit itself cost the server, counted client-side: pg_stat_statements may
# evict the auditor's own entries when it is full (pg_stat_statements.max).
AUDIT_COST = {"statements": 0, "ms": 0.0}


def marked(text: str) -> str:
    """A statement's text with the auditor's mark at its end."""
    return text + "\n" + MARKER


class MarkedCursor(psycopg.Cursor):
    def execute(self, query, params=None, **kwargs):
        if isinstance(query, str):
            query = marked(query)
        elif isinstance(query, sql.Composable):
            query = sql.Composed([query, sql.SQL("\n" + MARKER)])
        started = time.perf_counter()
        try:
            return super().execute(query, params, **kwargs)
        finally:
            AUDIT_COST["statements"] += 1
            AUDIT_COST["ms"] += (time.perf_counter() - started) * 1000


@dataclass(frozen=True)
class SessionLimits:
    statement_timeout_ms: int = 30_000
    lock_timeout_ms: int = 1_000
    idle_in_transaction_timeout_ms: int = 60_000
    connect_timeout_s: int = 10


# The libpq variables that name a server or database (PGPASSWORD alone names nothing).
LIBPQ_TARGET_VARIABLES = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE", "PGSERVICEFILE")


def resolve_dsn(dsn: str | None) -> str:
    """--dsn, else DATABASE_URL, else libpq's own PG* variables (an empty conninfo)."""
    if dsn:
        return dsn
    return os.environ.get("DATABASE_URL", "")


def redact_dsn(dsn: str) -> str:
    """The DSN as it may be shown: never the password."""
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", dsn)
    params.pop("password", None)
    return conninfo.make_conninfo("", **params)


def describe_target(dsn: str) -> tuple[str | None, str | None]:
    """(host, dbname) from a DSN and the PG* environment, without a password."""
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        params = {}
    host = params.get("host") or os.environ.get("PGHOST")
    db = params.get("dbname") or os.environ.get("PGDATABASE")
    return (str(host) if host is not None else None), (str(db) if db is not None else None)


def connection_error_message(exc: Exception, dsn: str) -> str:
    """Turn libpq's multi-line message into one line that says what to do."""
    text = str(exc).strip()
    if isinstance(exc, psycopg.ProgrammingError):  # raised before any network I/O: the string itself
        return f"invalid connection string ({text.splitlines()[0]}): use key=value pairs or a postgresql:// URI"
    where = redact_dsn(dsn) or "the server from PG* environment variables"
    password = _password_of(dsn)
    if m := re.search(r'database "([^"]+)" does not exist', text):
        msg = f'database "{m.group(1)}" does not exist on {where}: check the database name in the DSN'
    elif "password authentication failed" in text or "no password supplied" in text:
        user = re.search(r'user "([^"]+)"', text)
        msg = (
            f"authentication failed for user {user.group(1) if user else ''} on {where}: "
            "check the password (PGPASSWORD or ~/.pgpass)"
        ).replace("user  on", "user on")
    elif role := re.search(r'role "([^"]+)" does not exist', text):
        msg = f'role "{role.group(1)}" does not exist on {where}: check the user name in the DSN'
    elif any(
        s in text
        for s in (
            "Connection refused",
            "could not connect",
            "timeout expired",
            "No such file or directory",
            "could not translate host name",
            "Network is unreachable",
        )
    ):
        if not dsn and not any(os.environ.get(v) for v in LIBPQ_TARGET_VARIABLES):
            # libpq tried its default, the local socket: what is missing is the DSN.
            return (
                "no DSN given (and no server on the local socket): pass --dsn postgresql://user@host:5432/dbname, "
                "or set DATABASE_URL or PGHOST/PGDATABASE/PGUSER"
            )
        msg = f"cannot reach the PostgreSQL server at {where}: is it running and accepting TCP connections there?"
    else:
        msg = f"cannot connect to {where}: {text.splitlines()[-1] if text else type(exc).__name__}"
    if password:
        msg = msg.replace(password, "***")
    return msg


def _password_of(dsn: str) -> str | None:
    try:
        password = conninfo.conninfo_to_dict(dsn).get("password")
        return str(password) if password else os.environ.get("PGPASSWORD")
    except psycopg.ProgrammingError:
        return os.environ.get("PGPASSWORD")


def apply_session_settings(conn: psycopg.Connection, limits: SessionLimits, read_only: bool = True) -> None:
    settings = {
        "statement_timeout": f"{limits.statement_timeout_ms}ms",
        "lock_timeout": f"{limits.lock_timeout_ms}ms",
        "idle_in_transaction_session_timeout": f"{limits.idle_in_transaction_timeout_ms}ms",
        "application_name": APPLICATION_NAME,
    }
    if read_only:
        settings["default_transaction_read_only"] = "on"
    for name, value in settings.items():
        conn.execute(sql.SQL("SELECT set_config({}, {}, false)").format(sql.Literal(name), sql.Literal(value)))


def open_session(dsn: str, limits: SessionLimits = SessionLimits(), read_only: bool = True) -> psycopg.Connection:
    """A connection in autocommit mode (no transaction left idle), read-only, with timeouts."""
    try:
        conn = psycopg.connect(
            dsn,
            autocommit=True,
            connect_timeout=limits.connect_timeout_s,
            application_name=APPLICATION_NAME,
            cursor_factory=MarkedCursor,
        )
    except psycopg.Error as exc:
        raise AuditError(connection_error_message(exc, dsn)) from None
    try:
        apply_session_settings(conn, limits, read_only)
    except psycopg.Error as exc:
        conn.close()
        raise AuditError(f"cannot configure the audit session: {str(exc).strip().splitlines()[0]}") from None
    return conn


@contextmanager
def session(dsn: str, limits: SessionLimits = SessionLimits(), read_only: bool = True):
    conn = open_session(dsn, limits, read_only)
    try:
        yield conn
    finally:
        conn.close()


# Query results are read by name (tests/test_named_rows.py): rows as dicts keyed by the
# SELECT's column names, and one value through `scalar`, the one place a row is indexed.
def named_rows(conn: psycopg.Connection, query, params=None) -> list[dict]:
    return conn.cursor(row_factory=dict_row).execute(query, params).fetchall()


def named_row(conn: psycopg.Connection, query, params=None) -> dict:
    """The row of a query that always returns one (an aggregate, a function call)."""
    row = conn.cursor(row_factory=dict_row).execute(query, params).fetchone()
    if row is None:
        raise AuditError("the server returned no row where one was expected")
    return row


def scalar(conn: psycopg.Connection, query, params=None):
    """The value of a one-column query's first row; None when it returns no row."""
    row = conn.execute(query, params).fetchone()
    return row[0] if row else None


def first_column(cursor):
    """A psycopg row factory: each row as its first column's value (a list of keys or names)."""
    return lambda values: values[0]
