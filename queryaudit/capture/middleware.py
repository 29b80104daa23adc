"""WSGI and ASGI middleware: capture each request's statements, report its N+1 loops.

    app = QueryAuditWSGI(app)                         # logs a warning per N+1
    app = QueryAuditASGI(app, on_n_plus_one=callback) # callback(request_path, [NPlusOne, ...])

The default report is one warning per loop on the `queryaudit.capture` logger.
"""

from __future__ import annotations

import logging

from queryaudit.capture import CAPTURE_MIN_MS, capture
from queryaudit.n_plus_one import MIN_EXECUTIONS

log = logging.getLogger("queryaudit.capture")


def _warn(path: str, loops) -> None:
    for loop in loops:
        log.warning("%s: %s", path, loop.describe())


class QueryAuditWSGI:
    def __init__(
        self, app, on_n_plus_one=_warn, min_executions: int = MIN_EXECUTIONS, min_total_ms: float = CAPTURE_MIN_MS
    ):
        self.app, self.report = app, on_n_plus_one
        self.min_executions, self.min_total_ms = min_executions, min_total_ms

    def __call__(self, environ, start_response):
        path = f"{environ.get('REQUEST_METHOD', 'GET')} {environ.get('PATH_INFO', '/')}"
        with capture(path, self.min_executions, self.min_total_ms) as cap:
            # The body is consumed inside the capture: lazy loads may happen while it streams.
            body = list(self.app(environ, start_response))
        loops = cap.n_plus_one()
        if loops:
            self.report(path, loops)
        return body


class QueryAuditASGI:
    def __init__(
        self, app, on_n_plus_one=_warn, min_executions: int = MIN_EXECUTIONS, min_total_ms: float = CAPTURE_MIN_MS
    ):
        self.app, self.report = app, on_n_plus_one
        self.min_executions, self.min_total_ms = min_executions, min_total_ms

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http":
            return await self.app(scope, receive, send)
        path = f"{scope.get('method', 'GET')} {scope.get('path', '/')}"
        with capture(path, self.min_executions, self.min_total_ms) as cap:
            await self.app(scope, receive, send)
        loops = cap.n_plus_one()
        if loops:
            self.report(path, loops)
