"""Plannable text from pg_stat_statements' normalized text.

pg_stat_statements replaces every constant with $n, and some of what it writes no
longer parses or no longer plans:
- a typed literal keeps its type name in front of the placeholder: `date '1998-12-01'`
  becomes `date $1`, `interval '90' day` becomes `interval $2 day` (a syntax error);
- a constant replaced in the select list but kept where the jumble skips it (GROUP BY,
  ORDER BY): `SELECT substr(v, $2, $3) ... GROUP BY substr(v, 1, 12)` fails with "must
  appear in the GROUP BY clause";
- placeholders with no type to go by: `$1 + $2` ("operator is not unique: unknown +
  unknown"), `now() - $1` (resolved as timestamptz - timestamptz), `sum(CASE ... THEN $3
  ELSE $4 END)` (sum(text)).
Each is rewritten on PostgreSQL's own tokens (pglast's scanner) and parse tree, never
with a regular expression on the text: typed literals become casts (`$1::date`,
`$2::interval`, the unit kept to be folded into the value bound later, '1 day'), a
constant is restored from its other occurrence, context gives a type. What is left is
renumbered $1..$k, and each slot says which placeholder of the original it stands for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import pglast
from pglast import ast
from pglast.parser import scan

from queryaudit.sql import find_nodes

# Type names that may stand before a placeholder as a typed literal (`date $1`). Any
# plain identifier is taken as a type name there too: in valid SQL nothing else puts a
# name right before a placeholder.
_TYPE_KEYWORDS = {
    "TIMESTAMP": "timestamp",
    "TIME": "time",
    "INTERVAL": "interval",
    "INT_P": "int",
    "INTEGER": "integer",
    "BIGINT": "bigint",
    "SMALLINT": "smallint",
    "NUMERIC": "numeric",
    "DECIMAL_P": "numeric",
    "REAL": "real",
    "FLOAT_P": "float",
    "BOOLEAN_P": "boolean",
    "CHAR_P": "char",
    "VARCHAR": "varchar",
    "DEC": "numeric",
}
_INTERVAL_UNITS = {
    "YEAR_P": "year",
    "MONTH_P": "month",
    "DAY_P": "day",
    "HOUR_P": "hour",
    "MINUTE_P": "minute",
    "SECOND_P": "second",
}
# Functions whose first argument is a field name: a placeholder there gets a default field.
_FIELD_ARGUMENT = {"extract": "year", "date_part": "year", "date_trunc": "day"}
# Function arguments that are positions or counts: `substring(x FROM $1 FOR $2)` with
# unknown placeholders resolves to the regular-expression substring(text, text, text).
_INTEGER_ARGUMENTS = {
    "substring": (1, 2),
    "substr": (1, 2),
    "left": (1,),
    "right": (1,),
    "round": (1,),
    "trunc": (1,),
    "lpad": (1,),
    "rpad": (1,),
    "repeat": (1,),
    "split_part": (2,),
}
# Functions taking "any" (variadic): an unknown placeholder there has no type at all
# ("could not determine data type of parameter $1"); pg_stat_statements made it of a
# string literal (`concat('store', s_store_id)`).
_TEXT_ARGUMENTS = {"concat", "concat_ws", "format"}
_TIME_FUNCTIONS = {
    "now",
    "clock_timestamp",
    "statement_timestamp",
    "transaction_timestamp",
    "current_date",
    "current_timestamp",
    "localtimestamp",
}
_ARITHMETIC = {"+", "-", "*", "/", "||"}


@dataclass
class PlannableSlot:
    """One $n of the plannable text."""

    number: int  # $n in the plannable text
    original: int  # $n in pg_stat_statements' text
    cast: str | None = None  # the type the rewrite gave it
    unit: str | None = None  # interval unit to fold into the value: '1' -> '1 day'
    default: str | None = None  # a value the text itself implies (EXTRACT's field)


@dataclass
class Plannable:
    text: str
    slots: list[PlannableSlot] = field(default_factory=list)
    rewrites: list[str] = field(default_factory=list)  # what was changed, in the DBA's words
    restored: dict[int, str] = field(default_factory=dict)  # original $n -> the constant put back

    def slot(self, number: int) -> PlannableSlot | None:
        return next((s for s in self.slots if s.number == number), None)

    def bind(self, number: int, value: str) -> str:
        """The value as bound: an interval's unit folded in ('90' -> '90 day')."""
        slot = self.slot(number)
        if slot is not None and slot.unit and value.strip().lstrip("-").replace(".", "", 1).isdigit():
            return f"{value} {slot.unit}"
        return value


