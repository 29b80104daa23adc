"""Small AST helpers shared by the rules (pglast nodes)."""

from __future__ import annotations

import copy

from pglast import ast
from pglast.enums import AlterTableType, ConstrType, ObjectType
from pglast.stream import RawStream

from queryaudit.migrations import Settings, Violation
from queryaudit.migrations.locks import blocks
from queryaudit.migrations.source import END_KINDS, MigrationFile, Statement, is_transaction


def loc(node) -> int | None:
    value = getattr(node, "location", None)
    return value if isinstance(value, int) and value >= 0 else None


def relname(rv: ast.RangeVar | None) -> str | None:
    if rv is None:
        return None
    return f"{rv.schemaname}.{rv.relname}" if rv.schemaname else rv.relname


def names(seq) -> list[str]:
    return [n.sval for n in (seq or ()) if isinstance(n, ast.String)]


def type_names(tn: ast.TypeName | None) -> list[str]:
    return [n.lower() for n in names(tn.names)] if tn is not None else []


def base_type(tn: ast.TypeName | None) -> str | None:
    """The type's own name, lower case, schema dropped: int -> int4, serial -> serial."""
    parts = type_names(tn)
    return parts[-1] if parts else None


def typmods(tn: ast.TypeName) -> list[int]:
    out = []
    for m in tn.typmods or ():
        val = getattr(m, "val", None)
        if isinstance(val, ast.Integer):
            out.append(val.ival)
    return out


def deparse(node) -> str:
    try:
        return RawStream()(node)
    except Exception:
        return ""


def with_changes(node, **changes) -> str:
    """The statement's SQL with some attributes changed (the safe variant)."""
    clone = copy.deepcopy(node)
    for key, value in changes.items():
        setattr(clone, key, value)
    return deparse(clone)


def violation(stmt: Statement, message: str, node=None, lock: str | None = None, **kw) -> Violation:
    return Violation(
        stmt=stmt, message=message, offset=loc(node) if node is not None else None, lock=lock, blocks=blocks(lock), **kw
    )


def alter_table_cmds(mig: MigrationFile, objtypes=(ObjectType.OBJECT_TABLE,)):
    """(statement, ALTER TABLE node, command) for every ALTER TABLE command on a table (or on
    the other relation kinds ALTER TABLE's grammar serves: views, foreign tables, types)."""
    for stmt in mig.statements:
        node = stmt.node
        if isinstance(node, ast.AlterTableStmt) and node.objtype in objtypes:
            for cmd in node.cmds or ():
                if isinstance(cmd, ast.AlterTableCmd):
                    yield stmt, node, cmd


def constraints_of(coldef: ast.ColumnDef):
    return [c for c in (coldef.constraints or ()) if isinstance(c, ast.Constraint)]


def has_constraint(coldef: ast.ColumnDef, *types: ConstrType) -> ast.Constraint | None:
    return next((c for c in constraints_of(coldef) if c.contype in types), None)


class CreatedTables:
    """Tables created earlier in this migration: nobody else uses them yet, so locking them
    costs nothing. Most are empty too; `filled` remembers the ones that are not (CREATE TABLE
    AS, or INSERT ... SELECT into them), where a validating scan still takes time."""

    def __init__(self, mig: MigrationFile):
        self.created: dict[str, int] = {}
        self.filled: dict[str, Statement] = {}
        for stmt in mig.statements:
            node = stmt.node
            if isinstance(node, ast.CreateStmt):
                self.created.setdefault(node.relation.relname, stmt.index)
            elif isinstance(node, ast.CreateTableAsStmt) and node.into is not None:
                name = node.into.rel.relname
                self.created.setdefault(name, stmt.index)
                if not node.into.skipData:
                    self.filled.setdefault(name, stmt)
            elif isinstance(node, ast.InsertStmt) and _selects_rows(node.selectStmt):
                self.filled.setdefault(node.relation.relname, stmt)

    def before(self, stmt: Statement, rv: ast.RangeVar | None) -> bool:
        if rv is None:
            return False
        idx = self.created.get(rv.relname)
        return idx is not None and idx < stmt.index

    def filled_before(self, stmt: Statement, rv: ast.RangeVar | None) -> Statement | None:
        """The statement that put rows into this new table before `stmt`, if any."""
        if not self.before(stmt, rv):
            return None
        filler = self.filled.get(rv.relname)
        return filler if filler is not None and filler.index < stmt.index else None


