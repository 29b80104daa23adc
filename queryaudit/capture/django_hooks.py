"""Django's connection hooks: every query through Django's own instrumentation hook
(`execute_wrappers`, on every backend and driver: psycopg 3 and psycopg2), with the fix in
Django's words read from the ORM frame that ran it. The middleware is in
queryaudit.capture.django (it needs the capture API, which installs these hooks).
"""
from __future__ import annotations

import logging
import sys
import time

from queryaudit.capture import core

log = logging.getLogger("queryaudit.capture")
_DESCRIPTORS = "django.db.models.fields.related_descriptors"


def install() -> None:
    """Hook every connection of this thread now, and each one Django opens later."""
    if "django" not in sys.modules:  # never import Django into an application without it
        return
    try:
        from django.conf import settings
        from django.db import connections
        from django.db.backends.signals import connection_created
    except ImportError:
        return
    if not settings.configured:
        return
    connection_created.connect(_on_connection_created, weak=False, dispatch_uid="queryaudit.capture")
    for connection in connections.all():
        _hook(connection)


def _on_connection_created(sender, connection, **kwargs) -> None:
    _hook(connection)


def _hook(connection) -> None:
    if _execute not in connection.execute_wrappers:
        connection.execute_wrappers.insert(0, _execute)  # outermost: its time includes the others'


def _execute(execute, sql, params, many, context):
    if not core.active.get():
        return execute(sql, params, many, context)
    token = core.in_framework.set(True)
    started = time.perf_counter()
    try:
        return execute(sql, params, many, context)
    finally:
        core.in_framework.reset(token)
        connection = context["connection"]
        core.record(sql, params, started, connection.connection or connection, "django",
                    fix_hint=relation_hint(sys._getframe(1)))


def relation_hint(frame) -> str | None:
    """The select_related / prefetch_related call that loads the relation this query
    fetches one row of, from the ORM frames on the stack."""
    while frame is not None:
        owner = frame.f_locals.get("self")
        module = type(owner).__module__ if owner is not None else ""
        if module == _DESCRIPTORS:
            hint = _descriptor_hint(owner)
            if hint:
                return hint
        elif module == "django.db.models.query" and type(owner).__name__ == "QuerySet":
            hint = _related_manager_hint(owner)
            if hint:
                return hint
        frame = frame.f_back
    return None


def _descriptor_hint(descriptor) -> str | None:
    field = getattr(descriptor, "field", None)
    if field is not None and not getattr(field, "many_to_many", False):  # book.author
        model = field.model.__name__
        return f'{model}.objects.select_related("{field.name}"): loads each {model}\'s {field.name} in the same query'
    related = getattr(descriptor, "related", None)
    if related is not None:  # author.profile, the reverse side of a one-to-one
        model, name = related.model.__name__, related.get_accessor_name()
        return f'{model}.objects.select_related("{name}"): loads each {model}\'s {name} in the same query'
    return None


def _related_manager_hint(queryset) -> str | None:
    """author.books.all() / book.tags.all(): a related manager's queryset carries the
    instance it belongs to; the relation is the one from that model to this one."""
    instance = getattr(queryset, "_hints", {}).get("instance")
    if instance is None:
        return None
    owner = type(instance)
    names = [f.get_accessor_name() if hasattr(f, "get_accessor_name") else f.name
             for f in owner._meta.get_fields()
             if (f.one_to_many or f.many_to_many) and f.related_model is queryset.model]
    if len(names) != 1:
        return None
    model, name = owner.__name__, names[0]
    return (f'{model}.objects.prefetch_related("{name}"): loads the {name} of all {model} rows in one more '
            f"query instead of one per {model}")
