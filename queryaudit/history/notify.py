"""`check --notify URL`: the broken budgets, with their causes, posted where a team looks.

The payload is one JSON object that Slack and Microsoft Teams incoming webhooks both
accept: `text` (the summary they display, Markdown-ish lines) plus `queryaudit` (the
structured verdict: each violation with its ranked causes), which both ignore and any
other receiver can read. Delivery retries with backoff on connection errors, 429 and 5xx;
it never changes the exit code of `check` (a lost alert is reported on the terminal).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence

from queryaudit.history.causes import cause_summary

BACKOFF_S = (1.0, 4.0, 15.0)  # waits before the 2nd, 3rd and 4th attempt
TIMEOUT_S = 10.0
TEXT_VIOLATIONS = 10


def payload(verdict, comparison: dict, target: str | None = None) -> dict:
    where = f" on {target}" if target else ""
    lines = [f"queryaudit check{where}: {len(verdict.violations)} budget(s) broken"]
    for v in verdict.violations[:TEXT_VIOLATIONS]:
        line = f"• {v.budget}: {v.message}"
        if v.causes:
            line += "\n   causes: " + ", ".join(cause_summary(c) for c in v.causes)
        lines.append(line)
    if len(verdict.violations) > TEXT_VIOLATIONS:
        lines.append(f"… and {len(verdict.violations) - TEXT_VIOLATIONS} more")
    after = comparison.get("after") or {}
    return {
        "text": "\n".join(lines),
        "queryaudit": {
            "target": target,
            "collected_at": after.get("collected_at"),
            "violations": [v.to_dict() for v in verdict.violations],
        },
    }


def post(
    url: str, body: dict, backoff: Sequence[float] = BACKOFF_S, sleep: Callable[[float], None] = time.sleep
) -> tuple[bool, str]:
    """POST the JSON body; retried after each wait of `backoff`. (delivered, what happened)."""
    data = json.dumps(body, default=str).encode()
    last = ""
    for attempt in range(len(backoff) + 1):
        if attempt:
            sleep(backoff[attempt - 1])
        request = urllib.request.Request(
            url,
            data=data,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "queryaudit-notify"},
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                return True, f"delivered to {_host(url)} (HTTP {response.status}, attempt {attempt + 1})"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
            if exc.code != 429 and exc.code < 500:
                break  # the receiver refused this payload: retrying sends the same
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = str(getattr(exc, "reason", exc))
    return False, f"not delivered to {_host(url)} after {attempt + 1} attempt(s): {last}"


def _host(url: str) -> str:
    # The path of a webhook URL is its secret: name the host only.
    return url.split("://", 1)[-1].split("/", 1)[0]
