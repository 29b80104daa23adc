"""The keyset (seek) rewrite of an OFFSET pagination, generated with sqlglot.

`... ORDER BY k1, k2 LIMIT n OFFSET m` becomes `... WHERE (k1, k2) > (last k1, last k2)
ORDER BY k1, k2 LIMIT n`: the same page, read from the last key of the previous page on.
Pure: the measurement (stage.py) reads the real last key and times both.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import sqlglot
from sqlglot import exp


@dataclass
class Keyset:
    tree: exp.Select  # the statement, values bound as literals
    keys: list[str]  # ORDER BY columns as written, then a tie-breaker
    order: exp.Order  # ORDER BY of the rewrite (the original's, then the tie-breaker alike)
    descending: bool
    offset: int
    fix_text: str  # the rewrite as the application would send it ($n for the last key)


def _literal(value: str, type_name: str | None) -> exp.Expression:
    quoted = "'" + str(value).replace("'", "''") + "'"
    return sqlglot.parse_one(f"{quoted}::{type_name}" if type_name else quoted, read="postgres")


def _bind(tree: exp.Expression, values: list[str], types: list[str]) -> exp.Expression:
    def swap(node):
        if isinstance(node, exp.Parameter) and isinstance(node.this, exp.Literal):
            n = int(node.this.this)
            if 1 <= n <= len(values):
                return _literal(values[n - 1], types[n - 1] if n <= len(types) else None)
        return node

    return tree.transform(swap)


def _key_condition(keys: list[str], values: list[exp.Expression], descending: bool) -> exp.Expression:
    columns = [sqlglot.parse_one(k, read="postgres") for k in keys]
    left = columns[0] if len(columns) == 1 else exp.Tuple(expressions=columns)
    right = values[0] if len(values) == 1 else exp.Tuple(expressions=values)
    return exp.LT(this=left, expression=right) if descending else exp.GT(this=left, expression=right)


def plan(query: str, values: list[str], types: list[str], unique_keys: list[list[str]]) -> Keyset | None:
    """The keyset form of `query`, or None when its shape does not allow one (no ORDER BY
    on plain columns in one direction, no OFFSET we know the value of). `unique_keys`:
    column lists of the table's unique indexes; when the ORDER BY keys hold none of them,
    the first (the primary key) is appended as a tie-breaker, or rows with equal keys
    would be skipped or repeated between pages."""
    try:
        tree = sqlglot.parse_one(query, read="postgres")
    except sqlglot.errors.ParseError:
        return None
    if not isinstance(tree, exp.Select) or not tree.args.get("offset") or not tree.args.get("order"):
        return None
    order = tree.args["order"].expressions
    if not all(isinstance(o.this, exp.Column) for o in order):
        return None
    directions = {bool(o.args.get("desc")) for o in order}
    if len(directions) != 1:
        return None  # mixed directions need an OR chain, not one row comparison
    descending = directions.pop()
    keys = [o.this.sql("postgres") for o in order]
    names = {o.this.name for o in order}
    if unique_keys and not any(set(u) <= names for u in unique_keys):
        qualifier = order[0].this.table
        for column in unique_keys[0]:
            if column not in names:
                keys.append(f"{qualifier}.{column}" if qualifier else column)
    # The tie-breaker sorts like the first key (same direction and NULLS placement).
    ordered = [copy.deepcopy(o) for o in order]
    for k in keys[len(order) :]:
        tie = order[0].copy()
        tie.set("this", sqlglot.parse_one(k, read="postgres"))
        ordered.append(tie)
    bound = _bind(copy.deepcopy(tree), values, types)
    offset_node = bound.args["offset"].expression
    try:
        offset = int(offset_node.this if isinstance(offset_node, exp.Literal) else offset_node.this.this)
    except (AttributeError, TypeError, ValueError):
        return None
    # The fix as the application writes it: the last key as new parameters.
    first = max([int(p.this.this) for p in tree.find_all(exp.Parameter) if isinstance(p.this, exp.Literal)] or [0]) + 1
    placeholders = [exp.Parameter(this=exp.Literal.number(first + i)) for i in range(len(keys))]
    fix = copy.deepcopy(tree)
    fix.set("offset", None)
    fix = fix.where(_key_condition(keys, placeholders, descending), copy=False)
    fix.set("order", exp.Order(expressions=copy.deepcopy(ordered)))
    return Keyset(
        tree=bound,
        keys=keys,
        order=exp.Order(expressions=ordered),
        descending=descending,
        offset=offset,
        fix_text=fix.sql("postgres"),
    )


def last_key_query(keyset: Keyset) -> str:
    """The key of the last row of the previous page: the row just before OFFSET."""
    q = copy.deepcopy(keyset.tree)
    # Aliased: an output column named like a key would take over ORDER BY key (output names
    # come first there), and the text form sorts differently.
    q.set(
        "expressions",
        [
            exp.alias_(exp.cast(sqlglot.parse_one(k, read="postgres"), "text"), f"queryaudit_key_{n}")
            for n, k in enumerate(keyset.keys)
        ]
        + [
            exp.alias_(
                exp.cast(exp.Anonymous(this="pg_typeof", expressions=[sqlglot.parse_one(k, read="postgres")]), "text"),
                f"queryaudit_type_{n}",
            )
            for n, k in enumerate(keyset.keys)
        ],
    )
    q.set("order", copy.deepcopy(keyset.order))
    q.set("limit", exp.Limit(expression=exp.Literal.number(1)))
    q.set("offset", exp.Offset(expression=exp.Literal.number(keyset.offset - 1)))
    return q.sql("postgres")


def rewritten(keyset: Keyset, last: list[str], types: list[str]) -> str:
    """The page after `last`, values bound: what is timed against the OFFSET form."""
    q = copy.deepcopy(keyset.tree)
    q.set("offset", None)
    q = q.where(
        _key_condition(keyset.keys, [_literal(v, t) for v, t in zip(last, types, strict=False)], keyset.descending),
        copy=False,
    )
    q.set("order", copy.deepcopy(keyset.order))
    return q.sql("postgres")
