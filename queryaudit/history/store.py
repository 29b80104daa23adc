"""The audit history store: every audit of every target, in SQLite or PostgreSQL.

Where: `--store URL`, else $QUERYAUDIT_STORE, else the SQLite file
$XDG_DATA_HOME/queryaudit/history.db (~/.local/share/queryaudit/history.db). A URL is
`sqlite:///path`, a plain file path, or `postgresql://user@host/db` (any PostgreSQL;
psycopg 3 is the driver). Tables are prefixed `qa_` so a shared database stays tidy.

Schema: versioned in qa_schema_version, upgraded on open by ordered steps (MIGRATIONS),
each in one transaction under a lock, so two processes opening an old store at once
upgrade it once. Concurrent writers lose nothing: SQLite runs in WAL mode with a busy
timeout and takes its write lock at BEGIN (BEGIN IMMEDIATE); PostgreSQL serialises the
writers of one target with a transaction-scoped advisory lock; both retry a transaction
that hit a lock or serialisation conflict.

What is stored per audit: the target (host, port, database, system identifier; never a
password), times, pg_stat_statements markers (stats_reset, dealloc), every statement's
cumulative counters and its window numbers (windows.py), and the findings. Recording the
same snapshot twice keeps one copy. An old snapshot recorded after newer ones gets its
window against the audit before it; the windows already stored are not recomputed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from queryaudit import __version__
from queryaudit.errors import AuditError
from queryaudit.history.baseline import BLOCKS, AuditView, StatementMetrics, finding_object
from queryaudit.history.evidence import evidence_from_snapshot
from queryaudit.history.predictions import prediction_of, scored, track_record
from queryaudit.history.windows import COUNTERS, SUMSQ, AuditPoint, Sample, Window, compute_window, point_from_snapshot

STORE_ENV = "QUERYAUDIT_STORE"
RETRIES = 12
SQLITE_BUSY_TIMEOUT_MS = 30_000
MIGRATION_LOCK = 0x7161_6864  # advisory lock key for schema upgrades on PostgreSQL


def default_store_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "queryaudit" / "history.db"


def resolve_store_url(url: str | None) -> str:
    """--store, else $QUERYAUDIT_STORE, else the default SQLite file; a bare path is a SQLite file."""
    url = url or os.environ.get(STORE_ENV) or str(default_store_path())
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    scheme, rest = url.split("://", 1)
    if scheme in ("postgres", "postgresql", "postgresql+psycopg"):
        return f"postgresql+psycopg://{rest}"
    if scheme == "sqlite":
        return url
    raise AuditError(
        f"unsupported history store URL scheme {scheme!r}: use sqlite:///PATH, a file path, "
        "or postgresql://user@host/db"
    )


def display_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split("://", 1)[0] + "://…"


# -- schema: one list of columns per table and version; migrations and queries share it --


def _c(name, type_, references: str | None = None, **kw):
    # A factory: a Column belongs to one MetaData, and each schema version builds its own.
    return lambda: sa.Column(name, type_, *([sa.ForeignKey(references)] if references else []), **kw)


Double = sa.Double()
# The statement counters of schemas 1 and 2 (cumulative, then per-window deltas), frozen: a later
# counter is a later schema step.
V2_COUNTERS = ("calls", "total_exec_time_ms", "rows", "shared_blks_hit", "shared_blks_read", "temp_blks_written")
assert set(V2_COUNTERS) == set(COUNTERS)


def _counters(prefix: str = "") -> list:
    return [_c(f"{prefix}{c}", Double if c == "total_exec_time_ms" else sa.BigInteger) for c in V2_COUNTERS]


ROW_ID = _c("id", sa.Integer, primary_key=True, autoincrement=True)
SCHEMA: dict[int, dict[str, list]] = {
    1: {
        "qa_targets": [
            ROW_ID,
            _c("key", sa.Text, nullable=False, unique=True),
            _c("name", sa.Text),
            _c("host", sa.Text),
            _c("port", sa.Integer),
            _c("database", sa.Text),
            _c("created_at", sa.Text),
        ],
        "qa_audits": [
            ROW_ID,
            _c("target_id", sa.Integer, "qa_targets.id", nullable=False),
            _c("collected_at", sa.Text, nullable=False),
            _c("recorded_at", sa.Text),
            _c("tool_version", sa.Text),
            _c("server_version_num", sa.Integer),
            _c("pgss_stats_reset", sa.Text),
            _c("pgss_dealloc", sa.BigInteger),
            _c("statistics_since", sa.Text),
            _c("total_exec_time_ms", Double),
            _c("total_calls", sa.BigInteger),
            _c("statement_count", sa.Integer),
            _c("samples_complete", sa.Boolean),
            _c("partial", sa.Boolean),
        ],
        "qa_query_texts": [
            _c("target_id", sa.Integer, "qa_targets.id", primary_key=True),
            _c("queryid", sa.Text, primary_key=True),
            _c("query", sa.Text),
        ],
        "qa_statements": [
            ROW_ID,
            _c("audit_id", sa.Integer, "qa_audits.id", nullable=False),
            _c("queryid", sa.Text, nullable=False),
            _c("userid", sa.BigInteger),
            _c("toplevel", sa.Boolean),
            *_counters(),
        ],
        "qa_findings": [
            ROW_ID,
            _c("audit_id", sa.Integer, "qa_audits.id", nullable=False, index=True),
            _c("finding_id", sa.Text, nullable=False),
            _c("check_id", sa.Text),
            _c("severity", sa.Text),
            _c("title", sa.Text),
            _c("object", sa.Text),
            _c("saving_share", Double),
        ],
    },
    # 2: per-window deltas (windows.py) and the cluster's system identifier.
    2: {
        "qa_targets": [_c("system_identifier", sa.Text)],
        "qa_audits": [
            _c("system_identifier", sa.Text),
            _c("window_kind", sa.Text),
            _c("window_start", sa.Text),
            _c("window_note", sa.Text),
            _c("window_evicted", sa.BigInteger),
            _c("window_exec_time_ms", Double),
            _c("window_calls", sa.BigInteger),
        ],
        "qa_statements": [_c("stats_since", sa.Text), _c("window_kind", sa.Text), *_counters("d_")],
    },
    # 3: each statement's sum of squared times (its window spread, for Welch's test), and
    # when each index first appeared (an index younger than the unused-index window is not judged).
    3: {
        "qa_statements": [_c(SUMSQ, Double), _c(f"d_{SUMSQ}", Double)],
        "qa_index_seen": [
            _c("target_id", sa.Integer, "qa_targets.id", primary_key=True),
            _c("index_name", sa.Text, primary_key=True),
            _c("first_seen_at", sa.Text, nullable=False),
            _c("first_audit_id", sa.Integer),
        ],
    },
    # 4: what explains a change (evidence.py: plans, catalog state, settings, as JSON), each
    # finding's prediction (per statement) and the track record of predictions against outcomes.
    4: {
        "qa_audits": [_c("evidence", sa.Text)],
        "qa_findings": [_c("prediction", sa.Text)],
        "qa_prediction_outcomes": [
            ROW_ID,
            _c("target_id", sa.Integer, "qa_targets.id", nullable=False),
            _c("audit_id", sa.Integer, "qa_audits.id", nullable=False),
            _c("before_audit_id", sa.Integer),
            _c("finding_id", sa.Text),
            _c("fix_kind", sa.Text),
            _c("queryid", sa.Text),
            _c("predicted_ms", Double),
            _c("realized_ms", Double),
            _c("error_factor", Double),
        ],
    },
}
INDEXES = {
    1: [
        ("qa_audits_target_time", "qa_audits", ("target_id", "collected_at")),
        ("qa_statements_audit_query", "qa_statements", ("audit_id", "queryid")),
    ]
}
MIGRATION_NOTES = {
    1: "audits, statements (cumulative), findings",
    2: "per-window deltas and system identifier",
    3: "statement sum of squares (spread per window), index first seen",
    4: "evidence (plans, catalog, settings), finding predictions, prediction track record",
}
CURRENT_VERSION = max(SCHEMA)


def build_metadata(upto: int = CURRENT_VERSION) -> sa.MetaData:
    md = sa.MetaData()
    columns: dict[str, list] = {}
    for version in sorted(v for v in SCHEMA if v <= upto):
        for table, cols in SCHEMA[version].items():
            columns.setdefault(table, []).extend(cols)
    for table, cols in columns.items():
        sa.Table(table, md, *(c() for c in cols))
    for version in sorted(v for v in INDEXES if v <= upto):
        for name, table, cols in INDEXES[version]:
            sa.Index(name, *(md.tables[table].c[c] for c in cols))
    return md


VERSION_TABLE = sa.Table(
    "qa_schema_version",
    sa.MetaData(),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("description", sa.Text),
    sa.Column("applied_at", sa.Text),
)
MD = build_metadata()
T = MD.tables


def _step(version: int) -> Callable[[Connection], None]:
    def apply(conn: Connection) -> None:
        if version == 1:
            build_metadata(1).create_all(conn)
            return
        md = build_metadata(version)
        for table, cols in SCHEMA[version].items():
            if not any(table in SCHEMA[v] for v in SCHEMA if v < version):
                md.tables[table].create(conn)  # a table new in this version
                continue
            for factory in cols:
                column = factory()
                conn.exec_driver_sql(
                    f"ALTER TABLE {table} ADD COLUMN {column.name} {column.type.compile(dialect=conn.dialect)}"
                )
        for name, table, cols in INDEXES.get(version, []):
            conn.exec_driver_sql(f"CREATE INDEX {name} ON {table} ({', '.join(cols)})")

    return apply


MIGRATIONS = [(v, MIGRATION_NOTES[v], _step(v)) for v in sorted(SCHEMA)]


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _lock_key(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "big", signed=True)


@dataclass
class TargetIdentity:
    key: str
    name: str
    host: str | None
    port: int | None
    database: str
    system_identifier: str | None


def target_identity(server, name: str | None = None) -> TargetIdentity:
    """host:port/database unless the user names the target (a name survives DNS and IP changes).
    The system identifier is kept beside it: when it changes, another cluster answers there."""
    port = getattr(server, "port", None)
    key = name or f"{server.host or 'local'}:{port or 5432}/{server.database}"
    return TargetIdentity(
        key=key,
        name=name or key,
        host=server.host,
        port=port,
        database=server.database,
        system_identifier=getattr(server, "system_identifier", None),
    )


@dataclass
class Recorded:
    audit_id: int
    target: TargetIdentity
    window: Window
    previous_audit_id: int | None
    already_stored: bool = False


class Store:
    def __init__(self, url: str | None = None, create: bool = True, target_version: int = CURRENT_VERSION):
        self.url = resolve_store_url(url)
        self.display = display_url(self.url)
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            path = make_url(self.url).database
            if path and path != ":memory:":
                if not create and not Path(path).exists():
                    raise AuditError(
                        f"no audit history at {path}: record audits first "
                        "(queryaudit audit --store URL), or pass --store"
                    )
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.engine = self._engine()
        self.migrate(target_version)

    # -- connections and transactions ---------------------------------------------
    def _engine(self) -> Engine:
        try:
            if self.is_sqlite:
                engine = sa.create_engine(self.url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

                @sa.event.listens_for(engine, "connect")
                def on_connect(dbapi_conn, _record):
                    # We issue BEGIN ourselves (pysqlite's implicit transactions would take the
                    # write lock late, when two writers can deadlock on the upgrade).
                    dbapi_conn.isolation_level = None
                    dbapi_conn.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
                    dbapi_conn.execute("PRAGMA journal_mode = WAL")
                    dbapi_conn.execute("PRAGMA foreign_keys = ON")

                @sa.event.listens_for(engine, "begin")
                def on_begin(conn):
                    conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("qa_read") else "BEGIN IMMEDIATE")

                return engine
            return sa.create_engine(
                self.url,
                pool_pre_ping=True,
                connect_args={"connect_timeout": 10, "application_name": "queryaudit-history"},
            )
        except (ArgumentError, ImportError, SQLAlchemyError) as exc:
            raise AuditError(f"invalid history store URL {self.display}: {exc}") from None

    def _retryable(self, exc: Exception) -> bool:
        orig = getattr(exc, "orig", exc)
        if self.is_sqlite:
            text = str(orig).lower()
            return "locked" in text or "busy" in text
        return getattr(orig, "sqlstate", None) in ("40001", "40P01", "55P03", "23505")

    def _error(self, exc: Exception) -> AuditError:
        orig = getattr(exc, "orig", None) or exc
        text = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
        return AuditError(f"history store {self.display}: {text}")

    def transaction(self, fn: Callable[[Connection], object], read: bool = False):
        """Run fn(conn) in one transaction; retried on lock and serialisation conflicts."""
        for attempt in range(RETRIES):
            try:
                with self.engine.connect() as conn:
                    if read:
                        conn = conn.execution_options(qa_read=True)
                    with conn.begin():
                        return fn(conn)
            except DBAPIError as exc:
                if exc.connection_invalidated or not self._retryable(exc) or attempt == RETRIES - 1:
                    raise self._error(exc) from None
                time.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))
            except SQLAlchemyError as exc:
                raise self._error(exc) from None

    def _lock(self, conn: Connection, key: int) -> None:
        if not self.is_sqlite:  # SQLite: BEGIN IMMEDIATE already serialises writers
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})

    # -- schema --------------------------------------------------------------------
    def schema_version(self) -> int:
        def read(conn):
            if not sa.inspect(conn).has_table("qa_schema_version"):
                return 0
            return conn.execute(sa.select(sa.func.max(VERSION_TABLE.c.version))).scalar() or 0

        return self.transaction(read, read=True)

    def migrate(self, target_version: int = CURRENT_VERSION) -> list[int]:
        """Apply the steps the store lacks, up to target_version (the current one by default)."""

        def upgrade(conn):
            self._lock(conn, MIGRATION_LOCK)
            VERSION_TABLE.create(conn, checkfirst=True)
            current = conn.execute(sa.select(sa.func.max(VERSION_TABLE.c.version))).scalar() or 0
            if current > CURRENT_VERSION:
                raise AuditError(
                    f"history store {self.display} has schema version {current}, newer than this "
                    f"queryaudit understands ({CURRENT_VERSION}): upgrade queryaudit"
                )
            applied = []
            for version, note, step in MIGRATIONS:
                if current < version <= target_version:
                    step(conn)
                    conn.execute(VERSION_TABLE.insert().values(version=version, description=note, applied_at=now_iso()))
                    applied.append(version)
            return applied

        if self.schema_version() >= target_version:
            return []
        return self.transaction(upgrade)

    # -- writing -------------------------------------------------------------------
    def record(self, snapshot, report: dict, name: str | None = None) -> Recorded:
        """Store one audit and its window against the previous audit of the same target."""
        identity = target_identity(snapshot.server, name)
        point = point_from_snapshot(snapshot)

        def write(conn: Connection) -> Recorded:
            self._lock(conn, _lock_key(identity.key))
            target_id = self._target_id(conn, identity)
            audits = T["qa_audits"]
            existing = conn.execute(
                sa.select(audits.c.id).where(
                    audits.c.target_id == target_id, audits.c.collected_at == point.collected_at
                )
            ).first()
            if existing:  # the same snapshot recorded again: keep one copy
                prev_id, previous = self._point_before(conn, target_id, point.collected_at)
                return Recorded(existing[0], identity, compute_window(previous, point), prev_id, already_stored=True)
            prev_id, previous = self._point_before(conn, target_id, point.collected_at)
            window = compute_window(previous, point)
            counted = [e for e in window.entries if e.delta is not None]
            server = snapshot.server
            audit_id = conn.execute(
                audits.insert()
                .values(
                    target_id=target_id,
                    collected_at=point.collected_at,
                    recorded_at=now_iso(),
                    tool_version=snapshot.tool_version or __version__,
                    server_version_num=server.version_num,
                    pgss_stats_reset=server.pgss_stats_reset,
                    pgss_dealloc=server.pgss_dealloc,
                    statistics_since=point.statistics_since,
                    total_exec_time_ms=snapshot.total_exec_time_ms,
                    total_calls=snapshot.total_calls,
                    statement_count=snapshot.statement_count,
                    samples_complete=point.complete,
                    partial=snapshot.partial,
                    system_identifier=identity.system_identifier,
                    window_kind=window.kind,
                    window_start=window.start,
                    window_note=window.note,
                    window_evicted=window.evicted,
                    window_exec_time_ms=sum(e.delta["total_exec_time_ms"] for e in counted),
                    window_calls=int(sum(e.delta["calls"] for e in counted)),
                    evidence=json.dumps(report.get("evidence") or evidence_from_snapshot(snapshot), default=str),
                )
                .returning(audits.c.id)
            ).scalar_one()
            self._insert_texts(conn, target_id, point.samples.values())
            rows = []
            for entry in window.entries:
                s = entry.sample
                row = {
                    "audit_id": audit_id,
                    "queryid": s.queryid,
                    "userid": s.userid,
                    "toplevel": s.toplevel,
                    "stats_since": s.stats_since,
                    "window_kind": entry.kind,
                }
                row.update({c: getattr(s, c) for c in COUNTERS})
                row.update({f"d_{c}": (entry.delta[c] if entry.delta is not None else None) for c in COUNTERS})
                row[SUMSQ] = s.sumsq_exec_time
                row[f"d_{SUMSQ}"] = entry.delta.get(SUMSQ) if entry.delta is not None else None
                rows.append(row)
            if rows:
                conn.execute(T["qa_statements"].insert(), rows)
            findings = [
                {
                    "audit_id": audit_id,
                    "finding_id": f["id"],
                    "check_id": f["check"],
                    "severity": f["severity"],
                    "title": f["title"],
                    "object": finding_object(f),
                    "saving_share": (f.get("predicted_saving") or {}).get("share_of_total_time"),
                    "prediction": json.dumps(prediction_of(f)) if prediction_of(f) else None,
                }
                for f in report.get("findings", [])
            ]
            if findings:
                conn.execute(T["qa_findings"].insert(), findings)
            self._record_indexes(conn, target_id, audit_id, point.collected_at, snapshot)
            return Recorded(audit_id, identity, window, prev_id)

        return self.transaction(write)

    def _target_id(self, conn: Connection, identity: TargetIdentity) -> int:
        targets = T["qa_targets"]
        row = conn.execute(
            sa.select(targets.c.id, targets.c.system_identifier).where(targets.c.key == identity.key)
        ).first()
        if row is None:
            return conn.execute(
                targets.insert()
                .values(
                    key=identity.key,
                    name=identity.name,
                    host=identity.host,
                    port=identity.port,
                    database=identity.database,
                    system_identifier=identity.system_identifier,
                    created_at=now_iso(),
                )
                .returning(targets.c.id)
            ).scalar_one()
        if identity.system_identifier and row.system_identifier != identity.system_identifier:
            conn.execute(
                targets.update().where(targets.c.id == row.id).values(system_identifier=identity.system_identifier)
            )
        return row.id

    def _insert_texts(self, conn: Connection, target_id: int, samples) -> None:
        texts = T["qa_query_texts"]
        known = set(conn.execute(sa.select(texts.c.queryid).where(texts.c.target_id == target_id)).scalars())
        fresh = {}
        for s in samples:
            if s.queryid not in known:
                fresh.setdefault(s.queryid, s.query)
        if fresh:  # writers of one target are serialised (lock above), so no conflict here
            conn.execute(
                texts.insert(), [{"target_id": target_id, "queryid": q, "query": text} for q, text in fresh.items()]
            )

    # -- reading -------------------------------------------------------------------
    def _point_before(
        self, conn: Connection, target_id: int, collected_at: str
    ) -> tuple[int | None, AuditPoint | None]:
        audits, stmts, texts = T["qa_audits"], T["qa_statements"], T["qa_query_texts"]
        prev = (
            conn.execute(
                sa.select(audits)
                .where(audits.c.target_id == target_id, audits.c.collected_at < collected_at)
                .order_by(audits.c.collected_at.desc(), audits.c.id.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
        if prev is None:
            return None, None
        rows = conn.execute(
            sa.select(stmts, texts.c.query)
            .select_from(
                stmts.outerjoin(texts, sa.and_(texts.c.target_id == target_id, texts.c.queryid == stmts.c.queryid))
            )
            .where(stmts.c.audit_id == prev["id"])
        ).mappings()
        samples = {}
        for r in rows:
            sample = Sample(
                queryid=r["queryid"],
                userid=r["userid"],
                toplevel=r["toplevel"],
                stats_since=r["stats_since"],
                query=r["query"] or "",
                sumsq_exec_time=r[SUMSQ],
                **{c: r[c] for c in COUNTERS},
            )
            samples[sample.key] = sample
        point = AuditPoint(
            collected_at=prev["collected_at"],
            samples=samples,
            pgss_stats_reset=prev["pgss_stats_reset"],
            pgss_dealloc=prev["pgss_dealloc"],
            system_identifier=prev["system_identifier"],
            statistics_since=prev["statistics_since"],
            complete=bool(prev["samples_complete"]),
        )
        return prev["id"], point

    def window_for(self, snapshot, name: str | None = None) -> tuple[Window, int | None]:
        """The window a fresh snapshot would get against the last stored audit, without storing it."""
        identity = target_identity(snapshot.server, name)
        point = point_from_snapshot(snapshot)

        def read(conn):
            target = conn.execute(sa.select(T["qa_targets"].c.id).where(T["qa_targets"].c.key == identity.key)).first()
            if target is None:
                return compute_window(None, point), None
            prev_id, previous = self._point_before(conn, target[0], point.collected_at)
            return compute_window(previous, point), prev_id

        return self.transaction(read, read=True)

    def targets(self) -> list[dict]:
        targets, audits = T["qa_targets"], T["qa_audits"]
        query = (
            sa.select(
                targets.c.id,
                targets.c.key,
                targets.c.name,
                targets.c.host,
                targets.c.port,
                targets.c.database,
                targets.c.system_identifier,
                sa.func.count(audits.c.id).label("audits"),
                sa.func.max(audits.c.collected_at).label("last_audit"),
            )
            .select_from(targets.outerjoin(audits, audits.c.target_id == targets.c.id))
            .group_by(targets.c.id)
            .order_by(targets.c.key)
        )
        return self.transaction(lambda conn: [dict(r) for r in conn.execute(query).mappings()], read=True)

    def resolve_target(self, name: str | None) -> dict:
        """The target named (its name, key or database), or the only one the store holds."""
        targets = self.targets()
        if not targets:
            raise AuditError(
                f"the history store {self.display} holds no audits yet: record one with queryaudit audit --store"
            )
        if name is None:
            if len(targets) == 1:
                return targets[0]
            raise AuditError(
                f"the history store holds {len(targets)} targets; pick one with --target "
                f"({', '.join(t['name'] for t in targets[:8])})"
            )
        for field in ("name", "key", "database"):
            hits = [t for t in targets if t[field] == name]
            if len(hits) == 1:
                return hits[0]
        raise AuditError(f"no target {name!r} in the history store; known: {', '.join(t['name'] for t in targets[:8])}")

    def audits(self, target_id: int, limit: int | None = None) -> list[dict]:
        """Audits of a target, oldest first, with finding counts by severity."""
        audits, findings = T["qa_audits"], T["qa_findings"]

        def read(conn):
            query = (
                sa.select(audits)
                .where(audits.c.target_id == target_id)
                .order_by(audits.c.collected_at.desc(), audits.c.id.desc())
            )
            rows = [dict(r) for r in conn.execute(query.limit(limit) if limit else query).mappings()]
            ids = [r["id"] for r in rows]
            counts: dict[int, dict[str, int]] = {}
            if ids:
                for r in conn.execute(
                    sa.select(findings.c.audit_id, findings.c.severity, sa.func.count().label("n"))
                    .where(findings.c.audit_id.in_(ids))
                    .group_by(findings.c.audit_id, findings.c.severity)
                ).mappings():
                    counts.setdefault(r["audit_id"], {})[r["severity"]] = r["n"]
            for r in rows:
                r["findings"] = counts.get(r["id"], {})
            return list(reversed(rows))

        return self.transaction(read, read=True)

    def audit_view(self, audit_id: int, label: str | None = None) -> AuditView:
        """One stored audit's window numbers (per queryid) and findings."""
        audits, stmts, texts, findings = T["qa_audits"], T["qa_statements"], T["qa_query_texts"], T["qa_findings"]

        def read(conn):
            audit = conn.execute(sa.select(audits).where(audits.c.id == audit_id)).mappings().first()
            if audit is None:
                raise AuditError(f"no audit #{audit_id} in the history store")
            # Audits stored before schema 2 have no window numbers: their cumulative ones stand in.
            windowed = audit["window_kind"] is not None
            calls = stmts.c.d_calls if windowed else stmts.c.calls
            total = stmts.c.d_total_exec_time_ms if windowed else stmts.c.total_exec_time_ms
            rows_ = stmts.c.d_rows if windowed else stmts.c.rows
            sumsq = stmts.c[f"d_{SUMSQ}"] if windowed else stmts.c[SUMSQ]
            blocks = [sa.func.sum(stmts.c[f"d_{c}" if windowed else c]).label(c) for c in BLOCKS]
            query = (
                sa.select(
                    stmts.c.queryid,
                    sa.func.max(texts.c.query).label("text"),
                    sa.func.sum(calls).label("calls"),
                    sa.func.sum(total).label("total_ms"),
                    sa.func.sum(rows_).label("rows"),
                    sa.func.min(stmts.c.window_kind).label("kind_lo"),
                    sa.func.max(stmts.c.window_kind).label("kind_hi"),
                    sa.func.sum(sumsq).label("sumsq"),
                    sa.func.count(sumsq).label("with_sumsq"),
                    sa.func.count().label("entries"),
                    *blocks,
                )
                .select_from(
                    stmts.outerjoin(
                        texts, sa.and_(texts.c.target_id == audit["target_id"], texts.c.queryid == stmts.c.queryid)
                    )
                )
                .where(stmts.c.audit_id == audit_id, calls.is_not(None))
                .group_by(stmts.c.queryid)
            )
            statements = {}
            for r in conn.execute(query).mappings():
                kind = (r["kind_lo"] if r["kind_lo"] == r["kind_hi"] else "mixed-entries") if windowed else "cumulative"
                statements[r["queryid"]] = StatementMetrics(
                    r["queryid"],
                    r["text"] or "",
                    int(r["calls"] or 0),
                    float(r["total_ms"] or 0.0),
                    int(r["rows"] or 0),
                    kind,
                    sumsq_ms2=float(r["sumsq"]) if r["with_sumsq"] == r["entries"] else None,
                    **{c: int(r[c]) if r[c] is not None else None for c in BLOCKS},
                )
            found = {
                r["finding_id"]: {
                    "check": r["check_id"],
                    "severity": r["severity"],
                    "title": r["title"],
                    "object": r["object"],
                    **({"prediction": json.loads(r["prediction"])} if r["prediction"] else {}),
                }
                for r in conn.execute(sa.select(findings).where(findings.c.audit_id == audit_id)).mappings()
            }
            return AuditView(
                label=label or f"audit #{audit_id}",
                collected_at=audit["collected_at"],
                window_start=audit["window_start"] if windowed else audit["statistics_since"],
                window_kind=audit["window_kind"] or "cumulative",
                window_note=audit["window_note"],
                audit_id=audit_id,
                statements=statements,
                findings=found,
                total_exec_time_ms=audit["window_exec_time_ms"] if windowed else audit["total_exec_time_ms"],
                evidence=json.loads(audit["evidence"]) if audit["evidence"] else None,
            )

        return self.transaction(read, read=True)

    def statement_trend(self, target_id: int, queryid: str) -> list[dict]:
        """One statement across the audits of a target: window and cumulative numbers."""
        audits, stmts = T["qa_audits"], T["qa_statements"]
        query = (
            sa.select(
                audits.c.id,
                audits.c.collected_at,
                audits.c.window_kind,
                sa.func.sum(stmts.c.d_calls).label("calls"),
                sa.func.sum(stmts.c.d_total_exec_time_ms).label("total_ms"),
                sa.func.sum(stmts.c.calls).label("cumulative_calls"),
                sa.func.sum(stmts.c.total_exec_time_ms).label("cumulative_total_ms"),
                sa.func.max(stmts.c.window_kind).label("entry_kind"),
            )
            .select_from(audits.outerjoin(stmts, sa.and_(stmts.c.audit_id == audits.c.id, stmts.c.queryid == queryid)))
            .where(audits.c.target_id == target_id)
            .group_by(audits.c.id, audits.c.collected_at, audits.c.window_kind)
            .order_by(audits.c.collected_at, audits.c.id)
        )
        rows = self.transaction(lambda conn: [dict(r) for r in conn.execute(query).mappings()], read=True)
        for r in rows:
            r["mean_ms"] = r["total_ms"] / r["calls"] if r["calls"] else None
        return rows

    def find_statements(self, target_id: int, text: str) -> list[tuple[str, str]]:
        texts = T["qa_query_texts"]
        query = sa.select(texts.c.queryid, texts.c.query).where(
            texts.c.target_id == target_id,
            sa.or_(texts.c.queryid == text, sa.func.lower(texts.c.query).contains(text.lower(), autoescape=True)),
        )
        return self.transaction(lambda conn: [tuple(r) for r in conn.execute(query.limit(20))], read=True)

    def finding_trend(self, target_id: int, finding: str) -> list[dict]:
        """A finding (its id, or every finding of a check id) across the audits of a target."""
        audits, findings = T["qa_audits"], T["qa_findings"]
        match = findings.c.finding_id == finding if ":" in finding else findings.c.check_id == finding
        query = (
            sa.select(
                audits.c.id,
                audits.c.collected_at,
                findings.c.finding_id,
                findings.c.severity,
                findings.c.title,
                findings.c.object,
            )
            .select_from(audits.outerjoin(findings, sa.and_(findings.c.audit_id == audits.c.id, match)))
            .where(audits.c.target_id == target_id)
            .order_by(audits.c.collected_at, audits.c.id)
        )
        rows = self.transaction(lambda conn: [dict(r) for r in conn.execute(query).mappings()], read=True)
        out: dict[int, dict] = {}
        for r in rows:
            entry = out.setdefault(r["id"], {"id": r["id"], "collected_at": r["collected_at"], "findings": []})
            if r["finding_id"]:
                entry["findings"].append({k: r[k] for k in ("finding_id", "severity", "title", "object")})
        return list(out.values())

    def latest_audit_ids(self, target_id: int, n: int = 2) -> list[int]:
        audits = T["qa_audits"]
        query = (
            sa.select(audits.c.id)
            .where(audits.c.target_id == target_id)
            .order_by(audits.c.collected_at.desc(), audits.c.id.desc())
            .limit(n)
        )
        return self.transaction(lambda conn: list(conn.execute(query).scalars()), read=True)

    # -- trends: series over the stored audits (history/trends.py) --------------------
    def recent_audits(self, target_id: int, limit: int) -> list[dict]:
        """The last `limit` audits of a target, oldest first, with their evidence (parsed)."""
        audits = T["qa_audits"]
        query = (
            sa.select(audits.c.id, audits.c.collected_at, audits.c.evidence)
            .where(audits.c.target_id == target_id)
            .order_by(audits.c.collected_at.desc(), audits.c.id.desc())
            .limit(limit)
        )
        rows = self.transaction(lambda conn: [dict(r) for r in conn.execute(query).mappings()], read=True)
        for r in rows:
            r["evidence"] = json.loads(r["evidence"]) if r["evidence"] else None
        return list(reversed(rows))

    def statement_series(self, audit_ids: list[int], queryids: list[str]) -> dict[tuple[int, str], dict]:
        """(audit id, queryid) -> window calls and total time, summed over roles and levels."""
        stmts = T["qa_statements"]
        query = (
            sa.select(
                stmts.c.audit_id,
                stmts.c.queryid,
                sa.func.sum(stmts.c.d_calls),
                sa.func.sum(stmts.c.d_total_exec_time_ms),
            )
            .where(stmts.c.audit_id.in_(audit_ids), stmts.c.queryid.in_(queryids))
            .group_by(stmts.c.audit_id, stmts.c.queryid)
        )
        rows = self.transaction(lambda conn: conn.execute(query).all(), read=True)
        return {(a, q): {"calls": int(n or 0), "total_ms": float(ms or 0.0)} for a, q, n, ms in rows}

    def finding_lifecycle(self, target_id: int) -> dict[str, dict]:
        """Per finding id: first and last audit time it was seen, and in how many audits."""
        audits, findings = T["qa_audits"], T["qa_findings"]
        query = (
            sa.select(
                findings.c.finding_id,
                sa.func.min(audits.c.collected_at),
                sa.func.max(audits.c.collected_at),
                sa.func.count(sa.distinct(audits.c.id)),
                sa.func.max(findings.c.title),
                sa.func.max(findings.c.check_id),
                sa.func.max(findings.c.severity),
            )
            .select_from(findings.join(audits, audits.c.id == findings.c.audit_id))
            .where(audits.c.target_id == target_id)
            .group_by(findings.c.finding_id)
        )
        rows = self.transaction(lambda conn: conn.execute(query).all(), read=True)
        return {
            f: {
                "first_seen": first,
                "last_seen": last,
                "audits": n,
                "title": title,
                "check": check,
                "severity": severity,
            }
            for f, first, last, n, title, check, severity in rows
        }

    # -- predictions against outcomes: the tool's track record ------------------------
    def record_outcomes(self, audit_id: int, before_audit_id: int, lines: list[dict]) -> None:
        """Keep each predicted-against-realized line of a comparison (history.predictions)."""

        lines = scored(lines)
        if not lines:
            return
        outcomes, audits = T["qa_prediction_outcomes"], T["qa_audits"]

        def write(conn):
            target_id = conn.execute(sa.select(audits.c.target_id).where(audits.c.id == audit_id)).scalar_one()
            conn.execute(outcomes.delete().where(outcomes.c.audit_id == audit_id))
            conn.execute(
                outcomes.insert(),
                [
                    {
                        "target_id": target_id,
                        "audit_id": audit_id,
                        "before_audit_id": before_audit_id,
                        "finding_id": line["finding"],
                        "fix_kind": line["fix_kind"],
                        "queryid": line["queryid"],
                        "predicted_ms": line["predicted_saving_ms"],
                        "realized_ms": line["realized_saving_ms"],
                        "error_factor": line["error_factor"],
                    }
                    for line in lines
                ],
            )

        self.transaction(write)

    def track_record(self, target_key: str | None = None) -> dict[str, dict]:
        """Median error of the predictions by fix kind, over every stored outcome (of one target)."""

        outcomes, targets = T["qa_prediction_outcomes"], T["qa_targets"]
        query = sa.select(outcomes.c.fix_kind, outcomes.c.error_factor)
        if target_key is not None:
            query = query.join(targets, targets.c.id == outcomes.c.target_id).where(targets.c.key == target_key)
        rows = self.transaction(lambda conn: conn.execute(query).all(), read=True)
        return track_record([{"fix_kind": kind, "error_factor": factor} for kind, factor in rows])

    # -- indexes: when each first appeared -------------------------------------------
    def _record_indexes(self, conn: Connection, target_id: int, audit_id: int, collected_at: str, snapshot) -> None:
        seen = T["qa_index_seen"]
        known = set(conn.execute(sa.select(seen.c.index_name).where(seen.c.target_id == target_id)).scalars())
        fresh = sorted({i.qualified_name for i in snapshot.indexes} - known)
        if fresh:
            conn.execute(
                seen.insert(),
                [
                    {
                        "target_id": target_id,
                        "index_name": name,
                        "first_seen_at": collected_at,
                        "first_audit_id": audit_id,
                    }
                    for name in fresh
                ],
            )

    def index_first_seen(self, snapshot, name: str | None = None) -> dict[str, str]:
        """When each index of the snapshot first appeared, as far as the store can tell: the
        audit that first saw it, for indexes that appeared after the target's first audit,
        and the snapshot itself for indexes no stored audit has seen. An index present at the
        target's first audit may be older: it is left out (its age is unknown). Empty when
        the store holds no audit of the target."""
        identity = target_identity(snapshot.server, name)
        targets, audits, seen = T["qa_targets"], T["qa_audits"], T["qa_index_seen"]

        def read(conn):
            target = conn.execute(sa.select(targets.c.id).where(targets.c.key == identity.key)).first()
            if target is None:
                return {}
            first = conn.execute(
                sa.select(sa.func.min(audits.c.collected_at)).where(audits.c.target_id == target[0])
            ).scalar()
            if first is None:
                return {}
            known = dict(
                conn.execute(
                    sa.select(seen.c.index_name, seen.c.first_seen_at).where(seen.c.target_id == target[0])
                ).all()
            )
            out = {}
            for index in snapshot.indexes:
                at = known.get(index.qualified_name)
                if at is None:
                    out[index.qualified_name] = snapshot.collected_at
                elif at > first:
                    out[index.qualified_name] = at
            return out

        return self.transaction(read, read=True)

    def close(self) -> None:
        self.engine.dispose()