def _apply(text: str, edits: list[tuple[int, int, str]]) -> str:
    """Replace [start, end] (inclusive character offsets, as the scanner gives them)."""
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end + 1 :]
    return text


def _param_tokens(text: str) -> dict[int, tuple[int, int]]:
    return {int(text[t.start + 1 : t.end + 1]): (t.start, t.end) for t in scan(text) if t.name == "PARAM"}


def _typed_literals(text: str, casts: dict[int, str], units: dict[int, str], rewrites: list[str]) -> str:
    """`date $1` -> `$1::date`, `interval $2 day` -> `$2::interval` (unit kept aside),
    `timestamp with time zone $3` -> `$3::timestamp with time zone`."""
    tokens = scan(text)
    edits = []
    for i, tok in enumerate(tokens):
        if tok.name != "PARAM":
            continue
        # Walk back over the type name: one word, or TIME/TIMESTAMP WITH[OUT] TIME ZONE.
        j = i - 1
        if (
            j >= 2
            and tokens[j].name == "ZONE"
            and tokens[j - 1].name == "TIME"
            and tokens[j - 2].name in ("WITH", "WITHOUT")
            and j >= 3
            and tokens[j - 3].name in ("TIMESTAMP", "TIME")
        ):
            first = j - 3
        elif j >= 0 and (tokens[j].name in _TYPE_KEYWORDS or tokens[j].name == "IDENT"):
            first = j
        else:
            continue
        if first > 0 and tokens[first - 1].name in ("ASCII_46", "TYPECAST"):
            continue  # `x.date $1` or `::date $1` is not a typed literal
        type_name = " ".join(text[t.start : t.end + 1].lower() for t in tokens[first:i])
        number = int(text[tok.start + 1 : tok.end + 1])
        end = tok.end
        if type_name == "interval" and i + 1 < len(tokens) and tokens[i + 1].name in _INTERVAL_UNITS:
            units[number] = _INTERVAL_UNITS[tokens[i + 1].name]
            end = tokens[i + 1].end
            # `interval $1 year to month`: the first unit is enough to bind a value in.
            if i + 3 < len(tokens) and tokens[i + 2].name == "TO" and tokens[i + 3].name in _INTERVAL_UNITS:
                end = tokens[i + 3].end
        casts[number] = type_name
        edits.append((tokens[first].start, end, f"${number}::{type_name}"))
        rewrites.append(f"{text[tokens[first].start : end + 1]} -> ${number}::{type_name}")
    return _apply(text, edits)


def _shape(node) -> object:
    """The node as plain data without locations (two occurrences of one expression compare equal)."""
    if isinstance(node, ast.Node):
        node = node(depth=None, skip_none=True)
    if isinstance(node, dict):
        return {k: _shape(v) for k, v in node.items() if k != "location"}
    if isinstance(node, (tuple, list)):
        return [_shape(v) for v in node]
    return node


def _match(param_side, const_side, pairs: list) -> bool:
    """Equal but for placeholders on one side where the other has constants; the pairs found."""
    if isinstance(param_side, dict) and isinstance(const_side, dict):
        if param_side.get("@") == "ParamRef" and const_side.get("@") == "A_Const":
            pairs.append((param_side["number"], const_side))
            return True
        if param_side.keys() != const_side.keys():
            return False
        return all(_match(param_side[k], const_side[k], pairs) for k in param_side)
    if isinstance(param_side, list) and isinstance(const_side, list):
        return len(param_side) == len(const_side) and all(
            _match(a, b, pairs) for a, b in zip(param_side, const_side, strict=True)
        )
    return param_side == const_side


