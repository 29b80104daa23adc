"""The HTML, Markdown and JSON reports of real audits (PostgreSQL 15 and 18), the HTML
loaded in headless Chromium: no console error, no request leaves the file, the sections
are there, a screenshot is kept in tests/artifacts/; hostile names and texts stay inert."""

import json
import re

import pytest

from browser import open_report
from conftest import run_cli
from helpers import validate_report

SECTIONS = ("header", "top-fixes", "workload", "share-chart", "fixes", "statements", "locks", "hygiene", "method")
PAYLOAD = "<script>window.__pwned = 1</script>"


def _errors(console: list[dict]) -> list[dict]:
    return [m for m in console if m.get("level") == "SEVERE"]


def _no_external(requests: list[str], page) -> list[str]:
    return [u for u in requests if u != page.resolve().as_uri() and not u.startswith("data:")]


def check_reports_of_a_real_audit(db, html, md, report) -> None:
    """What the HTML (in Chromium) and Markdown of a real shop audit must show. Called by
    the before/after test in test_compare.py, which has the audit at hand."""
    validate_report(report)
    assert report["findings"] and report["summary"]["top_fixes"]
    top = report["findings"][0]

    page = open_report(html, screenshot_name=f"report-{db.server.version}.png")
    assert not _errors(page.console), page.console
    assert not _no_external(page.requests, html), page.requests
    for section in SECTIONS:
        assert f'id="{section}"' in page.dom, section
    assert page.screenshot.stat().st_size > 10_000
    # What a reviewer needs on screen: the top fix, its SQL with a copy button, a statement's prettified SQL.
    assert top["title"].split(" (")[0].replace("<", "&lt;") in page.dom
    assert 'class="copy"' in page.dom
    assert "FROM orders" in page.dom and "WHERE customer_id = $1" in page.dom
    if any(q.get("plan_nodes") for q in report["queries"]):
        assert 'class="plan"' in page.dom
    text = html.read_text()
    assert "http://" not in text and "https://" not in text  # nothing to fetch, not even a font

    markdown = md.read_text()
    assert markdown.replace("\\_", "_").startswith(f"# Query audit: {db.name}")
    for heading in ("## Top fixes", "## Workload", "## Fixes", "## Method"):
        assert heading in markdown
    with_sql = next(f for f in report["findings"] if f.get("fix_sql"))
    assert with_sql["fix_sql"].splitlines()[0] in markdown
    assert "```sql" in markdown


@pytest.mark.browser
def test_script_payloads_in_names_and_query_texts_render_inert(empty_db, tmp_path):
    table = PAYLOAD.replace('"', '""')
    empty_db.execute(f'CREATE TABLE "{table}" (id int PRIMARY KEY, parent int)')
    empty_db.execute(f'CREATE TABLE "{table}_child" (id int, ref int REFERENCES "{table}" (id))')
    empty_db.execute(f'INSERT INTO "{table}" SELECT g, g FROM generate_series(1, 50) g')
    empty_db.execute(f'INSERT INTO "{table}_child" SELECT g, g FROM generate_series(1, 50) g')
    with empty_db.connect() as conn:
        for n in range(5):
            conn.execute(f'SELECT /* {PAYLOAD} */ count(*) FROM "{table}" WHERE id > %s', (n,)).fetchall()
    html, md, js = tmp_path / "r.html", tmp_path / "r.md", tmp_path / "r.json"
    result = run_cli("audit", "--dsn", empty_db.dsn, "--html", str(html), "--markdown", str(md), "--json", str(js))
    assert result.returncode == 0, result.stderr
    report = json.loads(js.read_text())
    assert any(PAYLOAD in q["query"] for q in report["queries"])

    text = html.read_text()
    assert PAYLOAD not in text
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in text
    assert text.count("<script>") == 1  # ours, the copy button's

    def probe(driver):
        probe.pwned = driver.execute_script("return window.__pwned === undefined ? null : window.__pwned")
        probe.scripts = driver.execute_script("return document.scripts.length")
        probe.visible = driver.execute_script("return document.body.innerText")

    page = open_report(html, actions=probe)
    assert probe.pwned is None
    assert probe.scripts == 1
    assert PAYLOAD in probe.visible  # shown as text, as the user wrote it
    assert not _errors(page.console), page.console
    # In Markdown, code spans and fences show their content as text; outside them no raw tag may remain.
    markdown = re.sub(r"(`+)[^`]*?\1", "", re.sub(r"```.*?```", "", md.read_text(), flags=re.S))
    assert "<script>" not in markdown and "&lt;script&gt;" in markdown
