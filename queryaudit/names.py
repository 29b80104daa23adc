"""Which table and column each name in a statement means: the one resolver of queryaudit.

A name in SQL means what PostgreSQL makes of it: unquoted names fold to lower case
(`Post` is post), quoted ones keep their case (`"Post"`), an unqualified table is the
first one of that name on the search_path, a CTE or a subquery alias hides a table of
the same name, and a bare column belongs to the one source in scope that has it
(inner scopes first, so a correlated subquery sees the outer query's tables).

sqlglot's optimizer does the scoping (`qualify` against a schema built from the
snapshot's catalog: tables, views and their columns); this module adds the search_path,
traces columns of subqueries, CTEs and views back to the base table, and maps every
name back to its place in the text (the character offset pglast reports as
`location`), so the pglast-based code (parameters, index candidates) can ask "which
column is this ColumnRef?", "which table is this RangeVar?", "which tables does this `*`
read?", and tell "not a table's column" (an answer) from "no answer at that offset".

Pure: no database. One Catalog per snapshot, one Resolution per text (cached).
Text sqlglot cannot read comes back as a Resolution with `unresolved` set to the
reason: its tables still come from pglast's parse, its columns stay unresolved.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import sqlglot
from pglast import ast
from pglast.parser import scan
from sqlglot import exp
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, traverse_scope
from sqlglot.schema import MappingSchema

from queryaudit.snapshot import Snapshot, Table
from queryaudit.sql import find_nodes, parse, statement_kind

DEFAULT_SEARCH_PATH = ("public",)
CACHE_SIZE = 4096  # resolutions kept per catalog (one per statement text)
VIEW_DEPTH = 4  # views on views on views: deeper ones are not traced
_DML = (exp.Update, exp.Delete, exp.Insert)
# sqlglot warns on stderr for every statement it reads as an opaque command; the
# Resolution says so instead.
logging.getLogger("sqlglot").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Relation:
    """A table, materialized view or view of the catalog, with its column names."""

    schema: str
    name: str
    columns: tuple[str, ...]
    kind: str = "r"  # r table, p partitioned, m materialized view, v view
    definition: str | None = None  # a view's SELECT

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class ColumnName:
    """One column reference of the text: as written (folded) and what it means."""

    at: int | None  # character offset of the reference in the text (pglast's `location`)
    qualifier: str | None  # the table alias or name written before it, folded
    name: str  # the column name as written, folded
    table: str | None = None  # schema-qualified base table (or view) it belongs to
    column: str | None = None  # the column of that table (differs from name through an alias)


@dataclass
class Resolution:
    """What every name of one statement means."""

    # Offset of every table reference -> qualified name (None: a CTE, or a relation the catalog lacks).
    relations: dict[int, str | None] = field(default_factory=dict)
    stars: dict[int, list[str]] = field(default_factory=dict)  # offset of `*` or `t.*` in a select list -> its tables
    # Offset of the table joined by JOIN ... USING -> the ((table, column), (table, column)) pairs it equates.
    using: dict[int, list[tuple[tuple[str, str] | None, tuple[str, str] | None]]] = field(default_factory=dict)
    tables: list[str] = field(default_factory=list)  # catalog relations named, in text order (views as views)
    base_tables: list[str] = field(default_factory=list)  # the same with views replaced by what they read
    aliases: dict[str, str | None] = field(default_factory=dict)  # alias or name -> table (None: ambiguous)
    columns: list[ColumnName] = field(default_factory=list)
    outputs: list[tuple[str, tuple[str, str] | None]] = field(default_factory=list)  # top select list
    unresolved: str | None = None  # why the columns could not be resolved

    def reference_at(self, at: int) -> ColumnName | None:
        """The column reference starting at character `at`; None when this resolution has
        no answer there (the text did not resolve, or sqlglot read it differently)."""
        return next((c for c in self.columns if c.at == at), None)

    def column_at(self, at: int) -> tuple[str, str] | None:
        """(table, column) of the column reference starting at character `at`."""
        c = self.reference_at(at)
        return (c.table, c.column) if c and c.table and c.column else None

    def written(self, qualifier: str | None, name: str) -> tuple[str, str] | None:
        """(table, column) of a reference written `qualifier.name` (or bare `name`), when
        every such reference in the statement means the same column."""
        found = {(c.table, c.column) for c in self.columns if c.qualifier == qualifier and c.name == name}
        if len(found) == 1:
            table, column = found.pop()
            return (table, column) if table and column else None
        return None


class Catalog:
    """The snapshot's relations as sqlglot's schema, with PostgreSQL's table lookup."""

    def __init__(self, relations: list[Relation], search_path: tuple[str, ...] = DEFAULT_SEARCH_PATH):
        self.search_path = tuple(search_path) or DEFAULT_SEARCH_PATH
        self.by_key = {(r.schema, r.name): r for r in relations}
        self.by_name: dict[str, list[Relation]] = {}
        for r in relations:
            self.by_name.setdefault(r.name, []).append(r)
        mapping: dict = {}
        for r in relations:
            # Types do not matter for names; "text" keeps sqlglot from parsing odd type names.
            mapping.setdefault(r.schema, {})[r.name] = {c: "text" for c in r.columns}
        self.schema = MappingSchema(mapping, dialect="postgres", normalize=False)
        self._cache: dict[str, Resolution] = {}

    def find(self, schema: str | None, name: str) -> Relation | None:
        """The relation `schema.name` means: exact when qualified, else the first schema of
        the search_path that has it, else the only relation of that name (texts from
        pg_stat_statements come from roles whose search_path we do not know)."""
        if schema:
            return self.by_key.get((schema, name))
        for s in self.search_path:
            if (s, name) in self.by_key:
                return self.by_key[(s, name)]
        same = self.by_name.get(name, [])
        return same[0] if len(same) == 1 else None

    def table(self, qualified: str) -> Relation | None:
        schema, _, name = qualified.partition(".")
        return self.by_key.get((schema, name))

    def resolve(self, query: str) -> Resolution:
        cached = self._cache.get(query)
        if cached is None:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            cached = self._cache[query] = _Resolver(self, query).run()
        return cached

    def base_tables(self, qualified: str, depth: int = 0) -> list[str]:
        """A view's underlying tables (through views on views); a table itself."""
        r = self.table(qualified)
        if r is None or r.kind != "v" or not r.definition or depth >= VIEW_DEPTH:
            return [qualified] if r is not None and r.kind != "v" else []
        out: list[str] = []
        for t in self.resolve(r.definition).tables:
            for b in self.base_tables(t, depth + 1):
                if b not in out:
                    out.append(b)
        return out

    def view_column(self, qualified: str, column: str, depth: int = 0) -> tuple[str, str] | None:
        """The base table column a view's output column reads, when it is a plain column."""
        r = self.table(qualified)
        if r is None or r.kind != "v":
            return (qualified, column) if r is not None else None
        if not r.definition or depth >= VIEW_DEPTH:
            return None
        source = dict(self.resolve(r.definition).outputs).get(column)
        return self.view_column(source[0], source[1], depth + 1) if source else None


