"""Read any EXPLAIN output a user pastes or a log holds into EXPLAIN (FORMAT JSON)'s shape.

`load_plan(text)` returns the top object of EXPLAIN (FORMAT JSON):
``{"Plan": {"Node Type": ..., "Plans": [...]}, "Planning Time": ..., "Execution Time": ...,
"Triggers": [...], "JIT": {...}, "Settings": {...}, ...}`` with PostgreSQL's own key names,
so everything downstream (the plan model, the plan checks) reads one shape whatever the
source: our own JSON capture, a text plan from a ticket, a pgAdmin or CSV export, an
auto_explain log entry.

JSON input (an array or a single object, on one line, exported to CSV with doubled
quotes, or inside psql's decoration with its ``+`` line markers) is decoded as JSON and
returned as PostgreSQL wrote it. Text input is parsed: psql headers and row counts,
pgAdmin-style quoted lines, stray trailing quotes, tabs mixed with spaces, psql output
hard-wrapped at the terminal width, ``Query Text:`` (auto_explain), ``->`` nesting by
indentation, InitPlan/SubPlan/CTE headers, per-worker lines, never-executed nodes,
fractional rows (PostgreSQL 18), and the Planning/Settings/Triggers/JIT/Serialization
sections. A detail line we do not know is kept under its own key rather than failing.

Where the text and JSON formats differ, the text parse produces what JSON would hold:
- "Hash Left Join" is ``Node Type: Hash Join, Join Type: Left``; "Partial HashAggregate" is
  ``Aggregate`` with ``Strategy: Hashed, Partial Mode: Partial``; "Insert on t" is
  ``ModifyTable`` with ``Operation: Insert``; "Parallel"/"Async" prefixes become
  ``Parallel Aware``/``Async Capable``.
- A never-executed node has zero actual times, rows and loops (``Actual Loops: 0``).
- With BUFFERS, text omits all-zero counters; nodes then get the zero counters JSON has.
- "I/O Timings: read=" (PostgreSQL <= 14) is ``I/O Read Time``; a scoped "shared read="
  (15+) is ``Shared I/O Read Time`` (PostgreSQL 15's JSON says ``I/O Read Time`` for it:
  readers should accept both).
- Actual rows are floats when the text has decimals (PostgreSQL 18), ints before.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from queryaudit.plans import model as plan_model

__all__ = ["load_plan", "load_plan_file", "walk", "node_label", "tree_lines", "detail_lines"]

TAB_WIDTH = 4  # tabs in pasted plans stand for runs of spaces; 4 keeps relative depth
MAX_TEXT = 50_000_000

# --- node titles ---------------------------------------------------------------------

_IDENT = r'(?:"(?:[^"]|"")*"|[^\s".]+)'
_STATS = re.compile(r"\s\((?:cost=|actual |never executed)")
_COST = re.compile(r"cost=(-?[\d.]+)\.\.(-?[\d.]+) rows=(\d+) width=(\d+)")
_ACTUAL = re.compile(r"actual(?: time=([\d.]+)\.\.([\d.]+))? rows=([\d.]+) loops=(\d+)")
_JOIN = re.compile(r"(Nested Loop|Merge|Hash)(?: (Left|Full|Right|Semi|Anti|Right Semi|Right Anti))? Join")
_AGG = re.compile(r"(?:(Partial|Finalize) )?(Aggregate|GroupAggregate|HashAggregate|MixedAggregate)")
_AGG_STRATEGY = {"Aggregate": "Plain", "GroupAggregate": "Sorted", "HashAggregate": "Hashed", "MixedAggregate": "Mixed"}
_SETOP = re.compile(r"(SetOp|HashSetOp) (.+)")
_MODIFY = {"Insert", "Update", "Delete", "Merge"}
KNOWN_NODES = {
    "Result",
    "ProjectSet",
    "ModifyTable",
    "Append",
    "Merge Append",
    "Recursive Union",
    "BitmapAnd",
    "BitmapOr",
    "Nested Loop",
    "Merge Join",
    "Hash Join",
    "Seq Scan",
    "Sample Scan",
    "Gather",
    "Gather Merge",
    "Index Scan",
    "Index Only Scan",
    "Bitmap Index Scan",
    "Bitmap Heap Scan",
    "Tid Scan",
    "Tid Range Scan",
    "Subquery Scan",
    "Function Scan",
    "Table Function Scan",
    "Values Scan",
    "CTE Scan",
    "Named Tuplestore Scan",
    "WorkTable Scan",
    "Foreign Scan",
    "Custom Scan",
    "Materialize",
    "Memoize",
    "Sort",
    "Incremental Sort",
    "Group",
    "Aggregate",
    "WindowAgg",
    "Unique",
    "SetOp",
    "LockRows",
    "Limit",
    "Hash",
}
# What the object after "on" is called in JSON, by node type.
_TARGET_KEY = {
    "Function Scan": "Function Name",
    "Table Function Scan": "Table Function Name",
    "CTE Scan": "CTE Name",
    "WorkTable Scan": "CTE Name",
    "Named Tuplestore Scan": "Tuplestore Name",
    "Subquery Scan": None,
    "Values Scan": None,
    "Bitmap Index Scan": "Index Name",
}
_MEMBER_PARENTS = {"Append", "Merge Append", "BitmapAnd", "BitmapOr"}

# --- detail lines ----------------------------------------------------------------------

# Detail lines holding SQL expressions (conditions, keys, calls), where the statement's
# literals show: the text parse keeps them as strings, and redact.py scans them token by token.
EXPRESSION_KEYS = {
    "Filter",
    "Index Cond",
    "Recheck Cond",
    "Hash Cond",
    "Merge Cond",
    "Join Filter",
    "One-Time Filter",
    "Order By",
    "TID Cond",
    "Function Call",
    "Table Function Call",
    "Cache Key",
    "Run Condition",
    "Remote SQL",
    "Conflict Filter",
    "Sampling",
    "Repeatable Seed",
    "Window",
}
EXPRESSION_LIST_KEYS = {"Output", "Sort Key", "Presorted Key", "Group Key", "Hash Key"}
_STRING_KEYS = EXPRESSION_KEYS | {"Cache Mode", "Conflict Resolution", "Relations", "Command", "Strategy"}
_LIST_KEYS = EXPRESSION_LIST_KEYS | {"Conflict Arbiter Indexes", "Params Evaluated"}
BUFFER_KEYS = tuple(
    f"{scope} {kind} Blocks" for scope in ("Shared", "Local") for kind in ("Hit", "Read", "Dirtied", "Written")
) + ("Temp Read Blocks", "Temp Written Blocks")
_BUFFER_KIND = {"hit": "Hit", "read": "Read", "dirtied": "Dirtied", "written": "Written"}
_WORKER = re.compile(r"Worker (\d+):\s*(.*)")
_HEADER = re.compile(r"(?:InitPlan|SubPlan)(?: \d+)?(?: \(returns .*\))?|CTE " + _IDENT)
_TARGET_TABLE = re.compile(r"(Insert|Update|Delete|Merge) on (.+)")
_TRIGGER = re.compile(
    r"Trigger(?: (?!for constraint )(?P<name>.*?))?(?: for constraint (?P<con>.*?))?"
    r"(?: on (?P<rel>[^:]*?))?: time=(?P<time>[\d.]+) calls=(?P<calls>\d+)"
)
_ROWCOUNT = re.compile(r"\(\d+ [^\s()]+\)")
_RULE_CHARS = set("-─═━+┼╪┬┴├┤|│")
_SETTING = re.compile(r"([\w.]+) = '((?:[^']|'')*)'")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_KB = re.compile(r"(-?\d+(?:\.\d+)?)\s*kB")


class _Block:
    """A nested section that is not a plan node (Planning:, JIT:, a worker's lines)."""

    def __init__(self, col: int, kind: str, target: dict, node_type: str = ""):
        self.col, self.kind, self.target, self.node_type = col, kind, target, node_type


# --- public API --------------------------------------------------------------------------


def load_plan(text: str) -> dict:
    """The EXPLAIN (FORMAT JSON) top object for any EXPLAIN output (text or JSON).

    Raises ValueError (one line) when the text holds no plan.
    """
    if not isinstance(text, str):
        raise ValueError("a plan must be text (str)")
    if len(text) > MAX_TEXT:
        raise ValueError(f"plan text too large ({len(text)} characters)")
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    if not text.strip():
        raise ValueError("no EXPLAIN plan: the input is empty")
    found = _json_plan(text)
    if found is not None:
        return found
    return _TextParser(_text_lines(text)).parse()


def load_plan_file(path: str | Path) -> dict:
    """load_plan on a file; undecodable bytes (a cut multi-byte rule line) are replaced."""
    return load_plan(Path(path).read_bytes().decode("utf-8", errors="replace"))


def walk(plan: dict, depth: int = 0):
    """(depth, node) for every node, parents before children, in plan order."""
    node = plan.get("Plan", plan)
    yield depth, node
    for child in node.get("Plans") or []:
        yield from walk(child, depth + 1)


def _paths(plan: dict, path: str = "0"):
    """The path of each node in walk() order, as queryaudit.plans.model numbers them ("0.1.0")."""
    yield path
    node = plan.get("Plan", plan)
    for i, child in enumerate(node.get("Plans") or []):
        yield from _paths(child, f"{path}.{i}")


def node_label(node: dict) -> str:
    """The node as EXPLAIN's text format names it: "Hash Left Join", "Index Scan using i on t"."""
    node_type = node.get("Node Type", "?")
    name = node_type
    if node_type in ("Nested Loop", "Hash Join", "Merge Join") and node.get("Join Type", "Inner") != "Inner":
        base = "Nested Loop" if node_type == "Nested Loop" else node_type[:-5]
        name = f"{base} {node['Join Type']} Join"
    elif node_type == "Aggregate":
        name = {v: k for k, v in _AGG_STRATEGY.items()}.get(node.get("Strategy"), "Aggregate")
        if node.get("Partial Mode") in ("Partial", "Finalize"):
            name = f"{node['Partial Mode']} {name}"
    elif node_type == "ModifyTable" and node.get("Operation"):
        name = node["Operation"]
    elif node_type == "SetOp":
        name = ("HashSetOp" if node.get("Strategy") == "Hashed" else "SetOp") + (
            f" {node['Command']}" if node.get("Command") else ""
        )
    if node.get("Scan Direction") == "Backward":
        name += " Backward"
    if node.get("Parallel Aware"):
        name = "Parallel " + name
    if node.get("Async Capable") and node_type == "Foreign Scan":
        name = "Async " + name
    if node.get("Index Name") and node_type != "Bitmap Index Scan":
        name += f" using {node['Index Name']}"
    target = None
    for key in ("Relation Name", "Function Name", "CTE Name", "Tuplestore Name", "Table Function Name", "Index Name"):
        if node.get(key) and not (key == "Index Name" and node_type != "Bitmap Index Scan"):
            target = node[key]
            if node.get("Schema") and key in ("Relation Name", "Function Name"):
                target = f"{node['Schema']}.{target}"
            break
    alias = node.get("Alias")
    if target:
        name += f" on {target}"
        base = node.get("Relation Name") or node.get("Function Name") or node.get("CTE Name")
        if alias and alias != base:
            name += f" {alias}"
    elif alias:
        name += f" on {alias}"
    return name


# --- JSON input --------------------------------------------------------------------------


def _json_plan(text: str) -> dict | None:
    """The plan when the input is EXPLAIN (FORMAT JSON) output in any wrapping, else None."""
    stripped = text.strip()
    candidates = [stripped]
    if stripped.startswith('"') and stripped.endswith('"') and len(stripped) > 2:
        candidates.append(stripped[1:-1].replace('""', '"'))  # a CSV cell
    for candidate in candidates:
        if candidate[:1] in "[{":
            try:
                obj = json.loads(candidate)
            except ValueError:
                continue
            return _plan_from_json(obj)
    # Inside psql's decoration: drop the "+" continuation markers, then decode from the
    # first line that opens an array or an object.
    lines = [re.sub(r"[ \t]*\+[ \t]*$", "", line) for line in text.split("\n")]
    joined = "\n".join(lines)
    decoder = json.JSONDecoder()
    offset = 0
    error = None
    for line in lines:
        body = line.lstrip()
        start = offset + len(line) - len(body)
        offset += len(line) + 1
        quoted = body.startswith('"') and body[1:].lstrip()[:1] in ("[", "{")
        if not (body[:1] in ("[", "{") or quoted):
            continue
        source = joined[start:]
        if quoted:
            end = source.rfind('"')
            source = source[1 : end if end > 0 else None].replace('""', '"')
        try:
            obj, _ = decoder.raw_decode(source.lstrip())
        except ValueError as exc:
            error = error or exc
            continue
        try:
            return _plan_from_json(obj)
        except ValueError:
            continue
    if error is not None and '"Node Type"' in text:
        raise ValueError(f"the JSON plan does not decode: {error}")
    return None


def _plan_from_json(obj, depth: int = 0) -> dict:
    """The EXPLAIN top object inside whatever a tool wrapped it in."""
    if depth < 6:
        if isinstance(obj, list):
            for item in obj:
                try:
                    return _plan_from_json(item, depth + 1)
                except ValueError:
                    continue
        elif isinstance(obj, dict):
            if isinstance(obj.get("Plan"), dict) and "Node Type" in obj["Plan"]:
                return obj
            if "Node Type" in obj:
                return {"Plan": obj}
            for value in obj.values():  # e.g. {"QUERY PLAN": [...]} from a result-set export
                try:
                    return _plan_from_json(value, depth + 1)
                except ValueError:
                    continue
        elif isinstance(obj, str) and obj.strip()[:1] in ("[", "{"):
            try:
                return _plan_from_json(json.loads(obj), depth + 1)
            except ValueError:
                pass
    raise ValueError('JSON input holds no plan (no object with "Plan" or "Node Type")')


# --- text clean-up ----------------------------------------------------------------------


def _text_lines(text: str) -> list[str]:
    """The plan's lines without the decoration tools and terminals add around them."""
    lines = text.split("\n")  # trailing blanks kept: psql's wrapped lines are all exactly one width
    nonblank = [line for line in lines if line.strip()]
    if not nonblank:
        return []
    # psql expanded mode (\x): "QUERY PLAN | ..." per record.
    if any(re.match(r"\s*QUERY PLAN\s*\|", line) for line in nonblank):
        lines = [
            re.sub(r"^\s*(?:QUERY PLAN)?\s*\| ?", "", line)
            for line in lines
            if not re.match(r"\s*-\[ RECORD \d+ \]", line)
        ]
    # pgAdmin / CSV: every line quoted, inner quotes doubled.
    quoted = sum(1 for line in nonblank if line.lstrip().startswith('"') and line.rstrip().endswith('"'))
    if quoted >= max(2, 0.6 * len(nonblank)):
        lines = [_unquote(line) for line in lines]
    else:
        trailing = sum(1 for line in nonblank if line.rstrip().endswith('"') and not line.lstrip().startswith('"'))
        if trailing >= max(2, 0.6 * len(nonblank)):
            lines = [line.rstrip()[:-1] if line.rstrip().endswith('"') else line for line in lines]
    # psql border=2 frames: "| ... |" or "│ ... │".
    framed = sum(1 for line in nonblank if line.lstrip()[:1] in "|│" and line.rstrip()[-1:] in "|│")
    if framed >= max(2, 0.6 * len(nonblank)):
        lines = [re.sub(r"^\s*[|│] ?(.*?)\s*[|│]\s*$", r"\1", line) for line in lines]
    lines = _unwrap(lines)
    return [_expand_tabs(line) if "\t" in line else line for line in lines]


def _unquote(line: str) -> str:
    body = line.strip()
    if body.startswith('"'):
        body = body[1:]
    if body.endswith('"'):
        body = body[:-1]
    return body.replace('""', '"')


def _expand_tabs(line: str) -> str:
    indent = len(line) - len(line.lstrip(" \t"))
    return line[:indent].replace("\t", " " * TAB_WIDTH) + line[indent:].replace("\t", " ")


def _unwrap(lines: list[str]) -> list[str]:
    """Join lines psql hard-wrapped at the terminal width (many lines of exactly that width)."""
    lengths = Counter(len(line) for line in lines if line.strip())
    if not lengths:
        return lines
    width = max(lengths)
    nonblank = sum(lengths.values())
    if width < 20 or lengths[width] < 3 or lengths[width] < 0.15 * nonblank:
        return lines
    out: list[str] = []
    pending = None
    for line in lines:
        if pending is not None and _is_rule(pending.strip()) and not _is_rule(line.strip()):
            out.append(pending)  # a psql rule padded to the width ends before the plan starts
            pending = None
        if pending is not None:
            pending += line
        else:
            pending = line
        if len(line) != width:
            out.append(pending)
            pending = None
    if pending is not None:
        out.append(pending)
    return out


def _is_rule(body: str) -> bool:
    if len(body) < 3:
        return False
    return sum(ch in _RULE_CHARS for ch in body) >= 0.9 * len(body)


# --- text parsing ---------------------------------------------------------------------


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _num(text: str):
    text = text.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def _kb(text: str):
    m = _KB.search(text)
    return _num(m.group(1)) if m else _num(text)


def _value(text: str):
    text = text.strip()
    if text in ("true", "false"):
        return text == "true"
    if _NUMBER.fullmatch(text):
        return _num(text)
    return text


def split_list(text: str) -> list[str]:
    """Split "a, f(b, c), 'x,y'" at top-level commas (EXPLAIN's list separator)."""
    items, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
    last = text[start:].strip()
    if last or items:
        items.append(last)
    return items


def _pairs(text: str) -> list[tuple[str, str]]:
    """ "Hits: 1  Misses: 2" -> [("Hits", "1"), ("Misses", "2")]: fields are separated by 2+ spaces."""
    pairs: list[list[str]] = []
    for segment in re.split(r"\s{2,}", text.strip()):
        key, sep, value = segment.partition(":")
        if sep and re.fullmatch(r"[A-Za-z][\w /-]*", key.strip()):
            pairs.append([key.strip(), value.strip()])
        elif pairs:
            pairs[-1][1] = (pairs[-1][1] + " " + segment).strip()
    return [(k, v) for k, v in pairs]


def _parse_stats(text: str, node: dict) -> None:
    m = _COST.search(text)
    if m:
        node["Startup Cost"] = float(m.group(1))
        node["Total Cost"] = float(m.group(2))
        node["Plan Rows"] = int(m.group(3))
        node["Plan Width"] = int(m.group(4))
    if "never executed" in text:
        node.update({"Actual Startup Time": 0.0, "Actual Total Time": 0.0, "Actual Rows": 0, "Actual Loops": 0})
        return
    m = _ACTUAL.search(text)
    if m:
        if m.group(1) is not None:
            node["Actual Startup Time"] = float(m.group(1))
            node["Actual Total Time"] = float(m.group(2))
        node["Actual Rows"] = _num(m.group(3))
        node["Actual Loops"] = int(m.group(4))


def _unquote_ident(ident: str) -> str:
    if len(ident) >= 2 and ident.startswith('"') and ident.endswith('"'):
        return ident[1:-1].replace('""', '"')
    return ident


def _target(text: str) -> tuple[str | None, str, str | None]:
    """'public."my t" x' -> ("public", "my t", "x")."""
    m = re.fullmatch(rf"({_IDENT})(?:\.({_IDENT}))?(?: ({_IDENT}))?", text.strip())
    if not m:
        return None, text.strip(), None
    if m.group(2) is not None:
        return _unquote_ident(m.group(1)), _unquote_ident(m.group(2)), m.group(3) and _unquote_ident(m.group(3))
    return None, _unquote_ident(m.group(1)), m.group(3) and _unquote_ident(m.group(3))


def _classify(name: str) -> dict:
    """Node Type and the properties JSON spells out for a text node name."""
    props: dict = {}
    parallel = name.startswith("Parallel ")
    if parallel:
        name = name[len("Parallel ") :]
    is_async = name.startswith("Async ")
    if is_async:
        name = name[len("Async ") :]
    m_join = _JOIN.fullmatch(name)
    m_agg = _AGG.fullmatch(name)
    m_setop = _SETOP.fullmatch(name)
    m_index = re.fullmatch(r"(Index Scan|Index Only Scan)( Backward)?", name)
    if name == "Nested Loop" or name.startswith("Nested Loop ") and m_join:
        props["Node Type"] = "Nested Loop"
        props["Join Type"] = m_join.group(2) if m_join and m_join.group(2) else "Inner"
    elif m_join:
        props["Node Type"] = f"{m_join.group(1)} Join"
        props["Join Type"] = m_join.group(2) or "Inner"
    elif m_agg:
        props["Node Type"] = "Aggregate"
        props["Strategy"] = _AGG_STRATEGY[m_agg.group(2)]
        props["Partial Mode"] = m_agg.group(1) or "Simple"
    elif m_setop:
        props["Node Type"] = "SetOp"
        props["Strategy"] = "Hashed" if m_setop.group(1) == "HashSetOp" else "Sorted"
        props["Command"] = m_setop.group(2)
    elif name in _MODIFY:
        props["Node Type"] = "ModifyTable"
        props["Operation"] = name
    elif name.startswith("Foreign ") and name[len("Foreign ") :] in ("Scan", "Insert", "Update", "Delete"):
        props["Node Type"] = "Foreign Scan"
        props["Operation"] = {"Scan": "Select"}.get(name[8:], name[8:])
    elif name.startswith("Custom Scan"):
        props["Node Type"] = "Custom Scan"
        m = re.fullmatch(r"Custom Scan \((.*)\)", name)
        if m:
            props["Custom Plan Provider"] = m.group(1)
    elif m_index:
        props["Node Type"] = m_index.group(1)
        props["Scan Direction"] = "Backward" if m_index.group(2) else "Forward"
    else:
        props["Node Type"] = name
    props["Parallel Aware"] = parallel
    if is_async:
        props["Async Capable"] = True
    return props


def _is_node_name(title: str) -> bool:
    name = re.split(r" using | on ", title, maxsplit=1)[0]
    name = re.sub(r"^(Parallel |Async )+", "", name)
    name = re.sub(r" \(.*\)$", "", name)
    if name.startswith("Subquery Scan"):
        return True
    props = _classify(name)
    return props["Node Type"] in KNOWN_NODES


def _parse_node(title: str) -> dict:
    """A node from its text title: "Index Scan Backward using i on public.t t1"."""
    title = title.strip()
    index_name = target = None
    m = re.fullmatch(rf"(.+?) using ({_IDENT}) on (.+)", title)
    if m:
        name, index_name, target = m.group(1), _unquote_ident(m.group(2)), m.group(3)
    else:
        m = re.fullmatch(r"(.+?) on (.+)", title)
        if m:
            name, target = m.group(1), m.group(2)
        elif title.startswith("Subquery Scan "):  # before PostgreSQL 9.x: no "on"
            name, target = "Subquery Scan", title[len("Subquery Scan ") :]
        else:
            name = title
    node = _classify(name)
    node_type = node["Node Type"]
    if index_name:
        node["Index Name"] = index_name
    if target:
        schema, obj, alias = _target(target)
        key = _TARGET_KEY.get(node_type, "Relation Name")
        if key == "Index Name":
            node["Index Name"] = obj
        else:
            if key:
                node[key] = obj
            if schema:
                node["Schema"] = schema
            node["Alias"] = alias or obj
    return node


class _TextParser:
    def __init__(self, lines: list[str]):
        self.lines = lines
        self.top: dict = {}
        self.saw_buffers = False

    # The root: the first line that looks like a plan node.
    def _find_root(self) -> int:
        for i, line in enumerate(self.lines):
            body = line.strip()
            if body.startswith("->"):
                body = body[2:].strip()
            m = _STATS.search(body)
            if m and body[: m.start()].strip() and not body.lower().startswith(("explain", "query text:")):
                return i
        start = 0
        for i, line in enumerate(self.lines):  # COSTS OFF without ANALYZE: known node names only
            if _is_rule(line.strip()):
                start = i + 1
        for i in range(start, len(self.lines)):
            body = self.lines[i].strip()
            if body.startswith("->"):
                body = body[2:].strip()
            if body and _is_node_name(body):
                return i
        raise ValueError(
            "not an EXPLAIN plan: no plan node found (expected a line like "
            "'Seq Scan on t  (cost=...)' or EXPLAIN (FORMAT JSON) output)"
        )

    def parse(self) -> dict:
        root_index = self._find_root()
        self._query_text(root_index)
        root_line = self.lines[root_index]
        root_body = root_line.strip()
        root_col = _indent(root_line)
        if root_body.startswith("->"):
            root_body = root_body[2:].strip()
        root = self._node(root_body)
        self.top = {"Plan": root, **self.top}
        stack: list[tuple[int, dict, dict | None]] = [(root_col, root, None)]  # (col, node, header)
        blocks: list[_Block] = []
        for line in self.lines[root_index + 1 :]:
            body = line.strip()
            if not body:
                continue
            if _ROWCOUNT.fullmatch(body):
                break
            col = _indent(line)
            while blocks and col <= blocks[-1].col:
                blocks.pop()
            if blocks and not body.startswith("->"):
                self._block_line(blocks, col, body)
                continue
            blocks.clear()
            if body.startswith("->"):
                node_body = body[2:].strip()
                while len(stack) > 1 and stack[-1][0] >= col:
                    stack.pop()
                parent_col, parent, header = stack[-1]
                node = self._node(node_body)
                if header is not None:
                    node["Parent Relationship"] = header["relationship"]
                    node["Subplan Name"] = header["name"]
                    header["node"].setdefault("Plans", []).append(node)
                else:
                    parent.setdefault("Plans", []).append(node)
                    parent.setdefault("_children", []).append(node)
                stack.append((col, node, None))
                continue
            if self._top_level(body, col, blocks):
                if body.startswith(("Execution Time:", "Execution time:", "Total runtime:")):
                    break
                continue
            if _HEADER.fullmatch(body):
                while len(stack) > 1 and stack[-1][0] >= col:
                    stack.pop()
                owner = self._owner(stack, col)
                relationship = "SubPlan" if body.startswith("SubPlan") else "InitPlan"
                stack.append((col, owner, {"relationship": relationship, "name": body, "node": owner}))
                continue
            if col <= root_col:
                continue  # outside the tree and not a plan section: a psql prompt, a comment
            owner = self._owner(stack, col)
            worker = _WORKER.fullmatch(body)
            if worker:
                entry = self._worker(owner, int(worker.group(1)))
                self._detail(entry, worker.group(2), owner["Node Type"], blocks, col)
                blocks.append(_Block(col, "worker", entry, owner["Node Type"]))
                continue
            self._detail(owner, body, owner["Node Type"], blocks, col)
        self._finish(root)
        return self.top

    def _owner(self, stack, col: int) -> dict:
        for entry_col, node, header in reversed(stack):
            if header is None and entry_col < col:
                return node
        return stack[0][1]

    def _query_text(self, root_index: int) -> None:
        for i in range(root_index):
            m = re.match(r"(\s*Query Text: ?)(.*)", self.lines[i])
            if m:
                width = len(m.group(1))  # continuation lines are indented to line up with the value
                rest = [self.lines[j].rstrip() for j in range(i + 1, root_index) if self.lines[j].strip()]
                rest = [r[min(width, _indent(r)) :] for r in rest]
                self.top["Query Text"] = "\n".join([m.group(2)] + rest).strip()

    def _node(self, body: str) -> dict:
        m = _STATS.search(body)
        title, stats = (body[: m.start()], body[m.start() :]) if m else (body, "")
        node = _parse_node(title)
        _parse_stats(stats, node)
        return node

    def _worker(self, node: dict, number: int) -> dict:
        workers = node.setdefault("Workers", [])
        for entry in workers:
            if entry.get("Worker Number") == number:
                return entry
        entry = {"Worker Number": number}
        workers.append(entry)
        return entry

    # Sections after the tree: Planning:, JIT:, Settings:, Triggers, times.
    def _top_level(self, body: str, col: int, blocks: list[_Block]) -> bool:
        key, sep, value = body.partition(":")
        value = value.strip()
        if not sep and not body.startswith("Trigger "):
            return False
        if key in ("Planning Time", "Planning time"):
            self.top["Planning Time"] = _num(value.split()[0]) if value else None
        elif key in ("Execution Time", "Execution time", "Total runtime"):
            self.top["Execution Time"] = _num(value.split()[0]) if value else None
        elif key == "Planning" and not value:
            blocks.append(_Block(col, "planning", self.top.setdefault("Planning", {})))
        elif key == "JIT" and not value:
            blocks.append(_Block(col, "jit", self.top.setdefault("JIT", {})))
        elif key == "Settings":
            self.top["Settings"] = {k: v.replace("''", "'") for k, v in _SETTING.findall(value)}
        elif key == "Query Identifier":
            self.top["Query Identifier"] = _value(value)
        elif key == "Serialization":
            entry = self.top.setdefault("Serialization", {})
            for name, field, conv in (
                ("time", "Time", _num),
                ("output", "Output Volume", _kb),
                ("format", "Format", str),
            ):
                m = re.search(rf"{name}=(\S+)", value)
                if m:
                    entry[field] = conv(m.group(1))
            blocks.append(_Block(col, "planning", entry))
        elif body.startswith("Trigger "):
            m = _TRIGGER.fullmatch(body)
            if not m:
                return False
            trigger = {}
            if m.group("name"):
                trigger["Trigger Name"] = m.group("name")
            if m.group("con"):
                trigger["Constraint Name"] = m.group("con")
            if m.group("rel"):
                trigger["Relation"] = m.group("rel")
            trigger["Time"] = float(m.group("time"))
            trigger["Calls"] = int(m.group("calls"))
            self.top.setdefault("Triggers", []).append(trigger)
        else:
            return False
        return True

    def _block_line(self, blocks: list[_Block], col: int, body: str) -> None:
        block = blocks[-1]
        key, _, value = body.partition(":")
        if block.kind == "jit":
            self._jit_line(block.target, key.strip(), value.strip())
        elif key == "JIT" and not value.strip():
            blocks.append(_Block(col, "jit", block.target.setdefault("JIT", {})))
        elif block.kind == "planning" and key == "Memory":
            for name, field in (("used", "Memory Used"), ("allocated", "Memory Allocated")):
                m = re.search(rf"{name}=(\d+)", value)
                if m:
                    block.target[field] = int(m.group(1))
        else:
            self._detail(block.target, body, block.node_type, blocks, col)

    def _jit_line(self, jit: dict, key: str, value: str) -> None:
        if key == "Functions":
            jit["Functions"] = _value(value)
        elif key == "Options":
            jit["Options"] = {}
            for part in split_list(value):
                name, _, flag = part.rpartition(" ")
                jit["Options"][name or flag] = flag == "true"
        elif key == "Timing":
            timing = {}
            for part in split_list(value):
                m = re.fullmatch(r"(\w+) ([\d.]+) ms(?: \(Deform ([\d.]+) ms\))?", part)
                if not m:
                    continue
                if m.group(3) is not None:  # PostgreSQL 17+
                    timing[m.group(1)] = {"Deform": float(m.group(3)), "Total": float(m.group(2))}
                else:
                    timing[m.group(1)] = float(m.group(2))
            jit["Timing"] = timing
        elif key:
            jit[key] = _value(value)

    def _detail(self, target: dict, body: str, node_type: str, blocks: list[_Block], col: int) -> None:
        key, sep, value = body.partition(":")
        key, value = key.strip(), value.strip()
        if not sep or not re.fullmatch(r"[A-Za-z][\w /()-]*", key):
            m = _TARGET_TABLE.fullmatch(body)
            if m:
                schema, obj, alias = _target(m.group(2))
                table = {"Relation Name": obj, **({"Schema": schema} if schema else {}), "Alias": alias or obj}
                target.setdefault("Target Tables", []).append(table)
            elif _ACTUAL.match(body) or body == "never executed":  # a worker's own line
                _parse_stats(body, target)
            else:
                target.setdefault("Extra Text", []).append(body)
            return
        if key == "Buffers":
            self.saw_buffers = True
            for part in value.split(","):
                words = part.split()
                scope = "Shared"
                if words and "=" not in words[0]:
                    scope = words[0].capitalize()
                for k, v in re.findall(r"(\w+)=(\d+)", part):
                    if k in _BUFFER_KIND and scope in ("Shared", "Local", "Temp"):
                        target[f"{scope} {_BUFFER_KIND[k]} Blocks"] = int(v)
        elif key == "I/O Timings":
            for part in value.split(","):
                words = part.split()
                scope = words[0] if words and "=" not in words[0] else ""
                prefix = {
                    "": "I/O",
                    "shared": "Shared I/O",
                    "shared/local": "Shared I/O",
                    "local": "Local I/O",
                    "temp": "Temp I/O",
                }.get(scope, f"{scope.capitalize()} I/O")
                for k, v in re.findall(r"(read|write)=([\d.]+)", part):
                    target[f"{prefix} {k.capitalize()} Time"] = float(v)
        elif key == "WAL":
            for k, v in re.findall(r"(records|fpi|bytes|buffers full)=(\d+)", value):
                target[
                    {
                        "records": "WAL Records",
                        "fpi": "WAL FPI",
                        "bytes": "WAL Bytes",
                        "buffers full": "WAL Buffers Full",
                    }[k]
                ] = int(v)
        elif key == "Heap Blocks":
            found = dict(re.findall(r"(exact|lossy)=(\d+)", value))
            target["Exact Heap Blocks"] = int(found.get("exact", 0))
            target["Lossy Heap Blocks"] = int(found.get("lossy", 0))
        elif key == "Tuples":
            for k, v in re.findall(r"(\w+)=(\d+)", value):
                target[f"Tuples {k.capitalize()}"] = int(v)
        elif key == "Sort Method":
            for k, v in _pairs(body):
                if k == "Sort Method":
                    target["Sort Method"] = v
                elif k in ("Memory", "Disk"):
                    target["Sort Space Used"] = _kb(v)
                    target["Sort Space Type"] = k
        elif key == "Buckets":
            for k, v in _pairs(body):
                m = re.fullmatch(r"(\d+)(?: \(originally (\d+)\))?", v)
                if k in ("Buckets", "Batches") and m:
                    target[f"Hash {k}"] = int(m.group(1))
                    target[f"Original Hash {k}"] = int(m.group(2) or m.group(1))
                elif k == "Memory Usage":
                    target["Peak Memory Usage"] = _kb(v)
        elif key in ("Batches", "Planned Partitions"):
            for k, v in _pairs(body):
                field = {
                    "Batches": "HashAgg Batches",
                    "Memory Usage": "Peak Memory Usage",
                    "Disk Usage": "Disk Usage",
                    "Planned Partitions": "Planned Partitions",
                }.get(k, k)
                target[field] = _kb(v)
        elif key == "Hits":  # Memoize
            for k, v in _pairs(body):
                field = {"Memory Usage": "Peak Memory Usage"}.get(k, f"Cache {k}")
                target[field] = _kb(v)
        elif key == "Estimates":  # Memoize, PostgreSQL 18
            for k, v in re.findall(r"(capacity|distinct keys|lookups|hit percent)=([\d.]+)", value):
                target[
                    {
                        "capacity": "Estimated Capacity",
                        "distinct keys": "Estimated Distinct Lookup Keys",
                        "lookups": "Estimated Lookups",
                        "hit percent": "Estimated Hit Percent",
                    }[k]
                ] = _num(v)
        elif key in ("Full-sort Groups", "Pre-sorted Groups"):
            target[key] = _sort_groups(body)
        elif key == "Storage":
            for k, v in _pairs(body):
                target[k] = _kb(v) if k == "Maximum Storage" else v
        elif key in _LIST_KEYS:
            target[key] = split_list(value)
        elif key in _STRING_KEYS:
            target[key] = value
        elif key == "JIT" and not value:
            blocks.append(_Block(col, "jit", target.setdefault("JIT", {})))
        else:
            target[key] = _value(value)

    def _finish(self, root: dict) -> None:
        for _, node in walk(root):
            children = node.pop("_children", [])
            for i, child in enumerate(children):
                if node["Node Type"] in _MEMBER_PARENTS:
                    child["Parent Relationship"] = "Member"
                elif node["Node Type"] == "Subquery Scan":
                    child["Parent Relationship"] = "Subquery"
                elif node["Node Type"] == "Custom Scan":
                    child["Parent Relationship"] = "children"
                else:
                    child["Parent Relationship"] = "Outer" if i == 0 else "Inner"
            if self.saw_buffers:
                for key in BUFFER_KEYS:
                    node.setdefault(key, 0)
            if "Actual Loops" in node:  # text hides zero counters that JSON prints
                for condition, counter in _COUNTERS:
                    if condition in node and (
                        condition != "Index Cond" or node["Node Type"] in ("Index Scan", "Index Only Scan")
                    ):
                        node.setdefault(counter, 0)
                if node["Node Type"] == "Bitmap Heap Scan":
                    node.setdefault("Exact Heap Blocks", 0)
                    node.setdefault("Lossy Heap Blocks", 0)
            if node.get("Workers"):
                node["Workers"].sort(key=lambda w: w.get("Worker Number", 0))
        for _, node in walk(root):
            ordered = {k: node[k] for k in _KEY_ORDER if k in node}
            ordered.update((k, v) for k, v in node.items() if k not in ordered and k != "Plans")
            if "Plans" in node:
                ordered["Plans"] = node["Plans"]
            node.clear()
            node.update(ordered)
        for section in ("Planning", "Serialization"):
            if self.saw_buffers and any(key in self.top.get(section, {}) for key in BUFFER_KEYS):
                for key in BUFFER_KEYS:
                    self.top[section].setdefault(key, 0)
        if "Execution Time" in self.top:
            self.top.setdefault("Triggers", [])
        triggers = self.top.get("Triggers") or []
        if root.get("Node Type") == "ModifyTable" and root.get("Relation Name"):
            for trigger in triggers:  # text names the relation only when there are several
                trigger.setdefault("Relation", root["Relation Name"])
        order = [
            "Query Text",
            "Plan",
            "Settings",
            "Query Identifier",
            "Planning",
            "Planning Time",
            "Triggers",
            "JIT",
            "Serialization",
            "Execution Time",
        ]
        self.top = {
            **{k: self.top[k] for k in order if k in self.top},
            **{k: v for k, v in self.top.items() if k not in order},
        }


_COUNTERS = (
    ("Filter", "Rows Removed by Filter"),
    ("Join Filter", "Rows Removed by Join Filter"),
    ("Recheck Cond", "Rows Removed by Index Recheck"),
    ("Index Cond", "Rows Removed by Index Recheck"),
)


def _sort_groups(body: str) -> dict:
    """Incremental Sort: "Full-sort Groups: 1  Sort Method: quicksort  Average Memory: 1kB  Peak Memory: 2kB"."""
    group: dict = {}
    for k, v in _pairs(body):
        if k in ("Full-sort Groups", "Pre-sorted Groups"):
            group["Group Count"] = _num(v)
        elif k in ("Sort Method", "Sort Methods"):
            group["Sort Methods Used"] = split_list(v)
        elif k in ("Average Memory", "Peak Memory", "Average Disk", "Peak Disk"):
            kind, space = k.split()
            section = group.setdefault(f"Sort Space {space}", {})
            section[f"{kind} Sort Space Used"] = _kb(v)
    return group


_KEY_ORDER = [
    "Node Type",
    "Strategy",
    "Partial Mode",
    "Operation",
    "Command",
    "Parent Relationship",
    "Subplan Name",
    "Custom Plan Provider",
    "Parallel Aware",
    "Async Capable",
    "Join Type",
    "Scan Direction",
    "Index Name",
    "Relation Name",
    "Function Name",
    "CTE Name",
    "Tuplestore Name",
    "Table Function Name",
    "Schema",
    "Alias",
    "Startup Cost",
    "Total Cost",
    "Plan Rows",
    "Plan Width",
    "Actual Startup Time",
    "Actual Total Time",
    "Actual Rows",
    "Actual Loops",
]


# --- a readable tree (queryaudit plan FILE) -----------------------------------------------


def _fmt_rows(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.2f}"
    return f"{int(value):,}"


def tree_lines(explain: dict) -> list[str]:
    """The plan as indented lines: node, relation, estimated vs actual rows, actual total
    time and, with the plan model (queryaudit.plans.model), exclusive time and q-error."""
    model = plan_model.build(explain)
    # The model cleans a copy of each node, so nodes are matched by their path in the tree.
    exclusive = {n.path: (n.exclusive_ms, n.q_error, model.share(n)) for n in model.nodes}
    lines = []
    for key in ("Planning Time", "Execution Time"):
        if explain.get(key) is not None:
            lines.append(f"{key}: {explain[key]:.3f} ms")
    for trigger in explain.get("Triggers") or []:
        lines.append(
            f"Trigger {trigger.get('Trigger Name') or trigger.get('Constraint Name', '?')}: "
            f"{trigger.get('Time', 0):.3f} ms, {trigger.get('Calls')} calls"
        )
    timing = (explain.get("JIT") or {}).get("Timing") or {}
    if isinstance(timing.get("Total"), (int, float)):
        lines.append(f"JIT: {timing['Total']:.3f} ms")
    for path, (depth, node) in zip(_paths(explain), walk(explain), strict=True):
        label = node_label(node)
        if node.get("Subplan Name"):
            label = f"[{node['Subplan Name']}] {label}"
        parts = [f"est {_fmt_rows(node.get('Plan Rows'))}"]
        if node.get("Actual Loops") == 0:
            parts.append("never executed")
        elif "Actual Rows" in node:
            loops = node.get("Actual Loops", 1)
            parts.append(f"act {_fmt_rows(node['Actual Rows'])}" + (f" x{loops}" if loops != 1 else ""))
            if node.get("Actual Total Time") is not None:
                parts.append(f"{node['Actual Total Time']:.3f} ms")
        excl, q_error, share = exclusive.get(path, (None, None, None))
        if excl is not None:
            parts.append(f"excl {excl:.3f} ms ({share:.0%})")
        if q_error is not None and q_error >= 10:
            parts.append(f"q-error {q_error:.0f}")
        lines.append(f"{'  ' * depth}{'-> ' if depth else ''}{label}  [{', '.join(parts)}]")
        lines += [f"{'  ' * depth}{'   ' if depth else ''}   {detail}" for detail in detail_lines(node)]
    return lines


_BUFFER_KINDS = (
    ("shared", ("Hit", "Read", "Dirtied", "Written")),
    ("local", ("Hit", "Read", "Dirtied", "Written")),
    ("temp", ("Read", "Written")),
)
_COUNT_KEYS = (
    "Rows Removed by Filter",
    "Rows Removed by Join Filter",
    "Rows Removed by Index Recheck",
    "Heap Fetches",
    "Exact Heap Blocks",
    "Lossy Heap Blocks",
    "Workers Planned",
    "Workers Launched",
)


def _kb_text(value) -> str:
    return f"{_fmt_rows(value)}kB"


def detail_lines(node: dict) -> list[str]:
    """What the plan checks read from a node, as psql prints it: where a sort or hash spilled,
    the buffers it touched, the rows it threw away, the workers it got."""
    out = []
    for who in [node, *(node.get("Workers") or [])]:
        if who.get("Sort Method"):
            prefix = f"Worker {who['Worker Number']}: " if who is not node and "Worker Number" in who else ""
            space = (
                f"  {who.get('Sort Space Type', 'Memory')}: {_kb_text(who['Sort Space Used'])}"
                if who.get("Sort Space Used") is not None
                else ""
            )
            out.append(f"{prefix}Sort Method: {who['Sort Method']}{space}")
    if node.get("Hash Buckets") is not None:
        buckets, batches = node["Hash Buckets"], node.get("Hash Batches")
        orig_buckets = node.get("Original Hash Buckets", buckets)
        orig_batches = node.get("Original Hash Batches", batches)
        out.append(
            f"Buckets: {_fmt_rows(buckets)}"
            + (f" (originally {_fmt_rows(orig_buckets)})" if orig_buckets != buckets else "")
            + f"  Batches: {_fmt_rows(batches)}"
            + (f" (originally {_fmt_rows(orig_batches)})" if orig_batches != batches else "")
            + (
                f"  Memory Usage: {_kb_text(node['Peak Memory Usage'])}"
                if node.get("Peak Memory Usage") is not None
                else ""
            )
        )
    elif node.get("HashAgg Batches") is not None:
        out.append(
            f"Batches: {_fmt_rows(node['HashAgg Batches'])}"
            + (
                f"  Memory Usage: {_kb_text(node['Peak Memory Usage'])}"
                if node.get("Peak Memory Usage") is not None
                else ""
            )
            + (f"  Disk Usage: {_kb_text(node['Disk Usage'])}" if node.get("Disk Usage") else "")
        )
    buffers = []
    for kind, counters in _BUFFER_KINDS:
        counts = [
            f"{c.lower()}={node[f'{kind.title()} {c} Blocks']:,}"
            for c in counters
            if node.get(f"{kind.title()} {c} Blocks")
        ]
        if counts:
            buffers.append(f"{kind} {' '.join(counts)}")
    if buffers:
        out.append("Buffers: " + ", ".join(buffers))
    out += [f"{key}: {_fmt_rows(node[key])}" for key in _COUNT_KEYS if node.get(key)]
    return out
