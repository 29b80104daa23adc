"""The demo's reports in headless Chromium at 1,400 px, as a review meeting sees them
(issue 26): no page scrolls sideways, the first screen shows measured top fixes and the top
statements without one, and two rows with the same SQL show what differs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from browser import full_page_screenshot, open_report
from queryaudit.before_after import build_comparison
from queryaudit.report import html
from test_report_review import _report

ROOT = Path(__file__).resolve().parent.parent
WIDTH = 1400


def _layout(path: Path) -> dict:
    def probe(driver):
        probe.found = driver.execute_script("""
            const page = document.documentElement;
            const main = document.querySelector('main');
            // main's content box: nothing may stick out of the column, let alone the page
            const edge = main.getBoundingClientRect().right - parseFloat(getComputedStyle(main).paddingRight);
            const wide = Array.from(document.querySelectorAll('main > section > table, main > section > div, main pre'))
                .filter(e => e.getBoundingClientRect().right > edge + 1)
                .map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right)
                          + '>' + Math.round(edge));
            const twins = Array.from(document.querySelectorAll('#workload tbody tr')).map(
                r => [r.querySelector('td.q a') ? r.querySelector('td.q a').textContent : '',
                      r.querySelector('.twin') ? r.querySelector('.twin').textContent : '']);
            const top = document.querySelector('#top-fixes');
            return {scroll: page.scrollWidth, client: page.clientWidth, wide: wide.slice(0, 5), twins: twins,
                    top: top ? top.innerText : '', topBottom: top ? top.getBoundingClientRect().bottom : 0};
        """)

    open_report(path, width=WIDTH, height=1000, actions=probe)
    return probe.found


def _check(found: dict) -> None:
    assert found["scroll"] <= found["client"], (found["scroll"], found["client"], found["wide"])
    assert not found["wide"], found["wide"]
    seen: dict[str, str] = {}
    for text, twin in found["twins"]:
        if text in seen:  # the same SQL again: it and its twin say how they differ
            assert twin and seen[text], text
        seen[text] = twin


@pytest.mark.browser
def test_report_and_compare_fit_1400_px_with_twins_told_apart(tmp_path):
    report = _report()
    page, compare = tmp_path / "r.html", tmp_path / "c.html"
    html.write(report, page)
    comparison = build_comparison(report, report)
    html.write(comparison, compare)
    found = _layout(page)
    _check(found)
    assert "No fix for 2 top statements" in found["top"]
    assert "heuristic" not in found["top"]
    _check(_layout(compare))


@pytest.mark.browser
@pytest.mark.parametrize("name", ["demo.html", "demo-compare.html"])
def test_the_committed_demo_reports_fit_1400_px(name, tmp_path):
    """reports/ holds the samples `make samples` regenerates: re-rendered with today's
    templates from their JSON, then opened as a reader would."""
    data = json.loads((ROOT / "reports" / name.replace(".html", ".json")).read_text())
    path = tmp_path / name
    html.write(data, path)
    found = _layout(path)
    _check(found)
    if name == "demo.html":
        top = data["summary"]["top_fixes"]
        assert top and all(t["saving_method"] == "measured" for t in top), [t["saving_method"] for t in top]
        assert all(t["share_of_total_time"] >= 0.0005 for t in top)
        assert not any(
            q["query"].split()[0].upper() in ("BEGIN", "COMMIT") or "pg_stat_statements_reset" in q["query"]
            for q in data["queries"]
        )
        assert "No fix for" in found["top"] and "measured" in found["top"]
    full_page_screenshot(path, f"layout-{path.stem}.png", width=WIDTH)
