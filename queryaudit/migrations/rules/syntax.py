"""syntax-error: a migration file PostgreSQL's grammar rejects, reported as a finding of its own file."""

from __future__ import annotations

from queryaudit.migrations import input_rule

SYNTAX_ERROR = "syntax-error"

input_rule(
    SYNTAX_ERROR,
    "The file does not parse as PostgreSQL",
    "critical",
    """A migration file that PostgreSQL's parser rejects.

## What it detects
A file that libpg_query (PostgreSQL's own grammar, through pglast) cannot parse: the
finding points at the line and column of the error, with the parser's message. The
other files of the review are still reviewed; the run exits 2 (the review is incomplete).

## Why it matters
PostgreSQL rejects the file the same way: the migration fails when it is applied, and
no rule could look at any statement of it.

## How to fix
Fix the SQL at the reported position. Templated migrations (Go templates, Jinja,
Flyway placeholders) must be rendered before they are reviewed.

## Example
```sql
ALTER TABLE t ADD COLUMN;          -- syntax error at or near ";"
ALTER TABLE t ADD COLUMN c text;   -- fixed
```

## Thresholds
None. It cannot be suppressed with a comment (the file cannot be read) nor
deselected: a file that does not parse was not reviewed.

## Known false positives
SQL for another database, or psql meta-commands (`\\set`, `\\i`) that only psql
understands.
""",
    __name__,
)
