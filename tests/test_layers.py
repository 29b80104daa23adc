"""Layers that hold: which modules may talk to a server, and what stays private to checks/.

The graph is read from every module's AST (imports inside functions included), so a
server call added to a check or a renderer fails here, not in production."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "queryaudit"

# The stages that read the audited server (collect/__init__.py explains the list), and the
# modules that open other connections: the application's driver (capture/), the migration
# scratch database, the history store, the demo's own clusters, the connection factory.
MAY_CONNECT = {
    "connect.py",
    "collect/__init__.py",
    "collect/catalog.py",
    "collect/server.py",
    "collect/statements.py",
    "plans/explain.py",
    "plans/nested.py",
    "plans/stage.py",
    "locks/sampling.py",
    "estimates/stage.py",
    "verify/fixes.py",
    "verify/measure.py",
    "verify/real.py",
    "verify/stage.py",
    "verify/index_sizing.py",
    "advisor/stage.py",
    "advisor/costing.py",
    "capture/__init__.py",
    "capture/core.py",
    "capture/django_hooks.py",
    "capture/drivers.py",
    "migrations/dynamic.py",
    "history/store.py",
    "demo/cluster.py",
    "demo/fixtures.py",
    "demo/run.py",
}


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text(), str(path))


def imported(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_only_collection_stages_talk_to_a_server():
    talking = {
        name
        for name, tree in modules()
        if any(m == "psycopg" or m.startswith(("psycopg.", "psycopg2", "asyncpg")) for m in imported(tree))
    }
    assert talking - MAY_CONNECT == set(), "a module outside the collection stages imports a driver"
    # The list names real modules only (a renamed stage must be renamed here too).
    assert MAY_CONNECT - {name for name, _ in modules()} == set()


def test_no_module_outside_checks_imports_a_private_checks_module():
    offenders = sorted(
        name
        for name, tree in modules()
        if not name.startswith("checks/") and any(m.startswith("queryaudit.checks._") for m in imported(tree))
    )
    assert offenders == []