def relations_of(tables: list[Table], views: list | None = None) -> list[Relation]:
    out = [Relation(t.schema, t.name, tuple(c.name for c in t.columns), t.kind) for t in tables]
    out += [Relation(v.schema, v.name, tuple(c.name for c in v.columns), "v", v.definition) for v in views or ()]
    return out


def search_path_of(snapshot: Snapshot) -> tuple[str, ...]:
    """The database's search_path from the snapshot's settings; "$user" is the audit role."""
    raw = snapshot.server.settings.get("search_path")
    if not raw:
        return DEFAULT_SEARCH_PATH
    out = []
    for part in raw.split(","):
        part = part.strip()
        name = part[1:-1].replace('""', '"') if part.startswith('"') and part.endswith('"') else part.lower()
        if name == "$user":
            name = snapshot.server.user or ""
        if name:
            out.append(name)
    return tuple(out) or DEFAULT_SEARCH_PATH


def catalog_for(snapshot: Snapshot) -> Catalog:
    """The snapshot's catalog, built once per snapshot (checks and stages share it)."""
    views = getattr(snapshot, "views", None) or []
    key = (len(snapshot.tables), len(views), search_path_of(snapshot))
    cached = snapshot.__dict__.get("_names_catalog")
    if cached is None or cached[0] != key:
        cached = (key, Catalog(relations_of(snapshot.tables, views), key[2]))
        snapshot.__dict__["_names_catalog"] = cached
    return cached[1]