def _selects_rows(select) -> bool:
    """INSERT ... SELECT (from tables, any number of rows), as opposed to a VALUES list."""
    return isinstance(select, ast.SelectStmt) and not select.valuesLists


def column_definitions(mig: MigrationFile):
    """(statement, ColumnDef, kind) for CREATE TABLE columns ('create'), ALTER TABLE ADD COLUMN
    ('add') and ALTER COLUMN ... TYPE ('type')."""
    for stmt in mig.statements:
        node = stmt.node
        if isinstance(node, ast.CreateStmt):
            for elt in node.tableElts or ():
                if isinstance(elt, ast.ColumnDef):
                    yield stmt, elt, "create"
        elif isinstance(node, ast.AlterTableStmt) and node.objtype == ObjectType.OBJECT_TABLE:
            for cmd in node.cmds or ():
                if not isinstance(cmd, ast.AlterTableCmd) or not isinstance(cmd.def_, ast.ColumnDef):
                    continue
                if cmd.subtype == AlterTableType.AT_AddColumn:
                    yield stmt, cmd.def_, "add"
                elif cmd.subtype == AlterTableType.AT_AlterColumnType:
                    yield stmt, cmd.def_, "type"


def version_at_least(settings: Settings, major: int, minor: int = 0) -> bool:
    return settings.pg_version >= (major, minor)


def last_name(obj) -> str | None:
    """The object's own name (schema dropped), from the shapes DROP / RENAME / ALTER use."""
    if isinstance(obj, ast.RangeVar):
        return obj.relname
    if isinstance(obj, ast.ObjectWithArgs):
        obj = obj.objname
    if isinstance(obj, ast.TypeName):
        obj = obj.names
    if isinstance(obj, ast.String):
        return obj.sval
    if isinstance(obj, (tuple, list)):
        parts = names(obj)
        return parts[-1] if parts else None
    return None


TABLE, VIEW, FUNCTION, TYPE, SEQUENCE, SCHEMA, INDEX, CONSTRAINT, TRIGGER, POLICY, EXTENSION = (
    "table",
    "view",
    "function",
    "type",
    "sequence",
    "schema",
    "index",
    "constraint",
    "trigger",
    "policy",
    "extension",
)
# DROP / RENAME object types -> the kind of object the file may have created.
KIND = {
    ObjectType.OBJECT_TABLE: TABLE,
    ObjectType.OBJECT_FOREIGN_TABLE: TABLE,
    ObjectType.OBJECT_VIEW: VIEW,
    ObjectType.OBJECT_MATVIEW: VIEW,
    ObjectType.OBJECT_FUNCTION: FUNCTION,
    ObjectType.OBJECT_PROCEDURE: FUNCTION,
    ObjectType.OBJECT_ROUTINE: FUNCTION,
    ObjectType.OBJECT_AGGREGATE: FUNCTION,
    ObjectType.OBJECT_TYPE: TYPE,
    ObjectType.OBJECT_DOMAIN: TYPE,
    ObjectType.OBJECT_SEQUENCE: SEQUENCE,
    ObjectType.OBJECT_SCHEMA: SCHEMA,
    ObjectType.OBJECT_INDEX: INDEX,
    ObjectType.OBJECT_TABCONSTRAINT: CONSTRAINT,
    ObjectType.OBJECT_TRIGGER: TRIGGER,
    ObjectType.OBJECT_POLICY: POLICY,
    ObjectType.OBJECT_EXTENSION: EXTENSION,
    ObjectType.OBJECT_OPERATOR: "operator",
    ObjectType.OBJECT_CAST: "cast",
    ObjectType.OBJECT_OPCLASS: "opclass",
    ObjectType.OBJECT_OPFAMILY: "opfamily",
    ObjectType.OBJECT_RULE: "rule",
    ObjectType.OBJECT_PUBLICATION: "publication",
}


