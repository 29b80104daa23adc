"""Migration sources: read files, parse with pglast, locate every statement.

Locations: pglast's `parse_sql` reports `stmt_location`/`stmt_len` and each node's
`location` as offsets into the Python string (libpg_query counts UTF-8 bytes; pglast
converts them to character offsets), so a line and column come from the text itself.
A statement's `stmt_location` starts right after the previous `;`, so leading
whitespace and comments are skipped to reach its first token. Lines break at LF, CRLF
and a bare CR; columns count Unicode code points, 1-based.
"""

from __future__ import annotations

import bisect
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pglast
from pglast import ast
from pglast.enums import TransactionStmtKind

from queryaudit.errors import AuditError

SQL_SUFFIXES = (".sql", ".psql", ".pgsql")
# `-- queryaudit: ignore rule-a,rule-b reason` on the statement's own lines or just above it;
# `-- queryaudit: ignore-file rule reason` anywhere in the file.
SUPPRESSION = re.compile(
    r"--\s*queryaudit:\s*(ignore-file|ignore)\s+([a-z0-9,\- ]+?)(?:\s+(.*))?$", re.MULTILINE | re.IGNORECASE
)
# squawk's comment that turns assume-in-transaction off for one file (honoured for compatibility).
NO_TRANSACTION = re.compile(r"--\s*(squawk-disable-assume-in-transaction|queryaudit:\s*no-transaction)\b")


class MigrationSyntaxError(AuditError):
    """Unparseable SQL: one line with file:line:column."""

    def __init__(self, path: str, line: int, column: int, message: str, line_text: str = ""):
        super().__init__(f"{path}:{line}:{column}: {message}")
        self.path, self.line, self.column, self.message, self.line_text = path, line, column, message, line_text


class LineIndex:
    """Character offset -> (1-based line, 1-based column), for LF, CRLF and CR line endings."""

    def __init__(self, text: str):
        self.starts = [0]
        i, n = 0, len(text)
        while i < n:
            ch = text[i]
            if ch == "\r":
                if i + 1 < n and text[i + 1] == "\n":
                    i += 1
                self.starts.append(i + 1)
            elif ch == "\n":
                self.starts.append(i + 1)
            i += 1

    def position(self, offset: int) -> tuple[int, int]:
        line = bisect.bisect_right(self.starts, offset) - 1
        return line + 1, offset - self.starts[line] + 1


def skip_blank(text: str, pos: int, end: int | None = None) -> int:
    """The offset of the first token at or after pos: whitespace, -- and (nested) /* */ comments skipped."""
    end = len(text) if end is None else end
    while pos < end:
        ch = text[pos]
        if ch.isspace():
            pos += 1
        elif text.startswith("--", pos):
            nl = re.compile(r"[\r\n]").search(text, pos)
            pos = nl.start() if nl else end
        elif text.startswith("/*", pos):
            depth, pos = 1, pos + 2
            while pos < end and depth:
                if text.startswith("/*", pos):
                    depth, pos = depth + 1, pos + 2
                elif text.startswith("*/", pos):
                    depth, pos = depth - 1, pos + 2
                else:
                    pos += 1
        else:
            break
    return pos


@dataclass
class Suppression:
    rules: set[str]
    reason: str
    line: int
    whole_file: bool


@dataclass
class Statement:
    index: int
    node: ast.Node
    text: str
    start: int  # character offset of the first token
    end: int  # offset just past the statement (before its `;`)
    line: int
    column: int
    end_line: int
    in_transaction: bool = False  # inside BEGIN ... COMMIT, or the tool's assumed transaction


@dataclass
class MigrationFile:
    """One migration: its text, statements in order, and what each statement runs inside."""

    path: str
    text: str
    statements: list[Statement] = field(default_factory=list)
    suppressions: list[Suppression] = field(default_factory=list)
    assume_in_transaction: bool = False

    def __post_init__(self):
        self.lines = LineIndex(self.text)

    def position(self, offset: int) -> tuple[int, int]:
        return self.lines.position(offset)

    def suppression_for(self, rule: str, stmt: Statement | None) -> Suppression | None:
        for s in self.suppressions:
            if rule not in s.rules and "all" not in s.rules:
                continue
            if s.whole_file:
                return s
            if stmt is None:
                continue
            if stmt.line <= s.line <= stmt.end_line:
                return s
            prev_end = self.statements[stmt.index - 1].end_line if stmt.index > 0 else 0
            if prev_end < s.line < stmt.line:
                return s
        return None