def _subtrees(shape):
    if isinstance(shape, dict):
        yield shape
        for v in shape.values():
            yield from _subtrees(v)
    elif isinstance(shape, list):
        for v in shape:
            yield from _subtrees(v)


def _const_sql(const: dict) -> str | None:
    val = const.get("val") or {}
    kind = val.get("@")
    if kind == "Integer":
        return str(val["ival"])
    if kind == "Float":
        return val["fval"]
    if kind == "String":
        return "'" + val["sval"].replace("'", "''") + "'"
    if kind == "Boolean":
        return "true" if val.get("boolval") else "false"
    return None


def _kept_constants(stmts) -> dict[int, str]:
    """$n -> constant, where GROUP BY / ORDER BY kept the constant of a select-list expression."""
    restored: dict[int, str] = {}
    for select in find_nodes(stmts, ast.SelectStmt):
        kept = [_shape(g) for g in select.groupClause or ()]
        kept += [_shape(s.node) for s in select.sortClause or () if isinstance(s, ast.SortBy)]
        kept = [k for k in kept if any(t.get("@") == "A_Const" for t in _subtrees(k))]
        if not kept:
            continue
        for target in select.targetList or ():
            for sub in _subtrees(_shape(target.val if isinstance(target, ast.ResTarget) else target)):
                if not any(t.get("@") == "ParamRef" for t in _subtrees(sub)):
                    continue
                for k in kept:
                    pairs: list = []
                    if _match(sub, k, pairs) and pairs:
                        for number, const in pairs:
                            if (value := _const_sql(const)) is not None:
                                restored.setdefault(number, value)
    return restored


def _bare_param(node) -> int | None:
    return node.number if isinstance(node, ast.ParamRef) else None


def _is_time(node) -> bool:
    if isinstance(node, ast.SQLValueFunction):
        return True
    if isinstance(node, ast.FuncCall) and node.funcname:
        return node.funcname[-1].sval.lower() in _TIME_FUNCTIONS
    if isinstance(node, ast.TypeCast) and node.typeName and node.typeName.names:
        return node.typeName.names[-1].sval.lower() in ("date", "timestamp", "timestamptz")
    return False


def _is_date(node, date_columns: frozenset[str]) -> bool:
    """A date-typed operand: a cast to date, or a column the catalog says is a date."""
    if isinstance(node, ast.TypeCast) and node.typeName and node.typeName.names:
        return node.typeName.names[-1].sval.lower() == "date"
    return (
        isinstance(node, ast.ColumnRef)
        and isinstance(node.fields[-1], ast.String)
        and node.fields[-1].sval in date_columns
    )


