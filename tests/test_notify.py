"""`check --notify`: delivery to a webhook on 127.0.0.1, retries with an injected backoff
(no real waits), and the payload Slack and Teams accept (text plus structured data)."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from queryaudit.history.budgets import Verdict, Violation
from queryaudit.history.notify import payload, post


class Receiver:
    """A local webhook answering with the given statuses in turn (200 once they run out)."""

    def __init__(self, statuses=()):
        self.statuses = list(statuses)
        self.bodies: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/T000/B000/secret"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def dead_url() -> str:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def verdict() -> Verdict:
    cause = {"kind": "index-dropped", "explained_share": 1.0, "evidence": {"index": "public.items_k_idx"}}
    return Verdict(
        violations=[
            Violation(
                "mean-time-regression-pct",
                "statement 1",
                "statement 1: mean time 0.05 ms -> 3 ms",
                queryid="1",
                before=0.05,
                after=3.0,
                limit=50,
                causes=[cause],
            )
        ]
    )


def test_retries_after_server_errors_then_delivers():
    receiver = Receiver([500, 503])
    waits: list[float] = []
    try:
        body = payload(verdict(), {"after": {"collected_at": "2026-01-01T00:00:00+00:00"}}, "shop")
        delivered, what = post(receiver.url, body, backoff=(1.0, 4.0, 15.0), sleep=waits.append)
    finally:
        receiver.close()
    assert delivered and "attempt 3" in what and "secret" not in what
    assert waits == [1.0, 4.0]  # backed off twice, never slept for real
    assert len(receiver.bodies) == 3
    sent = receiver.bodies[-1]
    assert sent["text"].startswith("queryaudit check on shop: 1 budget(s) broken")
    assert "index-dropped public.items_k_idx (100%)" in sent["text"]
    violation = sent["queryaudit"]["violations"][0]
    assert violation["budget"] == "mean-time-regression-pct" and violation["causes"][0]["kind"] == "index-dropped"


def test_gives_up_after_bounded_retries_and_on_a_refusal():
    waits: list[float] = []
    delivered, what = post(dead_url(), {"text": "x"}, backoff=(1.0, 4.0), sleep=waits.append)
    assert not delivered and "after 3 attempt(s)" in what and waits == [1.0, 4.0]
    receiver = Receiver([400])
    try:
        delivered, what = post(receiver.url, {"text": "x"}, backoff=(1.0, 4.0), sleep=waits.append)
    finally:
        receiver.close()
    # A 400 is the receiver refusing this payload: sending it again would not help.
    assert not delivered and "HTTP 400" in what and len(receiver.bodies) == 1
