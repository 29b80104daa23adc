"""--redact: replace literals in everything a report shows.

pg_stat_statements texts are already normalized ($n), but literals still reach the
outputs through concrete statements (--queries), plans (Filter: (email = 'a@b.c'::text)),
log bind parameters and pg_stats values. SQL is redacted token by token with
PostgreSQL's own scanner (pglast), so keywords and identifiers stay readable; text that
does not scan falls back to a regular expression for quoted strings and numbers.
"""

from __future__ import annotations

import re

from pglast.parser import scan

from queryaudit.plans.text import EXPRESSION_KEYS, EXPRESSION_LIST_KEYS

PLACEHOLDER = "?"
LITERAL_TOKENS = {"SCONST", "ICONST", "FCONST", "BCONST", "XCONST", "USCONST"}
# Keys whose value is user data as a whole (values, not SQL): replaced entirely.
VALUE_KEYS = {
    "parameters",
    "most_common_vals",
    "histogram_bounds",
    "bind_parameters",
    "params",
    "values",
    "sample_values",
}
# A quoted literal starts where a word cannot (an apostrophe in "it's" is not one).
_QUOTED = re.compile(r"(?<![\w'])(?:[EeBbXxNn]|U&)?'(?:[^']|'')*'(?!\w)|\$([A-Za-z_]*)\$.*?\$\1\$", re.S)
_NUMBER = re.compile(r"(?<![\w$.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")


_PASSWORD = re.compile(r"(\bPASSWORD\s+)('(?:[^']|'')*'|\$([A-Za-z_]*)\$.*?\$\3\$)", re.I | re.S)


def mask_passwords(text: str) -> str:
    """CREATE/ALTER ROLE ... PASSWORD '...' as pg_stat_statements and logs keep it (utility
    statements are stored with their literals): the password never leaves the collector."""
    return _PASSWORD.sub(r"\1'***'", text) if "assword" in text or "ASSWORD" in text else text


def redact_sql(text: str) -> str:
    """Every literal in a SQL text (or SQL fragment such as a plan's Filter) becomes '?'."""
    try:
        tokens = scan(text)
    except Exception:
        return redact_text(_NUMBER.sub(PLACEHOLDER, text))
    out, last = [], 0
    for token in tokens:  # offsets are character positions, end inclusive
        if token.name in LITERAL_TOKENS:
            out.append(text[last : token.start])
            out.append(PLACEHOLDER)
            last = token.end + 1
    out.append(text[last:])
    return "".join(out)


# PostgreSQL's errors quote the value they refuse in double quotes, like a name:
# invalid input syntax for type integer: "abc". Names (column "x" does not exist) stay.
_ERROR_VALUE = re.compile(r'(invalid input (?:syntax|value) for (?:type|enum) [^:"]+: )"(?:[^"]|"")*"')


def redact_text(text: str) -> str:
    """Prose that may quote a literal (a title, a log message, a server error): quoted strings only."""
    return _ERROR_VALUE.sub(rf'\1"{PLACEHOLDER}"', _QUOTED.sub(PLACEHOLDER, text))


# Keys whose strings are SQL or plan expressions (EXPLAIN's, from plans/text.py): scanned token by token.
SQL_KEYS = (
    EXPRESSION_KEYS
    | EXPRESSION_LIST_KEYS
    | {
        "query",
        "query_text",
        "fix_sql",
        "sql",
        "statement",
        "definition",
        "predicate",
        "rewrite",
        "batched_sql",
        "Query Text",
        "before_plan",
        "after_plan",
        "blocking_query",
        "waiting_query",
        "text",
        "query_pretty",
        "detail",
        "label",
        "root_query",
        "parent_query",
        # lock evidence: a row "(page,tuple)" and an advisory lock key the application chose
        "row",
        "rows",
        "keys",
        # fix verification (queryaudit.verify): the fix as tried, which may carry a real key
        "kind",
        "fix",
    }
)


def redact(value, key: str | None = None):
    """A redacted copy of a report, snapshot dict or any JSON-like value."""
    if isinstance(value, dict):
        return {k: (_redact_values(v) if k in VALUE_KEYS else redact(v, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if isinstance(value, str):
        return redact_sql(value) if key in SQL_KEYS else redact_text(value)
    return value


def _redact_values(value):
    if isinstance(value, dict):
        return {k: _redact_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_values(v) for v in value]
    return None if value is None else PLACEHOLDER
