"""Django: the middleware that captures each request.

    MIDDLEWARE = ["queryaudit.capture.django.QueryAuditMiddleware", ...]

The queries are read through Django's own instrumentation hook and the fix comes in
Django's words (select_related / prefetch_related): queryaudit.capture.django_hooks.
"""

from __future__ import annotations

import logging

from queryaudit.capture import capture

log = logging.getLogger("queryaudit.capture")


class QueryAuditMiddleware:
    """Django middleware: each request's statements are captured; its N+1 loops are
    logged as warnings on the `queryaudit.capture` logger (or passed to a callback set
    as settings.QUERYAUDIT_ON_N_PLUS_ONE = "module.function", called (path, loops)), its
    unused eager loads at INFO."""

    def __init__(self, get_response):
        from django.conf import settings  # optional dependency: Django is there when its middleware runs
        from django.utils.module_loading import import_string

        self.get_response = get_response
        callback = getattr(settings, "QUERYAUDIT_ON_N_PLUS_ONE", None)
        self.report = import_string(callback) if callback else _warn

    def __call__(self, request):
        path = f"{request.method} {request.path}"
        with capture(path) as cap:
            response = self.get_response(request)
        loops = cap.n_plus_one()
        if loops:
            self.report(path, loops)
        for note in cap.unused_eager_loads():  # what it loads and never reads: worth a look, not a warning
            log.info("%s: %s", path, note)
        return response


def _warn(path: str, loops) -> None:
    for loop in loops:
        log.warning("%s: %s", path, loop.describe())