_BY_TABLES: dict[tuple, tuple[list, Catalog]] = {}


def catalog_of(tables: list[Table], search_path: tuple[str, ...] = DEFAULT_SEARCH_PATH) -> Catalog:
    """A catalog for a bare list of tables (callers that have no snapshot), kept while
    that list lives unchanged."""
    key = (id(tables), len(tables), tuple(search_path))
    hit = _BY_TABLES.get(key)
    if hit is not None and hit[0] is tables:
        return hit[1]
    if len(_BY_TABLES) >= 16:
        _BY_TABLES.clear()
    catalog = Catalog(relations_of(tables), tuple(search_path))
    _BY_TABLES[key] = (tables, catalog)  # the list is held so its id is not reused
    return catalog


def resolve(query: str, snapshot: Snapshot) -> Resolution:
    return catalog_for(snapshot).resolve(query)


def column_name(text: str) -> str | None:
    """The column a plain reference names (`p."createdAt"` -> createdAt, `Total` -> total),
    None when the text is anything else (an expression, DESC, NULLS FIRST)."""

    stmts = parse(f"SELECT {text}")
    if not stmts or len(stmts) != 1:
        return None
    targets = getattr(stmts[0].stmt, "targetList", None) or ()
    ref = targets[0].val if len(targets) == 1 and not targets[0].name else None  # `x DESC` reads as an alias
    if isinstance(ref, ast.ColumnRef) and isinstance(ref.fields[-1], ast.String):
        return ref.fields[-1].sval
    return None


# -- the work ---------------------------------------------------------------------------


def _start(node: exp.Expression) -> int | None:
    starts = [i.meta["start"] for i in node.find_all(exp.Identifier) if "start" in i.meta]
    return min(starts) if starts else None


def _parse(query: str) -> tuple[exp.Expression | None, str | None]:
    """The statement as sqlglot reads PostgreSQL; placeholders sqlglot rejects where
    PostgreSQL has a typed literal (`date $1`, `interval $1 day`) are read as string
    literals of the same length, so every offset still points into the original text."""

    if statement_kind(query) == "other":  # pglast knows: CREATE, VACUUM, SET, multi-statement text...
        return None, "not a single SELECT, INSERT, UPDATE, DELETE or MERGE (no columns to resolve)"
    try:
        trees = sqlglot.parse(query, read="postgres")
    except sqlglot.errors.SqlglotError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        masked = _mask_parameters(query)
        if masked == query:
            return None, f"sqlglot cannot parse the text ({first})"
        try:
            trees = sqlglot.parse(masked, read="postgres")
        except sqlglot.errors.SqlglotError:
            return None, f"sqlglot cannot parse the text ({first})"
    trees = [t for t in trees if t is not None]
    if len(trees) != 1:
        return None, "not a single statement"
    if isinstance(trees[0], exp.Command):
        return None, "a utility statement (no columns to resolve)"
    return trees[0], None


def _mask_parameters(query: str) -> str:
    try:
        tokens = scan(query)
    except Exception:
        return query
    out = list(query)
    for t in tokens:
        if t.name == "PARAM":
            width = t.end - t.start + 1
            out[t.start : t.end + 1] = list("'" + "0" * (width - 2) + "'")
    return "".join(out)