class NewObjects:
    """Every object this migration creates (unconditionally), by kind and name, with the statement that created it.
    Dropping, renaming or changing an object created earlier in the same file breaks no running
    client: none knows it yet. (squawk 2.70 does this only for its compatibility rules.)"""

    def __init__(self, mig: MigrationFile):
        self.created: dict[tuple[str, str], list[Statement]] = {}
        for stmt in mig.statements:
            for kind, name in self._creates(stmt.node):
                if name:
                    self.created.setdefault((kind, name), []).append(stmt)

    @staticmethod
    def _creates(node):
        # IF NOT EXISTS may find the object already there, with its clients: not new (as squawk).
        if getattr(node, "if_not_exists", False):
            return
        if isinstance(node, ast.CreateStmt):
            yield TABLE, node.relation.relname
            for elt in node.tableElts or ():
                for con in (
                    [elt]
                    if isinstance(elt, ast.Constraint)
                    else constraints_of(elt)
                    if isinstance(elt, ast.ColumnDef)
                    else ()
                ):
                    if con.conname:
                        yield CONSTRAINT, con.conname
        elif isinstance(node, ast.CreateTableAsStmt) and node.into is not None:
            yield (VIEW if node.objtype == ObjectType.OBJECT_MATVIEW else TABLE), node.into.rel.relname
        elif isinstance(node, ast.ViewStmt):
            yield VIEW, node.view.relname
        elif isinstance(node, ast.CreateFunctionStmt):
            yield FUNCTION, last_name(node.funcname)
        elif isinstance(node, (ast.CreateEnumStmt, ast.CreateRangeStmt)):
            yield TYPE, last_name(node.typeName)
        elif isinstance(node, ast.CompositeTypeStmt):
            yield TYPE, node.typevar.relname
        elif isinstance(node, ast.CreateDomainStmt):
            yield TYPE, last_name(node.domainname)
        elif isinstance(node, ast.CreateSeqStmt):
            yield SEQUENCE, node.sequence.relname
        elif isinstance(node, ast.CreateSchemaStmt):
            yield SCHEMA, node.schemaname
        elif isinstance(node, ast.IndexStmt):
            yield INDEX, node.idxname
        elif isinstance(node, ast.CreateTrigStmt):
            yield TRIGGER, node.trigname
        elif isinstance(node, ast.CreatePolicyStmt):
            yield POLICY, node.policy_name
        elif isinstance(node, ast.RuleStmt):
            yield "rule", node.rulename
        elif isinstance(node, ast.CreatePublicationStmt):
            yield "publication", node.pubname
        elif isinstance(node, ast.CreateExtensionStmt):
            yield EXTENSION, node.extname
        elif isinstance(node, ast.AlterTableStmt):
            for cmd in node.cmds or ():
                if (
                    getattr(cmd, "subtype", None) == AlterTableType.AT_AddConstraint
                    and isinstance(cmd.def_, ast.Constraint)
                    and cmd.def_.conname
                ):
                    yield CONSTRAINT, cmd.def_.conname

    def before(self, kind: str, name: str | None, stmt: Statement) -> Statement | None:
        """The statement that created this object earlier in the file, if any."""
        return next((s for s in self.created.get((kind, name), ()) if s.index < stmt.index), None)

    def recreated(self, kind: str, name: str | None, stmt: Statement, mig: MigrationFile) -> Statement | None:
        """A CREATE of the same object later in the same transaction block: a drop-and-recreate
        that clients only see as a replacement once the transaction commits."""
        if not stmt.in_transaction:
            return None
        for later in mig.statements[stmt.index + 1 :]:
            if is_transaction(later.node, *END_KINDS):
                return None
            if later in self.created.get((kind, name), ()):
                return later
        return None
