"""Migration review: lint risky DDL (static rules) and measure a migration on a scratch
database (locks, rewrites, plan changes of the top statements).

A rule is a function registered with `@rule(...)` in a module of `rules/`: its id
(kebab-case; squawk's name where squawk has the same rule), a title, a default severity,
a docstring in the fixed sections (What it detects / Why it matters / How to fix /
Example / Thresholds / Known false positives) and its own test cases (`cases=`), the way
squawk keeps a rule and its tests together. `check(migration, settings)` yields
Violations; it is pure and never touches a database.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from queryaudit.errors import AuditError
from queryaudit.migrations.source import MigrationFile, Statement

DEFAULT_PG_VERSION = (15, 0)


@dataclass(frozen=True)
class Settings:
    pg_version: tuple[int, int] = DEFAULT_PG_VERSION
    assume_in_transaction: bool = False


@dataclass
class Violation:
    stmt: Statement
    message: str
    offset: int | None = None  # character offset in the file; None: the statement's first token
    lock: str | None = None  # the strongest table lock the statement takes (PostgreSQL's mode name)
    blocks: str | None = None  # what that lock blocks, in plain words
    rewrite: bool | None = None  # the table (and its indexes) is rewritten; None when unknown
    safe_sql: str | None = None
    table: str | None = None
    severity: str | None = None  # overrides the rule's default


@dataclass(frozen=True)
class Case:
    """One test case kept beside its rule: `expect` is 'trigger' or 'pass'."""

    expect: str
    sql: str
    pg_version: str | None = None
    assume_in_transaction: bool = False


@dataclass
class Rule:
    id: str
    title: str
    severity: str
    group: str
    check: Callable[[MigrationFile, Settings], Iterable[Violation]] | None
    default: bool = True
    squawk: bool = False  # squawk has a rule of the same name and semantics
    dynamic: bool = False  # reported by the scratch-database review, not by the static pass
    cases: list[Case] = field(default_factory=list)
    doc: str = ""
    module: str = ""

    @property
    def summary(self) -> str:
        return self.doc.strip().splitlines()[0] if self.doc.strip() else self.title


REGISTRY: dict[str, Rule] = {}
# squawk reports require-timeout-settings as these two; selecting the alias selects both.
# squawk also accepts prefer-timestamptz for prefer-timestamp-tz.
ALIASES = {
    "require-timeout-settings": ("require-lock-timeout", "require-statement-timeout"),
    "prefer-timestamptz": ("prefer-timestamp-tz",),
}


def trigger(sql: str, pg_version: str | None = None, assume_in_transaction: bool = False) -> Case:
    return Case("trigger", sql, pg_version, assume_in_transaction)


def passes(sql: str, pg_version: str | None = None, assume_in_transaction: bool = False) -> Case:
    return Case("pass", sql, pg_version, assume_in_transaction)


def rule(
    id: str,
    title: str,
    severity: str,
    group: str,
    *,
    default: bool = True,
    squawk: bool = False,
    cases: list[Case] | None = None,
):
    def register(fn):
        REGISTRY[id] = Rule(
            id, title, severity, group, fn, default, squawk, False, cases or [], fn.__doc__ or "", fn.__module__
        )
        return fn

    return register


def dynamic_rule(id: str, title: str, severity: str, doc: str, module: str) -> None:
    REGISTRY[id] = Rule(id, title, severity, "dynamic", None, True, False, True, [], doc, module)


def input_rule(id: str, title: str, severity: str, doc: str, module: str) -> None:
    """A finding about the input itself (a file that does not parse): no check function, never suppressed."""
    REGISTRY[id] = Rule(id, title, severity, "input", None, True, False, False, [], doc, module)


def all_rules() -> list[Rule]:
    from queryaudit.migrations import rules as package  # deferred: import cycle (the rules import this registry)

    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")
    importlib.import_module("queryaudit.migrations.dynamic_rules")
    return sorted(REGISTRY.values(), key=lambda r: (r.group, r.id))


def get_rule(rule_id: str) -> Rule | None:
    all_rules()
    return REGISTRY.get(rule_id)


def expand_selection(ids: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for i in ids:
        out.update(ALIASES.get(i, (i,)))
    return out


def parse_pg_version(text: str | int | None) -> tuple[int, int]:
    """'15', '9.6', '16.2', 150004 -> (major, minor)."""
    if text is None or text == "":
        return DEFAULT_PG_VERSION
    if isinstance(text, int) or str(text).isdigit() and int(text) >= 10000:
        num = int(text)
        return (num // 10000, num % 10000) if num >= 100000 else (num // 10000, (num // 100) % 100)
    parts = str(text).strip().split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    except ValueError:
        raise AuditError(f"--pg-version {text!r}: give a PostgreSQL version such as 15 or 9.6") from None
