"""Django's lazy loads, where Django does them (4.2 and 5.x): the related descriptors
(forward and reverse foreign keys, one-to-one, many-to-many, generic relations and
generic foreign keys), deferred fields (`DeferredAttribute`) and per-instance
prefetches (`prefetch_one_level` on one row). Querysets mark the instances they give
(ModelIterable), with their select_related / prefetch_related paths; the request signals
mark the units of work (each test-client request is one).

Every wrapper returns at once outside a capture; inside, it only notes who loaded what.
"""

from __future__ import annotations

import contextvars
import functools
import sys

from queryaudit.capture import core, lazy
from queryaudit.capture.lazy import Hop, Origin

_installed = False


def install() -> None:
    global _installed
    if _installed:
        _install_contenttypes()
        return
    from django.core.signals import request_finished, request_started  # optional dependency: Django
    from django.db.models import query, query_utils
    from django.db.models.fields import related_descriptors as rd

    rd.ForwardManyToOneDescriptor.__get__ = _single(
        rd.ForwardManyToOneDescriptor.__get__, lambda d: d.field.name, lambda d: d.field
    )
    rd.ReverseOneToOneDescriptor.__get__ = _single(
        rd.ReverseOneToOneDescriptor.__get__, lambda d: d.related.get_accessor_name(), lambda d: d.related
    )
    rd.ReverseManyToOneDescriptor.__get__ = _manager(rd.ReverseManyToOneDescriptor.__get__)
    query_utils.DeferredAttribute.__get__ = _deferred(query_utils.DeferredAttribute.__get__)
    query.ModelIterable.__iter__ = _iterate(query.ModelIterable.__iter__)
    query.QuerySet._fetch_all = _fetch_all(query.QuerySet._fetch_all)
    query.QuerySet._clone = _clone(query.QuerySet._clone)
    query.prefetch_one_level = _prefetch_one_level(query.prefetch_one_level)
    for signal in (request_started, request_finished):  # a request is a unit of work, in any capture
        signal.connect(_boundary, weak=False, dispatch_uid=f"queryaudit.unit.{id(signal)}")
    _installed = True
    _install_contenttypes()


def _boundary(sender, **kwargs) -> None:
    core.new_unit()


def _install_contenttypes() -> None:
    module = sys.modules.get("django.contrib.contenttypes.fields")
    if module is None or getattr(module.GenericForeignKey.__get__, "_queryaudit", False):
        return
    module.GenericForeignKey.__get__ = _generic_fk(module.GenericForeignKey.__get__)


def _hop(instance, name: str, many: bool = False) -> Hop:
    return Hop(type(instance).__name__, name, many)


def _follow(load: lazy.LazyLoad | None, obj) -> None:
    """The object a lazy load brought keeps the path from the parent's rows (for chains)."""
    if load is not None and load.origin is not None and obj is not None and hasattr(obj, "_state"):
        lazy.mark(obj, Origin(load.origin.result, load.path))


def _wrapped(function):
    function._queryaudit = True
    return function


# -- forward foreign key, one-to-one both ways ------------------------------------------------


def _single(original, name_of, cache_of):
    @functools.wraps(original)
    def __get__(self, instance, cls=None):
        __tracebackhide__ = True
        if instance is None or not core.active.get():
            return original(self, instance, cls)
        name = name_of(self)
        if cache_of(self).is_cached(instance):
            lazy.touch(instance, name)
            return original(self, instance, cls)
        load = lazy.start("django", _hop(instance, name), "relation", instance)
        with lazy.loading(load):
            obj = original(self, instance, cls)
        _follow(load, obj)
        return obj

    return _wrapped(__get__)


def _generic_fk(original):
    @functools.wraps(original)
    def __get__(self, instance, cls=None):
        __tracebackhide__ = True
        if instance is None or not core.active.get():
            return original(self, instance, cls)
        if self.is_cached(instance):
            lazy.touch(instance, self.name)
            return original(self, instance, cls)
        load = lazy.start("django", _hop(instance, self.name), "generic-fk", instance)
        with lazy.loading(load):
            obj = original(self, instance, cls)
        if load is not None and obj is not None:
            load.target = type(obj).__name__
        _follow(load, obj)
        return obj

    return _wrapped(__get__)


# -- related sets: reverse foreign key, many-to-many, generic relation -------------------------


def _manager(original):
    @functools.wraps(original)
    def __get__(self, instance, cls=None):
        manager = original(self, instance, cls)
        if instance is not None and core.active.get():
            manager_cls = type(manager)
            if "_queryaudit_relation" not in manager_cls.__dict__:
                manager_cls._queryaudit_relation = _relation_of(self)
                manager_cls.get_queryset = _tagging(manager_cls.get_queryset)
        return manager

    return _wrapped(__get__)


def _relation_of(descriptor) -> tuple[str, str]:
    if type(descriptor).__name__ == "ReverseGenericManyToOneDescriptor":
        return descriptor.field.name, "generic-relation"
    if getattr(descriptor, "reverse", True) is False:  # ManyToManyDescriptor, forward side
        return descriptor.field.name, "relation"
    return descriptor.rel.get_accessor_name(), "relation"


def _tagging(original):
    @functools.wraps(original)
    def get_queryset(manager):
        queryset = original(manager)
        if core.active.get():
            name, kind = manager._queryaudit_relation
            if queryset._result_cache is not None:  # the prefetched rows: read, not loaded
                lazy.touch(manager.instance, name)
            queryset._queryaudit_rel = (
                manager.instance,
                _hop(manager.instance, name, True),
                kind,
                len(queryset.query.where.children),
            )
        return queryset

    return _wrapped(get_queryset)


