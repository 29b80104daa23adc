"""Static review: run the rules over parsed migrations and collect located findings."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from queryaudit.errors import AuditError
from queryaudit.findings import SEVERITY_RANK
from queryaudit.migrations import ALIASES, Rule, Settings, all_rules, expand_selection
from queryaudit.migrations.rules.syntax import SYNTAX_ERROR
from queryaudit.migrations.source import MigrationFile, MigrationSyntaxError, parse_migration


@dataclass
class MigrationFinding:
    rule: str
    severity: str
    title: str
    message: str
    path: str
    line: int
    column: int
    end_line: int
    statement: str
    lock: str | None = None
    blocks: str | None = None
    rewrite: bool | None = None
    safe_sql: str | None = None
    table: str | None = None
    suppressed: str | None = None  # the reason given in the `-- queryaudit: ignore` comment
    measured: dict[str, Any] | None = None  # what the scratch-database run observed for this statement
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class ReviewResult:
    settings: Settings
    files: list[str]
    findings: list[MigrationFinding] = field(default_factory=list)
    suppressed: list[MigrationFinding] = field(default_factory=list)
    dynamic: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)

    def worst(self) -> str | None:
        return min((f.severity for f in self.findings), key=lambda s: SEVERITY_RANK[s], default=None)

    def fails(self, fail_on: str) -> bool:
        return any(at_or_above(f.severity, fail_on) for f in self.findings)


def at_or_above(severity: str, fail_on: str) -> bool:
    """Does a finding of this severity fail the gate? `never` fails nothing."""
    return fail_on != "never" and SEVERITY_RANK[severity] <= SEVERITY_RANK[fail_on]


def select_rules(select: Iterable[str] | None = None, ignore: Iterable[str] | None = None) -> list[Rule]:
    rules = [r for r in all_rules() if r.check is not None]
    known = {r.id for r in all_rules()} | set(ALIASES)
    for rid in list(select or ()) + list(ignore or ()):
        if rid not in known:
            raise AuditError(f"unknown rule {rid!r}: run `queryaudit review-migration --list-rules`")
    if select:
        chosen = expand_selection(select)
        rules = [r for r in rules if r.id in chosen]
    else:
        rules = [r for r in rules if r.default]
    dropped = expand_selection(ignore or ())
    return [r for r in rules if r.id not in dropped]


def lint(
    mig: MigrationFile, settings: Settings, rules: list[Rule]
) -> tuple[list[MigrationFinding], list[MigrationFinding]]:
    found, suppressed = [], []
    same_advice: dict[tuple[int, str], MigrationFinding] = {}
    for r in rules:
        for v in r.check(mig, settings) or ():
            offset = v.offset if v.offset is not None else v.stmt.start
            line, column = mig.position(offset)
            f = MigrationFinding(
                rule=r.id,
                severity=v.severity or r.severity,
                title=r.title,
                message=v.message,
                path=mig.path,
                line=line,
                column=column,
                end_line=max(line, v.stmt.end_line),
                statement=v.stmt.text.strip(),
                lock=v.lock,
                blocks=v.blocks,
                rewrite=v.rewrite,
                safe_sql=v.safe_sql,
                table=v.table,
            )
            s = mig.suppression_for(r.id, v.stmt)
            if s:
                f.suppressed = s.reason or "(no reason given)"
                suppressed.append(f)
            elif v.safe_sql and (first := same_advice.get((v.stmt.index, v.safe_sql))):
                # Two rules, one statement, the same fix (FOREIGN KEY without NOT VALID is both
                # adding-foreign-key-constraint and constraint-missing-not-valid): one finding.
                first.evidence.setdefault("also", []).append(r.id)
                if SEVERITY_RANK[f.severity] < SEVERITY_RANK[first.severity]:
                    first.severity = f.severity
            else:
                found.append(f)
                if v.safe_sql:
                    same_advice[(v.stmt.index, v.safe_sql)] = f
    key = lambda f: (f.path, f.line, f.column, f.rule)  # noqa: E731
    return sorted(found, key=key), sorted(suppressed, key=key)


def lint_sql(
    sql: str, settings: Settings = Settings(), only: Iterable[str] | None = None, path: str = "migration.sql"
) -> list[MigrationFinding]:
    """Lint one SQL string (tests and the rule cases use this)."""
    mig = parse_migration(path, sql, settings.assume_in_transaction)
    return lint(mig, settings, select_rules(only))[0]


def review(sources: list[tuple[str, str]], settings: Settings, select=None, ignore=None) -> ReviewResult:
    rules = select_rules(select, ignore)
    result = ReviewResult(settings, [p for p, _ in sources])
    for path, text in sources:
        try:
            mig = parse_migration(path, text, settings.assume_in_transaction)
        except MigrationSyntaxError as exc:
            # this file was not reviewed; the others still are, and the run reports it
            result.errors.append(str(exc))
            result.findings.append(syntax_finding(exc))
            continue
        found, suppressed = lint(mig, settings, rules)
        result.findings.extend(found)
        result.suppressed.extend(suppressed)
    return result


def syntax_finding(exc: MigrationSyntaxError) -> MigrationFinding:
    return MigrationFinding(
        rule=SYNTAX_ERROR,
        severity="critical",
        title="The file does not parse as PostgreSQL",
        message=f"{exc.message}: the file was not reviewed and PostgreSQL rejects it",
        path=exc.path,
        line=exc.line,
        column=exc.column,
        end_line=exc.line,
        statement=exc.line_text.strip(),
    )
