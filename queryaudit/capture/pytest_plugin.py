"""pytest plugin: fail a test that runs an N+1 loop (registered as the `queryaudit` plugin).

- `queryaudit_capture` fixture: the test's statements are captured; when the test body
  ends, an N+1 (>= `queryaudit_n_plus_one_min` executions, default 5) fails the test with
  the call sites.
- `@pytest.mark.no_n_plus_one(min_executions=5, min_total_ms=0)`: the same, without
  using the fixture.
- `--queryaudit-n-plus-one`: every test is checked.
- `@pytest.mark.allow_n_plus_one`: opt a test out of the global check.
"""
from __future__ import annotations

import pytest

from queryaudit.capture import CAPTURE_MIN_MS, Capture, NPlusOneError, capture
from queryaudit.n_plus_one import MIN_EXECUTIONS

_KEY = pytest.StashKey[Capture]()


def pytest_addoption(parser):
    group = parser.getgroup("queryaudit")
    group.addoption("--queryaudit-n-plus-one", action="store_true", default=False,
                    help="fail every test that runs an N+1 query loop (queryaudit capture)")
    parser.addini("queryaudit_n_plus_one_min", "executions of one statement in a loop that count as N+1",
                  default=str(MIN_EXECUTIONS))
    parser.addini("queryaudit_n_plus_one_min_ms", "total ms of a loop below which it is ignored",
                  default=str(CAPTURE_MIN_MS))


def pytest_configure(config):
    config.addinivalue_line("markers", "no_n_plus_one(min_executions=5, min_total_ms=0): fail the test when "
                                       "it runs an N+1 query loop")
    config.addinivalue_line("markers", "allow_n_plus_one: do not check this test for N+1 loops")


def _thresholds(item) -> tuple[int, float]:
    marker = item.get_closest_marker("no_n_plus_one")
    minimum = int(item.config.getini("queryaudit_n_plus_one_min"))
    min_ms = float(item.config.getini("queryaudit_n_plus_one_min_ms"))
    if marker is not None:
        minimum = int(marker.kwargs.get("min_executions", marker.args[0] if marker.args else minimum))
        min_ms = float(marker.kwargs.get("min_total_ms", min_ms))
    return minimum, min_ms


def _wanted(item) -> bool:
    if item.get_closest_marker("allow_n_plus_one"):
        return False
    return (item.get_closest_marker("no_n_plus_one") is not None
            or "queryaudit_capture" in getattr(item, "fixturenames", ())
            or item.config.getoption("queryaudit_n_plus_one"))


@pytest.fixture
def queryaudit_capture(request):
    """The statements this test runs (a queryaudit.capture.Capture); N+1 fails the test."""
    cap = request.node.stash.get(_KEY, None)
    if cap is None:  # requested outside the call phase (e.g. by another fixture): capture from here
        minimum, min_ms = _thresholds(request.node)
        with capture(request.node.nodeid, minimum, min_ms) as cap:
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
    with capture(item.nodeid, minimum, min_ms) as cap:
        item.stash[_KEY] = cap
        result = yield
    _check(cap, minimum, min_ms)
    return result


def _check(cap: Capture, minimum: int, min_ms: float) -> None:
    try:
        cap.assert_no_n_plus_one(minimum, min_ms)
    except NPlusOneError as exc:
        pytest.fail(str(exc), pytrace=False)