def _context_types(
    stmts,
    casts: dict[int, str],
    defaults: dict[int, str],
    restored: dict[int, str],
    rewrites: list[str],
    date_columns: frozenset[str] = frozenset(),
) -> None:
    """Types (and field defaults) for placeholders that have none from the text."""

    def give(number, typ, why):
        if number is not None and number not in casts:
            casts[number] = typ
            rewrites.append(f"${number}::{typ} ({why})")

    for expr in find_nodes(stmts, ast.A_Expr):
        op = expr.name[-1].sval if expr.name else None
        if op not in _ARITHMETIC:
            continue
        left, right = _bare_param(expr.lexpr), _bare_param(expr.rexpr)
        if left is not None and right is not None:
            # `$1 + $2`: unknown + unknown is ambiguous; arithmetic on two constants is
            # numeric, a concatenation of two is text.
            typ = "text" if op == "||" else "numeric"
            give(left, typ, f"${left} {op} ${right}")
            give(right, typ, f"${left} {op} ${right}")
        elif (
            right is not None
            and op in ("+", "-")
            and isinstance(expr.lexpr, ast.ColumnRef)
            and _is_date(expr.lexpr, date_columns)
        ):
            # `d_date + $5`: date + unknown is ambiguous (integer, interval, time); the
            # constant was a number of days.
            give(right, "integer", "days added to a date")
        elif right is not None and op in ("+", "-") and _is_time(expr.lexpr):
            # `now() - $1` would resolve as timestamptz - timestamptz.
            give(right, "interval", "a time minus a placeholder")
    for call in find_nodes(stmts, ast.FuncCall):
        name = call.funcname[-1].sval.lower() if call.funcname else ""
        args = call.args or ()
        if name in _FIELD_ARGUMENT and args and (n := _bare_param(args[0])) is not None:
            if name == "extract":
                # EXTRACT's grammar takes a field name, never a placeholder (pglast's parser
                # is laxer than the server): the field goes back in as a word. The plan does
                # not depend on which field it was.
                restored.setdefault(n, _FIELD_ARGUMENT[name])
                rewrites.append(
                    f"extract(${n} FROM ...) -> extract({_FIELD_ARGUMENT[name]} FROM ...) "
                    "(the field is not kept by pg_stat_statements)"
                )
            else:
                defaults.setdefault(n, _FIELD_ARGUMENT[name])
                give(n, "text", f"{name} field")
        if name in _TEXT_ARGUMENTS:
            for arg in args:
                give(_bare_param(arg), "text", f"{name} argument")
        for position in _INTEGER_ARGUMENTS.get(name, ()):
            if position < len(args):
                give(_bare_param(args[position]), "integer", f"{name} argument {position + 1}")
        if name in ("sum", "avg") and args and isinstance(args[0], ast.CaseExpr):
            case = args[0]
            results = [w.result for w in case.args or ()] + ([case.defresult] if case.defresult else [])
            if results and all(_bare_param(r) is not None for r in results):
                # sum(CASE ... THEN $3 ELSE $4 END) would be sum(text).
                for r in results:
                    give(r.number, "numeric", f"{name}(CASE ...) result")


def date_columns(tables) -> frozenset[str]:
    """Names of the date columns of the catalog's tables, for make_plannable (`d_date + $5`)."""
    return frozenset(c.name for t in tables for c in t.columns if c.type == "date")


@lru_cache(maxsize=1024)
def make_plannable(query: str, date_columns: frozenset[str] = frozenset()) -> Plannable:
    """The plannable rewrite of a normalized statement (the text unchanged when it needs none).
    `date_columns`: column names the catalog types as date (queryaudit.plans.plannable.date_columns).
    Never raises: text that still does not parse is returned as rewritten so far."""
    casts: dict[int, str] = {}
    units: dict[int, str] = {}
    defaults: dict[int, str] = {}
    rewrites: list[str] = []
    try:
        originals = sorted(_param_tokens(query))
        text = _typed_literals(query, casts, units, rewrites)
        stmts = pglast.parse_sql(text)
    except Exception:
        return Plannable(query, [PlannableSlot(n, n) for n in range(1, max(_safe_params(query), default=0) + 1)])
    try:
        restored = _kept_constants(stmts)
        for number, value in sorted(restored.items()):
            rewrites.append(f"${number} -> {value} (the constant kept in GROUP BY / ORDER BY)")
        _context_types(stmts, casts, defaults, restored, rewrites, date_columns)
    except Exception:  # a tree shape not foreseen: the typed-literal rewrite alone
        return Plannable(text, [PlannableSlot(n, n, casts.get(n), units.get(n)) for n in originals], rewrites)
    # Put restored constants back, add the context casts, renumber the rest $1..$k.
    positions = _param_tokens(text)
    remaining = [n for n in originals if n not in restored]
    renumber = {old: new for new, old in enumerate(remaining, 1)}
    edits = []
    for old, (start, end) in positions.items():
        if old in restored:
            edits.append((start, end, restored[old]))
            continue
        new = f"${renumber[old]}"
        already_cast = text[end + 1 : end + 3] == "::"
        if old in casts and not already_cast:
            new = f"{new}::{casts[old]}"
        edits.append((start, end, new))
    text = _apply(text, edits)
    slots = [PlannableSlot(renumber[old], old, casts.get(old), units.get(old), defaults.get(old)) for old in remaining]
    return Plannable(text, slots, rewrites, restored)


def _safe_params(query: str) -> list[int]:
    try:
        return list(_param_tokens(query))
    except Exception:
        return []
