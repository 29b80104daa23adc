"""CREATE INDEX as queryaudit prints it: one builder for the advisor and for every check
that proposes an index (missing-index, fk-without-index, inefficient-index,
slow-foreign-key-trigger), so quoting, CONCURRENTLY and partitions are right everywhere.

PostgreSQL refuses CREATE INDEX CONCURRENTLY on a partitioned table. The form that
never blocks writes: the parent's index ON ONLY the parent (catalog only, instant, born
invalid), each partition's index built CONCURRENTLY, then attached; the parent's index
turns valid when its last partition is attached. A partition that is itself partitioned
gets the same treatment one level down.
"""

from __future__ import annotations

import re

from queryaudit.sql import quote_ident, quote_qualified

NAME_MAX = 63  # NAMEDATALEN - 1


def split_table(qualified: str) -> tuple[str, str]:
    schema, _, name = qualified.partition(".")
    return (schema, name) if name else ("public", schema)


def key_sql(column: str, descending: bool = False, expression: bool = False) -> str:
    """A key column: a name quoted as quote_ident does ("authorId", "order", "user id"),
    an expression in parentheses."""
    if expression:
        text = f"({column})"
    elif re.match(r'^"(?:[^"]|"")+"$', column):  # already quoted by the caller
        text = column
    else:
        text = quote_ident(column)
    return f"{text} DESC" if descending else text


def _fit(base: str, suffix: str) -> str:
    return base[: NAME_MAX - len(suffix)] + suffix


def partitions(snapshot, table: str) -> list:
    """Direct partitions of `table` in the snapshot (none when it is not partitioned)."""
    if snapshot is None:
        return []
    return sorted((t for t in snapshot.tables if t.partition_of == table), key=lambda t: t.qualified_name)


def create_index_sql(
    table: str,
    columns,
    name: str | None = None,
    *,
    include=(),
    predicate: str | None = None,
    descending=(),
    expressions=(),
    snapshot=None,
    concurrently: bool = True,
    taken: set[str] | None = None,
) -> str:
    """The statement(s), each ending in ';', one per line. `descending` names the key
    columns sorted DESC, `expressions` the keys that are expressions, not column names.
    Give `snapshot` so a partitioned table gets the ON ONLY form."""
    schema, relname = split_table(table)
    cols = ", ".join(key_sql(c, c in set(descending), c in set(expressions)) for c in columns)
    tail = f" ({cols})"
    if include:
        tail += f" INCLUDE ({', '.join(key_sql(c) for c in include)})"
    if predicate:
        tail += f" WHERE {predicate}"
    t = snapshot.table(table) if snapshot is not None else None
    if t is not None and t.kind == "p":
        taken = set(taken or ()) | ({name} if name else set()) | {i.name for i in snapshot.indexes}
        base = name or _unique(_sane(relname) + "_idx", taken)
        return "\n".join(_partitioned(snapshot, table, base, tail, concurrently, taken))
    how = ("CONCURRENTLY " if concurrently else "") + ("IF NOT EXISTS " if name else "")  # IF NOT EXISTS needs a name
    named = f"{quote_ident(name)} " if name else ""
    return f"CREATE INDEX {how}{named}ON {quote_qualified(schema, relname)}{tail};"


def _partitioned(snapshot, table: str, name: str, tail: str, concurrently: bool, taken: set[str]) -> list[str]:
    schema, relname = split_table(table)
    out = [f"CREATE INDEX IF NOT EXISTS {quote_ident(name)} ON ONLY {quote_qualified(schema, relname)}{tail};"]
    for part in partitions(snapshot, table):
        prefix = _sane(relname) + "_"
        child = _unique(_sane(part.name) + "_" + name.removeprefix(prefix), taken)
        if part.kind == "p":
            out += _partitioned(snapshot, part.qualified_name, child, tail, concurrently, taken)
        else:
            how = "CONCURRENTLY IF NOT EXISTS " if concurrently else "IF NOT EXISTS "
            out.append(f"CREATE INDEX {how}{quote_ident(child)} ON {quote_qualified(part.schema, part.name)}{tail};")
        out.append(
            f"ALTER INDEX {quote_qualified(schema, name)} ATTACH PARTITION {quote_qualified(part.schema, child)};"
        )
    return out


def _sane(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _unique(base: str, taken: set[str]) -> str:
    base = _fit(_sane(base), "")
    name, n = base, 1
    while name in taken:
        n += 1
        name = _fit(base, f"_{n}")
    taken.add(name)
    return name
