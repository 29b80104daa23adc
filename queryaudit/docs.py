"""checks/<id>.md generated from each check module's docstring, as ruff does for its rules:
the code and its documentation cannot drift apart (a test runs `docs --check`)."""

from __future__ import annotations

from pathlib import Path

from queryaudit.checks import all_checks


def _number(value: int | float) -> str:
    return f"{value:,}".replace(",", " ") if isinstance(value, int) else f"{value:g}"


def thresholds_table(check) -> str:
    """The thresholds as the module's constants hold them: the page cannot show another number."""
    rows = "\n".join(f"| `{name}` | {_number(value)} |" for name, value in check.thresholds.items())
    return f"| constant | value |\n|---|---|\n{rows}\n" if rows else ""


def with_thresholds(doc: str, check) -> str:
    table = thresholds_table(check)
    head, found, rest = doc.partition("## Thresholds\n")
    if not (table and found):
        return doc
    section, heading, tail = rest.partition("\n## ")
    return f"{head}{found}{section.rstrip()}\n\n{table}{heading}{tail}"


def page(check) -> str:
    doc = with_thresholds(check.doc.strip(), check)
    summary, _, body = doc.partition("\n")
    return (
        f"# {check.id}: {check.title}\n\n{summary.strip()}\n{body.rstrip()}\n\n"
        f"---\nGenerated from `queryaudit/checks/{check.module.__name__.rsplit('.', 1)[-1]}.py`"
        " by `queryaudit docs`; edit the docstring, not this page.\n"
    )


def index_page(checks) -> str:
    rows = "\n".join(f"| [{c.id}]({c.id}.md) | {c.title} | {c.family} | {c.fix} |" for c in checks)
    return f"# Checks\n\n| id | title | family | fix |\n|---|---|---|---|\n{rows}\n"


def write_pages(out: Path, dry_run: bool = False) -> list[str]:
    """Write every page; return the names that were missing or different."""
    checks = all_checks()
    pages = {f"{c.id}.md": page(c) for c in checks}
    pages["README.md"] = index_page(checks)
    return write_if_changed(out, pages, dry_run)


def write_if_changed(out: Path, pages: dict[str, str], dry_run: bool = False) -> list[str]:
    """Write the pages that are missing or different; return their names."""
    stale = []
    for name, text in pages.items():
        path = out / name
        if not path.exists() or path.read_text() != text:
            stale.append(name)
            if not dry_run:
                out.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    return stale


def print_checks(console) -> None:
    """`queryaudit checks`: every check with its id."""
    checks = all_checks()
    width = max(len(c.id) for c in checks)  # the longest id sets the column, not a fixed 24
    for check in checks:
        console.print(f"{check.id:{width}}  {check.title}", markup=False, highlight=False, soft_wrap=True)