def is_transaction(node, *kinds: TransactionStmtKind) -> bool:
    return isinstance(node, ast.TransactionStmt) and node.kind in kinds


BEGIN_KINDS = (TransactionStmtKind.TRANS_STMT_BEGIN, TransactionStmtKind.TRANS_STMT_START)
END_KINDS = (
    TransactionStmtKind.TRANS_STMT_COMMIT,
    TransactionStmtKind.TRANS_STMT_ROLLBACK,
    TransactionStmtKind.TRANS_STMT_COMMIT_PREPARED,
    TransactionStmtKind.TRANS_STMT_ROLLBACK_PREPARED,
    TransactionStmtKind.TRANS_STMT_PREPARE,
)


def parse_migration(path: str, text: str, assume_in_transaction: bool = False) -> MigrationFile:
    """Parse one migration; raises MigrationSyntaxError (file:line:column: message) when invalid."""
    mig = MigrationFile(path, text)
    mig.assume_in_transaction = assume_in_transaction and not NO_TRANSACTION.search(text)
    try:
        raw = pglast.parse_sql(text)
    except pglast.parser.ParseError as exc:
        message, offset = (exc.args + (0,))[:2]
        line, col = mig.position(min(int(offset or 0), len(text)))
        start = mig.lines.starts[line - 1]
        line_text = re.split(r"\r\n|\r|\n", text[start:], maxsplit=1)[0]
        raise MigrationSyntaxError(path, line, col, message, line_text) from None
    in_tx = mig.assume_in_transaction
    for i, r in enumerate(raw):
        loc = r.stmt_location or 0
        end = loc + r.stmt_len if r.stmt_len else len(text)
        start = skip_blank(text, loc, end)
        line, col = mig.position(start)
        end_line = mig.position(max(start, end - 1))[0]
        # a trailing `;` on the same line belongs to the statement's lines
        stmt = Statement(i, r.stmt, text[start:end], start, end, line, col, end_line)
        if is_transaction(r.stmt, *BEGIN_KINDS):
            in_tx = True
        stmt.in_transaction = in_tx
        if is_transaction(r.stmt, *END_KINDS):
            in_tx = False
        mig.statements.append(stmt)
    for m in SUPPRESSION.finditer(text):
        rules = {r.strip().lower() for r in re.split(r"[,\s]+", m.group(2)) if r.strip()}
        mig.suppressions.append(
            Suppression(
                rules, (m.group(3) or "").strip(), mig.position(m.start())[0], m.group(1).lower() == "ignore-file"
            )
        )
    return mig


def _natural_key(name: str):
    """`2_add.sql` before `10_drop.sql`: migration tools number their files."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in re.split(r"(\d+)", name)]


def read_sources(paths: list[str]) -> list[tuple[str, str]]:
    """(display path, text) for each file, directories expanded in apply order (natural sort),
    `-` for stdin. Files are decoded as UTF-8 (a BOM is dropped); newlines are kept as written."""
    out: list[tuple[str, str]] = []
    for p in paths:
        if p == "-":
            out.append(("<stdin>", sys.stdin.read()))
            continue
        path = Path(p)
        if path.is_dir():
            files = sorted(
                (f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in SQL_SUFFIXES),
                key=lambda f: [_natural_key(part) for part in f.relative_to(path).parts],
            )
            if not files:
                raise AuditError(f"{p}: no .sql files in this directory")
        elif path.is_file():
            files = [path]
        else:
            raise AuditError(f"{p}: no such file or directory")
        for f in files:
            try:
                data = f.read_bytes()
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                raise AuditError(f"{f}: not UTF-8 text (byte {exc.start}): convert the file to UTF-8") from None
            out.append((str(f), text))
    return out
