"""log_line_prefix -> a regular expression with one named group per escape.

PostgreSQL expands the prefix escapes (see `log_line_prefix` in the manual); we
invert that. Every escape may carry a padding width (`%-20a`, `%10p`, 13+), which pads
the value with spaces, so values are matched with the spaces around them trimmed.
`%q` ends the prefix for processes that are not session backends (checkpointer,
autovacuum...): everything after it becomes optional.
"""

from __future__ import annotations

import re
from functools import lru_cache

# PostgreSQL's default since 10, and what Debian's packages set.
DEFAULT_PREFIX = "%m [%p] "
DEBIAN_PREFIX = "%m [%p] %q%u@%d "

_TS = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?: [A-Za-z0-9+\-:/_]+)?"
_TS_MS = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+(?: [A-Za-z0-9+\-:/_]+)?"

# escape -> (group name, pattern). Text values are lazy: the literal after them anchors them.
ESCAPES: dict[str, tuple[str | None, str]] = {
    "a": ("application", r".*?"),
    "u": ("user", r".*?"),
    "d": ("database", r".*?"),
    "r": ("remote", r".*?"),  # host(port)
    "h": ("host", r".*?"),
    "b": ("backend_type", r".*?"),  # 13+
    "p": ("pid", r"\d+"),
    "P": ("leader_pid", r"\d*"),  # 14+
    "t": ("timestamp", _TS),
    "m": ("timestamp", _TS_MS),
    "n": ("epoch", r"\d+(?:\.\d+)?"),
    "i": ("command_tag", r".*?"),
    "e": ("sqlstate", r"[0-9A-Z]{5}"),
    "c": ("session_id", r"[0-9a-f]+\.[0-9a-f]+"),
    "l": ("line_num", r"\d+"),
    "s": ("session_start", _TS),
    "v": ("vxid", r"(?:-?\d+/\d+)?"),
    "x": ("xid", r"\d*"),
    "Q": ("queryid", r"-?\d+"),  # 14+
}

SEVERITIES = (
    "DEBUG5",
    "DEBUG4",
    "DEBUG3",
    "DEBUG2",
    "DEBUG1",
    "DEBUG",
    "INFO",
    "NOTICE",
    "WARNING",
    "ERROR",
    "LOG",
    "FATAL",
    "PANIC",
    "STATEMENT",
    "DETAIL",
    "HINT",
    "CONTEXT",
    "QUERY",
    "LOCATION",
)


def prefix_pattern(prefix: str) -> str:
    """The regex source for one prefix, without anchors."""
    out: list[str] = []
    optional_from: int | None = None
    used: set[str] = set()
    i = 0
    while i < len(prefix):
        ch = prefix[i]
        if ch != "%":
            out.append(re.escape(ch))
            i += 1
            continue
        m = re.match(r"%(-?\d*)(.)", prefix[i:])
        if not m:  # a trailing lone %: PostgreSQL prints nothing
            break
        width, esc = m.group(1), m.group(2)
        i += m.end()
        if esc == "%":
            out.append("%")
        elif esc == "q":
            optional_from = len(out)
        elif esc in ESCAPES:
            name, pattern = ESCAPES[esc]
            if name in used:  # the same escape twice: match it, capture it once
                group = f"(?:{pattern})"
            else:
                used.add(name)
                group = f"(?P<{name}>{pattern})"
            # Padded values (13+) and the `[unknown]`/empty values of background processes.
            out.append(rf"\s*{group}\s*" if width else group)
        else:  # unknown escapes print nothing
            continue
    if optional_from is not None:
        head, tail = out[:optional_from], out[optional_from:]
        return "".join(head) + "(?:" + "".join(tail) + ")?"
    return "".join(out)


# Groups every line regex has, as empty groups when the prefix lacks the escape: the
# reader takes them with one m.group(...) call per entry.
ALWAYS = ("timestamp", "pid", "session_id", "queryid")


@lru_cache(maxsize=32)
def line_regex(prefix: str) -> re.Pattern:
    """A full stderr line: prefix, severity, two spaces, the message."""
    severity = "|".join(SEVERITIES)
    body = prefix_pattern(prefix)
    present = re.compile(body).groupindex
    empty = "".join(f"(?P<{name}>)" for name in ALWAYS if name not in present)
    return re.compile(rf"^{empty}{body}(?P<severity>{severity}):  (?P<message>.*)$", re.S)


@lru_cache(maxsize=32)
def block_regex(prefix: str) -> re.Pattern:
    """The same, over a block of lines: each match is one entry's first line, its next lines
    (`more`: stderr starts each with a tab, elog.c) and the DETAIL line that follows with the
    same prefix (`detail`, with its own next lines): PostgreSQL writes one message's lines
    together, each with the message's prefix, so an execute's `DETAIL:  parameters: ...` costs
    a comparison of the prefix, not a match of its own (half the entries of an extended-protocol
    log). With %l in the prefix the DETAIL's line number differs: it is matched on its own."""
    severity = "|".join(SEVERITIES)
    body = prefix_pattern(prefix)
    present = re.compile(body).groupindex
    empty = "".join(f"(?P<{name}>)" for name in ALWAYS if name not in present)
    # The statement lines' head, captured in the same match (postgres.c: `duration: 0.015 ms
    # execute S_1: `, `statement: `, `parse <unnamed>: `): no second regex for nearly every line.
    head = (
        r"(?P<head>(?:duration: (?P<duration>\d+(?:\.\d+)?) ms  )?(?P<phase>statement|execute|parse|bind)"
        r"(?: [^:\n]*)?: )?"
    )
    return re.compile(
        rf"^{empty}(?P<prefix>{body})(?P<severity>{severity}):  (?P<message>{head}[^\n]*)"
        r"(?P<more>(?:\n\t[^\n]*)*)(?:\n(?P=prefix)DETAIL:  (?P<detail>[^\n]*(?:\n\t[^\n]*)*))?",
        re.M,
    )