class _Resolver:
    def __init__(self, catalog: Catalog, query: str):
        self.catalog = catalog
        self.query = query
        self.result = Resolution()
        self.tables: dict[int, Relation] = {}  # id(exp.Table) -> relation
        self.ctes: set[str] = set()
        self.using_sides: dict[int, set[str]] = {}  # id(exp.Select) -> sides of its JOIN ... USING
        self.spots: list[tuple] = []  # (column as written, its parent, arg_key, index): to find what replaced it
        self.joins: list[tuple[exp.Join, exp.Select]] = []  # JOIN ... USING, which qualify turns into ON

    def run(self) -> Resolution:
        tree, problem = _parse(self.query)
        if tree is None:
            self.result.unresolved = problem
            self._tables_from_pglast()
            return self.result
        for select in tree.find_all(exp.Select):
            # FOR UPDATE OF o names an alias, not a table: qualify would read a second table o.
            select.set("locks", None)
            self.using_sides[id(select)] = {j.side for j in select.args.get("joins") or () if j.args.get("using")}
            self.joins += [(j, select) for j in select.args.get("joins") or () if j.args.get("using")]
        for node in tree.find_all(exp.Column, exp.Table):
            node.meta["at"] = _start(node)
        normalize_identifiers(tree, dialect="postgres")
        for node in tree.find_all(exp.Column):  # as PostgreSQL folds them
            node.meta["written"] = (node.table or None, node.name)
            self.spots.append((node, node.parent, node.arg_key, node.index))
        stars = [  # (offset, qualifier, select): `*` and `t.*` (also inside row_to_json(t.*)), not count(*)
            (s.meta.get("start"), None, s.parent)
            if isinstance(s.parent, exp.Select)
            else (s.parent.meta.get("at"), s.parent.table, s.parent.find_ancestor(exp.Select))
            for s in tree.find_all(exp.Star)
            if isinstance(s.parent, exp.Select | exp.Column)
        ]
        self._place_tables(tree)
        try:
            qualify(
                tree,
                schema=self.catalog.schema,
                dialect="postgres",
                validate_qualify_columns=False,
                quote_identifiers=False,
                identify=False,
            )
        except (sqlglot.errors.SqlglotError, KeyError, ValueError, TypeError, AttributeError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.result.unresolved = f"sqlglot cannot qualify the text ({reason})"
            return self.result
        self._columns(tree, stars)
        return self.result

    # tables ---------------------------------------------------------------------------
    def _place_tables(self, tree: exp.Expression) -> None:
        """Each table reference to its catalog relation, on the search_path; a CTE name hides tables."""
        self.ctes = {cte.alias_or_name for cte in tree.find_all(exp.CTE)}
        seen_aliases: dict[str, set[str]] = {}
        for t in tree.find_all(exp.Table):
            if t.name and not t.alias:
                # qualify would alias "Post" as post, and "Post".title would then name nothing.
                t.set("alias", exp.TableAlias(this=exp.to_identifier(t.name, quoted=True)))
            relation = (
                None if not t.name or (not t.db and t.name in self.ctes) else self.catalog.find(t.db or None, t.name)
            )
            if relation is None:
                if t.meta.get("at") is not None:
                    self.result.relations.setdefault(t.meta["at"], None)
                continue
            if not t.db:
                t.set("db", exp.to_identifier(relation.schema, quoted=True))
            self.tables[id(t)] = relation
            q = relation.qualified_name
            if t.meta.get("at") is not None:
                self.result.relations[t.meta["at"]] = q
            if q not in self.result.tables:
                self.result.tables.append(q)
            seen_aliases.setdefault(t.alias_or_name, set()).add(q)
        target = (
            tree.this.this
            if isinstance(tree, _DML) and isinstance(tree.this, exp.Schema)
            else (tree.this if isinstance(tree, _DML) else None)
        )
        if isinstance(target, exp.Table) and id(target) in self.tables:  # the written table first
            first = self.tables[id(target)].qualified_name
            self.result.tables.remove(first)
            self.result.tables.insert(0, first)
        for alias, qs in seen_aliases.items():
            self.result.aliases[alias] = next(iter(qs)) if len(qs) == 1 else None
        for q in self.result.tables:
            for b in self.catalog.base_tables(q):
                if b not in self.result.base_tables:
                    self.result.base_tables.append(b)

    def _tables_from_pglast(self) -> None:

        stmts = parse(self.query)
        if not stmts:
            return
        ctes = {c.ctename for s in stmts for c in find_nodes(s.stmt, ast.CommonTableExpr)}
        for s in stmts:
            for rv in find_nodes(s.stmt, ast.RangeVar):
                cte = not rv.schemaname and rv.relname in ctes
                relation = None if cte else self.catalog.find(rv.schemaname, rv.relname)
                if relation is None:
                    self.result.relations.setdefault(rv.location, None)
                    continue
                q = relation.qualified_name
                self.result.relations[rv.location] = q
                if q not in self.result.tables:
                    self.result.tables.append(q)
                alias = rv.alias.aliasname if rv.alias else rv.relname
                self.result.aliases[alias] = q if self.result.aliases.get(alias, q) == q else None
        for q in self.result.tables:
            for b in self.catalog.base_tables(q):
                if b not in self.result.base_tables:
                    self.result.base_tables.append(b)

    # columns --------------------------------------------------------------------------
    def _columns(self, tree: exp.Expression, stars: list[tuple]) -> None:
        placed: set[int] = set()
        try:
            scopes = traverse_scope(tree)
        except (sqlglot.errors.SqlglotError, KeyError, ValueError, TypeError, AttributeError):
            scopes = []
        for scope in scopes:
            if not isinstance(scope.expression, (exp.Select, exp.SetOperation)):
                continue
            for col in scope.columns:
                if id(col) in placed:  # a correlated name is listed by the inner scope too
                    continue
                placed.add(id(col))
                self._record(col, self._in_scope(scope, col.table, col.name))
        if isinstance(tree, _DML):
            for col in tree.find_all(exp.Column):
                if id(col) not in placed:
                    self._record(col, self._in_dml(tree, col))
        by_select = {id(s.expression): s for s in scopes}
        self._merged(by_select)
        self._using(by_select)
        for at, qualifier, select in stars:  # what `*` and `t.*` read, before qualify expanded them
            scope = by_select.get(id(select))
            if at is None or scope is None:
                continue
            sources = [scope.sources.get(qualifier)] if qualifier else list(scope.sources.values())
            self.result.stars[at] = [self.tables[id(t)].qualified_name for t in sources if id(t) in self.tables]
        if scopes:
            self.result.outputs = self._outputs(scopes[-1])

    def _merged(self, by_select: dict[int, Scope]) -> None:
        """A bare name of a JOIN ... USING column, which qualify replaced by COALESCE(a.x, b.x):
        PostgreSQL reads the left table's column for an inner or left join, COALESCE otherwise."""
        for col, parent, key, index in self.spots:
            if col.parent is not None or parent is None or col.is_star:
                continue
            now = parent.args.get(key)
            now = now[index] if isinstance(now, list) and index is not None and index < len(now) else now
            now = now.this if isinstance(now, exp.Alias) else now
            select = parent if isinstance(parent, exp.Select) else parent.find_ancestor(exp.Select)
            scope = by_select.get(id(select))
            if not isinstance(now, exp.Coalesce) or scope is None or not isinstance(now.this, exp.Column):
                continue
            left = self.using_sides.get(id(select), set()) <= {"", "LEFT"}
            self._record(col, self._in_scope(scope, now.this.table, now.this.name) if left else None)

    def _using(self, by_select: dict[int, Scope]) -> None:
        """The column pairs each JOIN ... USING equates, which qualify wrote as ON a.x = b.x
        (COALESCE(a.x, b.x) = c.x after an earlier USING join: the merged column, as above)."""
        for join, select in self.joins:
            scope, at, on = by_select.get(id(select)), join.this.meta.get("at"), join.args.get("on")
            if scope is None or at is None or not isinstance(on, exp.Expression):
                continue
            left = self.using_sides.get(id(select), set()) <= {"", "LEFT"}
            pairs = []
            for eq in on.flatten() if isinstance(on, exp.And) else [on]:
                if isinstance(eq, exp.EQ):
                    lhs = (eq.this.this if left else None) if isinstance(eq.this, exp.Coalesce) else eq.this
                    pairs.append(
                        tuple(
                            self._in_scope(scope, c.table, c.name) if isinstance(c, exp.Column) else None
                            for c in (lhs, eq.expression)
                        )
                    )
            self.result.using[at] = pairs

    def _record(self, col: exp.Column, meaning: tuple[str, str] | None) -> None:
        written = col.meta.get("written")
        if written is None:  # made by qualify (SELECT * expanded, USING): not in the text
            return
        self.result.columns.append(
            ColumnName(
                at=col.meta.get("at"),
                qualifier=written[0],
                name=written[1],
                table=meaning[0] if meaning else None,
                column=meaning[1] if meaning else None,
            )
        )

    def _in_scope(self, scope: Scope | None, alias: str, name: str, depth: int = 0) -> tuple[str, str] | None:
        """The base column `alias.name` means in `scope` (outer scopes for correlated names)."""
        while scope is not None and depth < 16:
            if alias:
                source = scope.sources.get(alias)
                if source is not None:
                    return self._in_source(source, name, depth)
            else:
                owners = [s for s in scope.sources.values() if self._has_column(s, name)]
                if len(owners) == 1:
                    return self._in_source(owners[0], name, depth)
                if owners or any(self._unknown(s) for s in scope.sources.values()):
                    return None  # ambiguous, or a source whose columns we do not know may have it
            scope = scope.parent
        return None

    def _in_source(self, source, name: str, depth: int) -> tuple[str, str] | None:
        if isinstance(source, exp.Table):
            relation = self.tables.get(id(source))
            if relation is None or name not in relation.columns:
                return None
            if relation.kind == "v":
                return self.catalog.view_column(relation.qualified_name, name) or (relation.qualified_name, name)
            return relation.qualified_name, name
        if isinstance(source, Scope):
            inner = source.set_operation_scopes[0] if source.set_operation_scopes else source
            select = inner.expression
            for projection in getattr(select, "selects", ()):
                if projection.alias_or_name == name:
                    target = projection.this if isinstance(projection, exp.Alias) else projection
                    if isinstance(target, exp.Column):
                        return self._in_scope(inner, target.table, target.name, depth + 1)
                    return None
        return None

    def _has_column(self, source, name: str) -> bool:
        if isinstance(source, exp.Table):
            relation = self.tables.get(id(source))
            return relation is not None and name in relation.columns
        if isinstance(source, Scope):
            inner = source.set_operation_scopes[0] if source.set_operation_scopes else source
            return any(p.alias_or_name == name for p in getattr(inner.expression, "selects", ()))
        return False

    def _unknown(self, source) -> bool:
        if isinstance(source, exp.Table):
            return id(source) not in self.tables
        if isinstance(source, Scope):
            inner = source.set_operation_scopes[0] if source.set_operation_scopes else source
            return any(
                isinstance(p, exp.Star) or (isinstance(p, exp.Column) and p.is_star)
                for p in getattr(inner.expression, "selects", ())
            )
        return True

    def _in_dml(self, stmt: exp.Expression, col: exp.Column) -> tuple[str, str] | None:
        """A column of an UPDATE, DELETE or INSERT itself (SET, WHERE, RETURNING, ON CONFLICT):
        its sources are the target, FROM / USING tables, and `excluded` for the upsert."""
        target = stmt.this.this if isinstance(stmt.this, exp.Schema) else stmt.this
        sources: dict[str, exp.Table] = {}
        if isinstance(target, exp.Table):
            sources[target.alias_or_name] = target
            if isinstance(stmt, exp.Insert):
                sources["excluded"] = target
        for key in ("from", "using"):
            for t in (
                stmt.args.get(key).find_all(exp.Table)
                if isinstance(stmt.args.get(key), exp.Expression)
                else [x for item in stmt.args.get(key) or () for x in item.find_all(exp.Table)]
            ):
                sources[t.alias_or_name] = t
        for join in stmt.args.get("joins") or ():
            for t in join.find_all(exp.Table):
                sources[t.alias_or_name] = t
        if col.table:
            source = sources.get(col.table)
            return self._in_source(source, col.name, 0) if source is not None else None
        owners = [s for s in sources.values() if self._has_column(s, col.name)]
        owners = list({id(s): s for s in owners}.values())
        if len(owners) == 1 and not any(self._unknown(s) for s in sources.values()):
            return self._in_source(owners[0], col.name, 0)
        return None

    def _outputs(self, top: Scope) -> list[tuple[str, tuple[str, str] | None]]:
        inner = top.set_operation_scopes[0] if top.set_operation_scopes else top
        out = []
        for projection in getattr(inner.expression, "selects", ()):
            target = projection.this if isinstance(projection, exp.Alias) else projection
            meaning = self._in_scope(inner, target.table, target.name) if isinstance(target, exp.Column) else None
            out.append((projection.alias_or_name, meaning))
        return out