def _clone(original):
    @functools.wraps(original)
    def _clone(self):
        clone = original(self)
        rel = getattr(self, "_queryaudit_rel", None)
        if rel is not None:
            clone._queryaudit_rel = rel
        return clone

    return _wrapped(_clone)


def _fetch_all(original):
    @functools.wraps(original)
    def _fetch_all(self):
        __tracebackhide__ = True
        rel = getattr(self, "_queryaudit_rel", None)
        if rel is None or self._result_cache is not None or not core.active.get():
            return original(self)
        instance, hop, kind, base_filters = rel
        filtered = _filters(self.query.where.children[base_filters:])
        load = lazy.start(
            "django",
            hop,
            kind,
            instance,
            filtered=filtered,
            target=self.model.__name__ if filtered is not None else None,
        )
        with lazy.loading(load):
            original(self)
        if load is not None and load.origin is not None:
            for obj in self._result_cache or ():
                _follow(load, obj)

    return _wrapped(_fetch_all)


def _filters(children) -> str | None:
    """A related set's own filter() as keyword arguments (`published=True`); None unfiltered."""
    if not children:
        return None
    out = []
    for lookup in children:
        target = getattr(getattr(lookup, "lhs", None), "target", None)
        name = getattr(lookup, "lookup_name", None)
        if target is None or name is None or not hasattr(lookup, "rhs"):
            out.append("...")
            continue
        out.append(f"{target.name}{'' if name == 'exact' else '__' + name}={lookup.rhs!r}")
    return ", ".join(out)


# -- deferred fields ----------------------------------------------------------------------------


def _deferred(original):
    @functools.wraps(original)
    def __get__(self, instance, cls=None):
        __tracebackhide__ = True
        if instance is None or not core.active.get() or self.field.attname in instance.__dict__:
            return original(self, instance, cls)
        load = lazy.start("django", _hop(instance, self.field.attname), "deferred", instance)
        with lazy.loading(load):
            return original(self, instance, cls)

    return _wrapped(__get__)


# -- querysets: which rows came from which result -------------------------------------------------

# (origin of the parent rows, hop) of the prefetch running now in this thread / task.
_prefetching: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("queryaudit_prefetching", default=None)


def _iterate(original):
    @functools.wraps(original)
    def __iter__(self):
        if not core.active.get():
            yield from original(self)
            return
        parent = _prefetching.get()
        result = None
        for obj in original(self):
            if parent is not None:  # prefetched children: rows of the parent's result, one hop down
                lazy.mark(obj, Origin(parent[0].result, parent[0].path + (parent[1],)))
            else:
                if result is None:  # the query has run: its statement is the last one recorded
                    result = _result(self.queryset)
                result.rows += 1
                origin = Origin(result)
                lazy.mark(obj, origin)
                _mark_selected(obj, origin, self.queryset.query.select_related)
            yield obj

    return _wrapped(__iter__)


def _result(queryset) -> lazy.Result:
    captures = core.active.get()
    site, _ = core.locate(captures[-1].call_sites, depth=3)
    statements = captures[-1].statements
    result = lazy.Result("django", queryset.model.__name__, site, statement=statements[-1].sql if statements else None)
    names, defer = queryset.query.deferred_loading
    if names:
        result.deferred = (tuple(sorted(names)), defer)
    if isinstance(queryset.query.select_related, dict):
        _eager_paths(result, queryset.query.select_related, (), "select_related")
    for lookup in queryset._prefetch_related_lookups:
        parts = getattr(lookup, "prefetch_to", lookup).split("__")
        for n in range(1, len(parts) + 1):
            result.eager.setdefault(tuple(parts[:n]), "prefetch_related")
    return lazy.new_result(result)


def _eager_paths(result: lazy.Result, tree: dict, prefix: tuple, how: str) -> None:
    for name, sub in tree.items():
        result.eager[prefix + (name,)] = how
        _eager_paths(result, sub, prefix + (name,), how)


def _mark_selected(obj, origin: Origin, tree) -> None:
    """Objects select_related brought in the same row: one hop further down the path."""
    if not tree:
        return
    cache = obj._state.fields_cache
    for name in tree if isinstance(tree, dict) else list(cache):
        related = cache.get(name)
        if related is not None and hasattr(related, "_state"):
            child = Origin(origin.result, origin.path + (_hop(obj, name),))
            lazy.mark(related, child)
            _mark_selected(related, child, tree[name] if isinstance(tree, dict) else None)


def _prefetch_one_level(original):
    @functools.wraps(original)
    def prefetch_one_level(instances, prefetcher, lookup, level):
        __tracebackhide__ = True
        if not core.active.get() or not instances:
            return original(instances, prefetcher, lookup, level)
        origin = lazy.origin_of(instances[0])
        name = lookup.prefetch_through.split("__")[level]
        hop = _hop(instances[0], name, True)
        load = None
        if len(instances) == 1 and origin is not None:  # prefetch_related_objects([obj], ...) per row
            load = lazy.start("django", hop, "prefetch-one", instances[0])
        token = _prefetching.set((origin or Origin(_result_of_instances(instances)), hop))
        try:
            with lazy.loading(load):
                return original(instances, prefetcher, lookup, level)
        finally:
            _prefetching.reset(token)

    return _wrapped(prefetch_one_level)


def _result_of_instances(instances) -> lazy.Result:
    return lazy.Result("django", type(instances[0]).__name__, "?", rows=len(instances))
