"""Django's connection hooks: every query through Django's own instrumentation hook
(`execute_wrappers`, on every backend and driver: psycopg 3 and psycopg2); the lazy loads
and their fix in Django's words come from queryaudit.capture.django_lazy. The middleware
is in queryaudit.capture.django (it needs the capture API, which installs these hooks).
"""

from __future__ import annotations

import logging
import sys
import time

from queryaudit.capture import core, django_lazy

log = logging.getLogger("queryaudit.capture")


def install() -> None:
    """Hook every connection of this thread now, and each one Django opens later."""
    if "django" not in sys.modules:  # never import Django into an application without it
        return
    try:
        from django.conf import settings  # optional dependency: the application may not use Django
        from django.db import connections
        from django.db.backends.signals import connection_created
    except ImportError:
        return
    if not settings.configured:
        return
    django_lazy.install()
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
        core.record(sql, params, started, connection.connection or connection, "django")
