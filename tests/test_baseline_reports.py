"""`audit --baseline` in the HTML and Markdown reports (a real regression between two stored
audits, hostile query texts inert, a statistics reset explained), and fleet audits carrying
the command line's options (--no-explain, --redact, formats) to every target. PostgreSQL 15 and 18."""

from __future__ import annotations

import json
import re
import textwrap

import pytest

from browser import open_report
from conftest import run_cli
from helpers import validate_report
from test_history import items_db

PAYLOAD = "<script>window.__pwned = 1</script>"
# The statement that regresses carries the payload in a comment: pg_stat_statements keeps it.
LOOKUP = f"SELECT /* {PAYLOAD} */ id, pad FROM items WHERE k = %s"
SECRET = "qa-secret-4711"


def lookups(db, calls: int = 120) -> None:
    with db.connect() as conn:
        for i in range(calls):
            conn.execute(LOOKUP, (i * 7 % 5000,)).fetchall()
        for i in range(10):
            conn.execute("SELECT count(*) FROM items WHERE id = %s", (i * 100,)).fetchone()


def _outside_code(markdown: str) -> str:
    return re.sub(r"(`+)[^`]*?\1", "", re.sub(r"```.*?```", "", markdown, flags=re.S))


@pytest.mark.browser
def test_baseline_regression_in_html_and_markdown(empty_db, tmp_path):
    db = items_db(empty_db)
    common = ["--dsn", db.dsn, "--store", str(tmp_path / "h.db"), "--target", "items", "--top", "5", "--no-explain"]
    lookups(db)
    assert run_cli("audit", *common).returncode == 0
    with db.connect() as conn:
        conn.execute("DROP INDEX items_k_idx")
    lookups(db)
    html, md, js = tmp_path / "b.html", tmp_path / "b.md", tmp_path / "b.json"
    result = run_cli("audit", *common, "--baseline", "--html", str(html), "--markdown", str(md), "--json", str(js))
    assert result.returncode == 0, result.stderr
    report = json.loads(js.read_text())
    validate_report(report)
    row = next(r for r in report["baseline"]["statements"] if "FROM items WHERE k = $1" in r["query"])
    assert row["status"] == "regressed" and PAYLOAD in row["query"]

    text = html.read_text()
    assert PAYLOAD not in text and "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in text
    assert text.index('id="since-last"') < text.index('id="top-fixes"')  # near the top
    slower = text[text.index('id="since-regressed"') :]
    slower = slower[: slower.index("</table>")]
    assert "regressed" in slower and "FROM items WHERE k = $1" in slower and "slower" in slower
    assert "audit #2 of" in text and ">delta<" in text and "Compared with" in text

    def probe(driver):
        probe.pwned = driver.execute_script("return window.__pwned === undefined ? null : window.__pwned")
        probe.scripts = driver.execute_script("return document.scripts.length")
        probe.visible = driver.execute_script("return document.getElementById('since-last').innerText")

    page = open_report(html, screenshot_name=f"baseline-{db.server.version}.png", actions=probe)
    assert probe.pwned is None and probe.scripts == 1
    assert PAYLOAD in probe.visible and "Since the last audit" in probe.visible
    assert not [m for m in page.console if m.get("level") == "SEVERE"], page.console
    assert not [u for u in page.requests if u != html.resolve().as_uri() and not u.startswith("data:")]

    markdown = md.read_text()
    assert markdown.index("## Since the last audit") < markdown.index("## Top fixes")
    slower_md = markdown[markdown.index("### Slower (1)") :].split("\n\n")[1]
    assert "| regressed |" in slower_md and "FROM items WHERE k = $1" in slower_md
    assert "<script>" not in _outside_code(markdown)

    # A reset of pg_stat_statements (by the DBA) before the next audit: the window says so
    # (pg_stat_statements_info.stats_reset, 14+).
    if db.server.version_num < 140000:
        return
    with db.connect() as conn:
        conn.execute("SELECT pg_stat_statements_reset()")
    lookups(db, calls=20)
    html, md = tmp_path / "reset.html", tmp_path / "reset.md"
    result = run_cli("audit", *common, "--baseline", "--html", str(html), "--markdown", str(md))
    assert result.returncode == 0, result.stderr
    assert 'id="window-note"' in html.read_text() and "Statistics reset" in html.read_text()
    assert "**Statistics reset**: pg\\_stat\\_statements was reset" in md.read_text()


def test_fleet_passes_no_explain_redact_and_formats(empty_db, tmp_path):
    db = items_db(empty_db)
    lookups(db, calls=20)
    with db.connect() as conn:  # a utility statement keeps its literal in pg_stat_statements
        for _ in range(3):
            conn.execute(f"DO $$BEGIN PERFORM pg_sleep(0.02); PERFORM '{SECRET}'; END$$")
    targets = tmp_path / "targets.toml"
    targets.write_text(
        textwrap.dedent(f"""
        [[target]]
        name = "items"
        dsn = "{db.dsn}"
        [[target]]
        name = "items-top2"
        dsn = "{db.dsn}"
        top = 2
        redact = false    # cannot undo --redact on the command line
    """)
    )
    out = tmp_path / "fleet"
    result = run_cli(
        "audit",
        "--targets",
        str(targets),
        "--out-dir",
        str(out),
        "--no-explain",
        "--redact",
        "--json",
        str(out / "{target}.json"),
        "--markdown",
        str(tmp_path / "md" / "{target}.md"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("items", "items-top2"):
        report = json.loads((out / f"{name}.json").read_text())
        assert report["queries"] and all(q["plan"] is None and q["plan_method"] is None for q in report["queries"])
        assert any("No plans were captured" in n for n in report["method"]["notes"])
        # The DO block is a utility statement: listed apart from the workload, redacted there too.
        examples = report["left_out"]["examples"]
        assert any(e.startswith("DO ") and SECRET not in e for e in examples), examples
        assert SECRET not in (tmp_path / "md" / f"{name}.md").read_text()
        assert SECRET not in (out / f"{name}.json").read_text()
    assert len(json.loads((out / "items-top2.json").read_text())["queries"]) == 2
    assert not (out / "items.html").exists()  # only the formats asked for
    index = (out / "index.html").read_text()
    assert 'href="items.json"' in index and 'href="../md/items.md"' in index

    bad = run_cli("audit", "--targets", str(targets), "--out-dir", str(out), "--html", str(out / "one.html"))
    assert bad.returncode == 2 and "{target}" in bad.stderr
