"""pytest plugin: fail a test that runs an N+1 loop (registered as the `queryaudit` plugin).

- `queryaudit_capture` fixture: the test's statements are captured; when the test body
  ends, an N+1 fails the test with its line and fix: an ORM relation lazy-loaded twice
  from one line on rows of a multi-row result, or a raw statement run
  `queryaudit_n_plus_one_min` times in a row (default MIN_EXECUTIONS, 5).
- `@pytest.mark.no_n_plus_one(min_executions=N, min_total_ms=0)`: the same, without
  using the fixture.
- `--queryaudit-n-plus-one`: every test is checked when it ends;
  `--queryaudit-n-plus-one=error` (strict, for CI): the test fails at the lazy load that
  makes the loop, raised at the application's line with the fix.
- Loops a team accepts: `@pytest.mark.allow_n_plus_one` (the whole test) or
  `@pytest.mark.allow_n_plus_one("Book.author", "app/views.py:12")` (those relations or
  call sites, fnmatch patterns); the `queryaudit_n_plus_one_allow` ini list; and
  `with queryaudit.capture.allow_n_plus_one(...)` around the code.
"""

from __future__ import annotations

import pytest

from queryaudit.capture import CAPTURE_MIN_MS, Capture, NPlusOneError, capture
from queryaudit.n_plus_one import MIN_EXECUTIONS

_KEY = pytest.StashKey[Capture]()


def pytest_addoption(parser):
    group = parser.getgroup("queryaudit")
    group.addoption(
        "--queryaudit-n-plus-one",
        nargs="?",
        const="fail",
        default=None,
        choices=("fail", "error"),
        help="check every test for N+1 query loops: 'fail' (the default) when the test ends, "
        "'error' at the lazy load that makes the loop (strict, for CI)",
    )
    parser.addini(
        "queryaudit_n_plus_one_min",
        "executions of one raw statement in a loop that count as N+1",
        default=str(MIN_EXECUTIONS),
    )
    parser.addini(
        "queryaudit_n_plus_one_min_ms", "total ms of a loop below which it is ignored", default=str(CAPTURE_MIN_MS)
    )
    parser.addini(
        "queryaudit_n_plus_one_allow",
        "relations (Book.author, Book.*) or call sites (app/views.py:12) whose N+1 loops are accepted",
        type="linelist",
        default=[],
    )


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        f"no_n_plus_one(min_executions={MIN_EXECUTIONS}, min_total_ms=0): fail the test when it runs an N+1 query loop",
    )
    config.addinivalue_line(
        "markers",
        "allow_n_plus_one(*patterns): accept this test's N+1 loops (all of them, "
        "or those of the relations / call sites named)",
    )


def _thresholds(item) -> tuple[int, float]:
    marker = item.get_closest_marker("no_n_plus_one")
    minimum = int(item.config.getini("queryaudit_n_plus_one_min"))
    min_ms = float(item.config.getini("queryaudit_n_plus_one_min_ms"))
    if marker is not None:
        minimum = int(marker.kwargs.get("min_executions", marker.args[0] if marker.args else minimum))
        min_ms = float(marker.kwargs.get("min_total_ms", min_ms))
    return minimum, min_ms


def _allowed(item) -> tuple[str, ...]:
    patterns = tuple(item.config.getini("queryaudit_n_plus_one_allow"))
    for marker in item.iter_markers("allow_n_plus_one"):
        patterns += tuple(marker.args)
    return patterns


def _wanted(item) -> bool:
    marker = item.get_closest_marker("allow_n_plus_one")
    if marker is not None and not marker.args:
        return False
    return (
        item.get_closest_marker("no_n_plus_one") is not None
        or "queryaudit_capture" in getattr(item, "fixturenames", ())
        or item.config.getoption("queryaudit_n_plus_one") is not None
    )


def _capture(item):
    minimum, min_ms = _thresholds(item)
    strict = item.config.getoption("queryaudit_n_plus_one") == "error"
    return capture(item.nodeid, minimum, min_ms, strict=strict, allow=_allowed(item))


@pytest.fixture
def queryaudit_capture(request):
    """The statements this test runs (a queryaudit.capture.Capture); N+1 fails the test."""
    cap = request.node.stash.get(_KEY, None)
    if cap is None:  # requested outside the call phase (e.g. by another fixture): capture from here
        with _capture(request.node) as cap:
            request.node.stash[_KEY] = cap
            yield cap
        return
    yield cap


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    if not _wanted(item):
        return (yield)
    minimum, min_ms = _thresholds(item)
    existing = item.stash.get(_KEY, None)
    if existing is not None:
        result = yield
        _check(existing, minimum, min_ms)
        return result
    with _capture(item) as cap:
        item.stash[_KEY] = cap
        result = yield
    _check(cap, minimum, min_ms)
    return result


def _check(cap: Capture, minimum: int, min_ms: float) -> None:
    try:
        cap.assert_no_n_plus_one(minimum, min_ms)
    except NPlusOneError as exc:
        pytest.fail(str(exc), pytrace=False)
