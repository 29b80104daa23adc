"""ORM lazy loads, as nplusone and Bullet see them: the semantic N+1 signal.

Every ORM result (Django queryset, SQLAlchemy query) is a `Result`; each instance it gave
keeps an `Origin` (the result and the relation path from its rows: `author`, then
`author.profile`). A lazy load of a relation on an instance whose result held several
rows, twice from one line in one unit of work, is the loop: its fix loads the whole path
with the parent rows. Results also remember their eager loads and which ones were read,
for the "unused eager load" note.

The framework hooks (django_lazy, sqlalchemy_hooks) build these; this module only keeps
them and groups them. Instances are tracked by weak reference, never by attribute, so
nothing of queryaudit is pickled or cached with them.
"""

from __future__ import annotations

import fnmatch
import weakref
from dataclasses import dataclass, field

from queryaudit.capture import core
from queryaudit.n_plus_one import MIN_LAZY_LOADS


@dataclass(frozen=True)
class Hop:
    """One relation of a path: `owner.name`; `many` for a collection (prefetch, selectinload)."""

    owner: str
    name: str
    many: bool = False


@dataclass(eq=False)
class Result:
    framework: str  # django | sqlalchemy
    model: str  # the model of its rows (Book)
    site: str  # where it was evaluated
    statement: str | None = None  # the SELECT that loaded it
    rows: int = 0
    deferred: tuple[tuple[str, ...], bool] | None = None  # Django only()/defer(): (names, defer?)
    eager: dict[tuple[str, ...], str] = field(default_factory=dict)  # path -> select_related | prefetch_related
    touched: set[tuple[str, ...]] = field(default_factory=set)


@dataclass(frozen=True, eq=False)
class Origin:
    result: Result
    path: tuple[Hop, ...] = ()

    def names(self) -> tuple[str, ...]:
        return tuple(hop.name for hop in self.path)


@dataclass(eq=False)
class LazyLoad:
    """One lazy load that ran SQL: `owner.name` on an instance, from `site`."""

    framework: str
    hop: Hop
    kind: str  # relation | deferred | generic-fk | generic-relation | prefetch-one
    site: str
    stack: list[str]
    origin: Origin | None
    filtered: str | None = None  # Django: the filter() of a related set, as keyword arguments
    target: str | None = None  # the model loaded: of a generic foreign key, of a filtered set
    allowed: bool = False
    statements: list = field(default_factory=list)

    @property
    def counts(self) -> bool:
        """On a row of a multi-row result, and not allowed: it counts towards a loop."""
        return self.origin is not None and self.origin.result.rows >= 2 and not self.allowed

    @property
    def path(self) -> tuple[Hop, ...]:
        return (self.origin.path if self.origin else ()) + (self.hop,)

    @property
    def key(self) -> tuple:
        root = self.origin.result.model if self.origin else self.hop.owner
        return self.site, root, tuple((h.owner, h.name) for h in self.path), self.kind, self.filtered


# -- instances and their origin (by weak reference) -------------------------------------------

_origins: dict[int, tuple[weakref.ref, Origin]] = {}


def mark(obj, origin: Origin, replace: bool = True) -> None:
    key = id(obj)
    if not replace and origin_of(obj) is not None:
        return
    try:
        ref = weakref.ref(obj, lambda r, k=key: _origins.pop(k, None) if _origins.get(k, (None,))[0] is r else None)
    except TypeError:
        return
    _origins[key] = (ref, origin)


def origin_of(obj) -> Origin | None:
    entry = _origins.get(id(obj))
    if entry is None or entry[0]() is not obj:
        return None
    return entry[1]


def touch(obj, name: str) -> None:
    """The application read an eager-loaded relation `name` of `obj`."""
    origin = origin_of(obj)
    if origin is not None and origin.result.eager:
        origin.result.touched.add(origin.names() + (name,))


def new_result(result: Result) -> Result:
    for cap in core.active.get():
        cap.results.append(result)
    return result


# -- recording --------------------------------------------------------------------------------


def allowed(load: LazyLoad, patterns: tuple[str, ...]) -> bool:
    """An allow-list entry names a relation (`Book.author`, `Book.*`) or a call site
    (`app/views.py:12`, `app/views.py:*`), as fnmatch patterns."""
    relation = f"{load.hop.owner}.{load.hop.name}"
    return any(
        fnmatch.fnmatchcase(relation, p) or fnmatch.fnmatchcase(load.site, p) or load.site.endswith(p) for p in patterns
    )


def start(framework: str, hop: Hop, kind: str, instance, **details) -> LazyLoad | None:
    """A lazy load begins: where from, on which instance. None outside a capture."""
    captures = core.active.get()
    if not captures:
        return None
    site, stack = core.locate(captures[-1].call_sites, depth=3)
    load = LazyLoad(framework, hop, kind, site, stack, origin_of(instance), **details)
    load.allowed = allowed(load, core.allow_list.get())
    return load


def finish(load: LazyLoad) -> None:
    """The lazy load ran its SQL: every active capture counts it (strict ones may raise)."""
    __tracebackhide__ = True
    for cap in core.active.get():
        cap.on_lazy_load(load)


class loading:  # noqa: N801 (used as `with lazy.loading(load):`)
    """Statements run inside belong to `load`; the load counts when one ran. A class, not a
    generator, so that a strict failure shows the application's line last."""

    def __init__(self, load: LazyLoad | None):
        self.load, self.token = load, None

    def __enter__(self):
        if self.load is not None:
            self.token = core.loading.set(self.load)

    def __exit__(self, kind, error, traceback):
        __tracebackhide__ = True
        if self.load is None:
            return
        core.loading.reset(self.token)
        if kind is None and self.load.statements:
            finish(self.load)


def in_loop(loads: list[LazyLoad], load: LazyLoad) -> bool:
    """`load` is at least the MIN_LAZY_LOADS-th of its kind among `loads` (of one unit)."""
    if not load.counts:
        return False
    return sum(1 for other in loads if other.key == load.key and other.counts) >= MIN_LAZY_LOADS


def loops(loads: list[LazyLoad]) -> list[list[LazyLoad]]:
    """Loads of one unit grouped into loops: same line, same relation path, >= MIN_LAZY_LOADS
    on rows of multi-row results. A chain (`book.author.profile`) is one loop, named by its
    longest path, whose fix loads every hop."""
    groups: dict[tuple, list[LazyLoad]] = {}
    for load in loads:
        if load.counts:
            groups.setdefault(load.key, []).append(load)
    found = sorted((g for g in groups.values() if len(g) >= MIN_LAZY_LOADS), key=lambda g: -len(g[0].path))
    kept: list[list[LazyLoad]] = []
    for group in found:
        site, root, path = group[0].key[:3]
        deeper = next(
            (
                k
                for k in kept
                if k[0].key[:2] == (site, root) and k[0].key[2][: len(path)] == path and group[0].kind == "relation"
            ),
            None,
        )
        if deeper is not None:
            deeper.extend(group)  # the first hops of a chain: the deeper loop's fix covers them
        else:
            kept.append(group)
    return kept


def unused_eager_loads(results: list[Result]) -> list[tuple[Result, tuple[str, ...]]]:
    """(result, path) for each select_related / prefetch_related path no row was read through
    (a path whose first hops were never read is named once, by those hops)."""
    out = []
    for result in results:
        if not result.rows:
            continue
        reported: list[tuple[str, ...]] = []
        for path in sorted(result.eager, key=len):
            if path in result.touched or any(path[: len(r)] == r for r in reported):
                continue
            reported.append(path)
            out.append((result, path))
    return out
