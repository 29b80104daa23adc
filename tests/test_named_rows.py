"""Rows from the server are read by name, not by position: a column added to a SELECT must
not shift what every later index means. Read from each module's AST.

Allowed: one value of one column through `connect.scalar` (the only place that indexes a
row), and rows built by psycopg's `dict_row` / `class_row`, read by key."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "queryaudit"
ALLOWED = {"connect.py"}  # connect.scalar


def _is_result_call(node: ast.AST) -> bool:
    """conn.execute(...), cur.fetchone() / fetchall() / fetchmany(), and chains of them."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in {"execute", "fetchone", "fetchall", "fetchmany"}
    )


def positional_reads(tree: ast.AST) -> list[int]:
    """Line numbers of positional reads of query results in one module."""
    from_results: set[str] = set()  # names bound to a row or rows of a result
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and _is_result_call(node.value):
            from_results |= {t.id for t in node.targets if isinstance(t, ast.Name)}
            if any(isinstance(t, ast.Tuple) for t in node.targets):
                lines.append(node.lineno)  # a, b = cur.fetchone()
        if isinstance(node, (ast.For, ast.comprehension)):
            source = node.iter
            if _is_result_call(source) or (isinstance(source, ast.Name) and source.id in from_results):
                if isinstance(node.target, ast.Tuple):
                    lines.append(source.lineno)  # for a, b in conn.execute(...)
                elif isinstance(node.target, ast.Name):
                    from_results.add(node.target.id)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, int)
        ):
            value = node.value
            if _is_result_call(value) or (isinstance(value, ast.Name) and value.id in from_results):
                lines.append(node.lineno)
    return sorted(lines)


def test_query_results_are_read_by_name():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        if name in ALLOWED:
            continue
        lines = positional_reads(ast.parse(path.read_text(), str(path)))
        if lines:
            offenders[name] = lines
    assert offenders == {}


def test_the_rule_catches_what_it_names():
    code = """
row = conn.execute("SELECT 1").fetchone()
x = row[0]
y = conn.execute("SELECT 1").fetchone()[0]
for a, b in conn.execute("SELECT 1, 2"):
    pass
rows = cur.fetchall()
for r in rows:
    z = r[3]
named = conn.cursor(row_factory=dict_row).execute("SELECT 1 AS one").fetchone()["one"]
"""
    assert positional_reads(ast.parse(code)) == [3, 4, 5, 9]
