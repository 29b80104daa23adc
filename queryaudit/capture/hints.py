"""The fix of a lazy-load loop in the framework's own words, for every relation kind:
Django select_related (the whole path of a chain), prefetch_related (with Prefetch for a
filtered set, and on generic relations), GenericPrefetch for generic foreign keys,
only()/defer() for a deferred field, prefetch_related_objects once for the whole list;
SQLAlchemy selectinload / joinedload along the path, with raiseload to keep it fixed."""

from __future__ import annotations

from queryaudit.capture.lazy import Hop, LazyLoad, Result


def fix_hint(group: list[LazyLoad]) -> str:
    load = max(group, key=lambda g: len(g.path))
    if load.framework == "sqlalchemy":
        return sqlalchemy_hint(load)
    return django_hint(load, sorted({g.target for g in group if g.target}))


def _lookup(path: tuple[Hop, ...]) -> str:
    return "__".join(hop.name for hop in path)


def django_hint(load: LazyLoad, targets: list[str]) -> str:
    root = load.origin.result.model if load.origin else load.hop.owner
    path, hop = load.path, load.hop
    if load.kind == "deferred":
        return _deferred_hint(load.origin.result if load.origin else None, root, hop.name)
    if load.kind == "prefetch-one":
        return (
            f'prefetch_related_objects(<all the {hop.owner} rows>, "{_lookup(path)}") once, before the loop '
            f'(or {root}.objects.prefetch_related("{_lookup(path)}")): one query for all rows instead of '
            f"one per {hop.owner}"
        )
    if load.kind == "generic-fk":
        if targets and _django_version() >= (5, 0):  # GenericPrefetch is new in Django 5.0
            querysets = ", ".join(f"{t}.objects.all()" for t in targets)
            lookup = f'GenericPrefetch("{_lookup(path)}", [{querysets}])'
        else:
            lookup = f'"{_lookup(path)}"'
        return (
            f"{root}.objects.prefetch_related({lookup}): loads the {hop.name} of all {root} rows in one query "
            "per content type instead of one per row"
        )
    if load.filtered is not None:
        lookup = _lookup(path)
        attr = f"filtered_{hop.name}"
        return (
            f'{root}.objects.prefetch_related(Prefetch("{lookup}", queryset='
            f'{_model_of(load)}.objects.filter({load.filtered}), to_attr="{attr}")), then read '
            f"{hop.owner.lower()}.{attr} instead of {hop.owner.lower()}.{hop.name}.filter(...)"
        )
    if any(h.many for h in path) or load.kind == "generic-relation":
        return (
            f'{root}.objects.prefetch_related("{_lookup(path)}"): loads the {hop.name} of all {root} rows '
            f"in one more query instead of one per {hop.owner}"
        )
    return f'{root}.objects.select_related("{_lookup(path)}"): loads each {root}\'s {_lookup(path)} in the same query'


def _django_version() -> tuple:
    import django  # optional dependency: only ever asked about a Django lazy load, so Django is there

    return tuple(django.VERSION[:2])


def _model_of(load: LazyLoad) -> str:
    return load.target or "Related"


def _deferred_hint(result: Result | None, model: str, name: str) -> str:
    names, defer = result.deferred if result and result.deferred else ((), True)
    quoted = ", ".join(f'"{n}"' for n in sorted(set(names) | {name})) if not defer else ""
    if not defer:  # only(...): the field is missing from the list
        return (
            f'{model}.objects.only({quoted}): add "{name}" to the only() list; without it each {model} '
            f"reloads {name} with one query"
        )
    rest = ", ".join(f'"{n}"' for n in sorted(set(names) - {name}))
    return (
        f'{model}.objects.{f"defer({rest})" if rest else "all()"}: take "{name}" out of the defer() list; '
        f"deferred, each {model} reloads it with one query"
    )


def sqlalchemy_hint(load: LazyLoad) -> str:
    root = load.origin.result.model if load.origin else load.hop.owner
    chain = ".".join(f"{'selectinload' if h.many else 'joinedload'}({h.owner}.{h.name})" for h in load.path)
    first = load.path[0]
    return (
        f"select({root}).options({chain}): loads them with the {root} rows "
        f"(raiseload({first.owner}.{first.name}) then makes any lazy load of it fail in tests)"
    )
