"""checks/migrations/<id>.md generated from each migration rule's docstring (as for checks)."""

from __future__ import annotations

from pathlib import Path

from queryaudit.docs import write_if_changed
from queryaudit.migrations import Rule, all_rules


def page(rule: Rule) -> str:
    doc = rule.doc.strip()
    summary, _, body = doc.partition("\n")
    facts = (
        f"Severity **{rule.severity}** · group `{rule.group}` · "
        f"{'on by default' if rule.default else 'opt-in (`--rule ' + rule.id + '`)'}"
        f"{_squawk_fact(rule)}"
        f"{' · measured with `--dsn`' if rule.dynamic else ''}"
    )
    return (
        f"# {rule.id}: {rule.title}\n\n{summary.strip()}\n\n{facts}\n{body.rstrip()}\n\n---\n"
        f"Generated from `{rule.module}` by `queryaudit docs`; edit the docstring, not this page.\n"
    )


def _squawk_fact(rule: Rule) -> str:
    if not rule.squawk:
        return ""
    if "## Differences from squawk" in rule.doc:
        return " · squawk 2.70's rule of the same name, with the differences below"
    return " · same name and semantics as squawk 2.70"


def index_page(rules: list[Rule]) -> str:
    rows = "\n".join(f"| [{r.id}]({r.id}.md) | {r.severity} | {r.group} | {r.title} |" for r in rules)
    return (
        "# Migration review rules (`queryaudit review-migration`)\n\n"
        f"| id | severity | group | title |\n|---|---|---|---|\n{rows}\n"
    )


def write_pages(out: Path, dry_run: bool = False) -> list[str]:
    rules = all_rules()
    pages = {f"{r.id}.md": page(r) for r in rules}
    pages["README.md"] = index_page(rules)
    return write_if_changed(out, pages, dry_run)
