"""Fixture databases with known problems: schema, data generator, workload, planted problems.

A fixture is a folder of fixtures/: schema.sql, generate.sql (row counts scale with
{scale}), post_load.sql (statements run one by one outside a transaction; one after a
`-- expect: error` line is meant to fail), workload.py (`run(conn, rounds, scale)`)
and problems.toml (the findings an audit must report).
"""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

import psycopg

from queryaudit.errors import AuditError

# queryaudit/ (this module lives in queryaudit/demo/): fixtures/ sit beside it, _fixtures/ inside it
_HERE = Path(__file__).resolve().parent.parent
# A checkout keeps fixtures/ beside the package; a wheel ships them inside it.
FIXTURE_ROOTS = [_HERE.parent / "fixtures", _HERE / "_fixtures"]


def fixture_dir(name: str) -> Path:
    for root in FIXTURE_ROOTS:
        if (root / name / "schema.sql").exists():
            return root / name
    raise AuditError(f"fixture {name!r} not found in {', '.join(str(r) for r in FIXTURE_ROOTS)}")


def problems(name: str) -> list[dict]:
    return tomllib.loads((fixture_dir(name) / "problems.toml").read_text()).get("problem", [])


def _statements(text: str) -> list[tuple[str, bool]]:
    """Split a simple SQL file on ';' at line ends; (statement, expected_to_fail)."""
    out, buf, expect_error = [], [], False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped == "-- expect: error":
            expect_error = True
            continue
        if not buf and (not stripped or stripped.startswith("--")):
            continue
        buf.append(line)
        if stripped.endswith(";"):
            out.append(("\n".join(buf), expect_error))
            buf, expect_error = [], False
    if "".join(buf).strip():
        out.append(("\n".join(buf), expect_error))
    return out


def load(name: str, dsn: str, scale: int = 1) -> None:
    """Create the fixture's schema and data in the (empty) database at dsn."""
    folder = fixture_dir(name)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute((folder / "schema.sql").read_text())
        generate = (folder / "generate.sql").read_text().replace("{scale}", str(int(scale)))
        post = folder / "post_load.sql"
        # One by one: VACUUM and CONCURRENTLY refuse to run in a multi-statement string.
        for statement, expect_error in _statements(generate + "\n" + (post.read_text() if post.exists() else "")):
            try:
                conn.execute(statement)
            except psycopg.Error:
                if not expect_error:
                    raise


def workload(name: str):
    path = fixture_dir(name) / "workload.py"
    spec = importlib.util.spec_from_file_location(f"queryaudit_fixture_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_workload(name: str, dsn: str, rounds: int = 1, scale: int = 1) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        workload(name).run(conn, rounds=rounds, scale=scale)
