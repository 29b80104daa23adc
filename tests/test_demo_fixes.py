"""Every fix SQL the demo prints runs as written: one test per check, on PostgreSQL 15 and 18.

The demo audits the shop fixture after its workload and prints each finding's fix. Here
the same audit is made once per server (cached), and each check's fixes are applied, one
statement at a time in autocommit (CONCURRENTLY needs it), to a fresh copy of the fixture.
A fix that needs a manual step (evidence.manual_step) is not run blind: its first query
(what the step needs to see) is run and checked, and the test is skipped with the step as
the reason, so the skip shows in every test run.
"""

from __future__ import annotations

import pglast
import pytest

from queryaudit.checks import all_checks
from queryaudit.pipeline import AuditOptions, analyse, collect_live

_REPORTS: dict[str, dict] = {}


def demo_report(server, db) -> dict:
    """What the demo's first audit prints (same options), once per server version."""
    if server.version not in _REPORTS:
        db.run_workload("shop")
        snapshot = collect_live(db.dsn, AuditOptions(top=20))
        _REPORTS[server.version] = analyse(snapshot, top=20)
    return _REPORTS[server.version]


@pytest.mark.parametrize("check", sorted(c.id for c in all_checks()))
def test_every_fix_the_demo_prints_runs(check, server, shop_db):
    report = demo_report(server, shop_db)
    findings = [f for f in report["findings"] if f["check"] == check and f.get("fix_sql")]
    if not findings:
        pytest.skip(f"the demo prints no fix for {check}")
    manual = []
    with shop_db.connect() as conn:
        conn.autocommit = True
        for finding in findings:
            step = (finding.get("evidence") or {}).get("manual_step")
            statements = [s.strip() for s in pglast.split(finding["fix_sql"])]
            if step:
                # The fix says what to do by hand, and its first query shows what to do it on.
                assert finding["fix_sql"].startswith("-- Manual step:"), finding["fix_sql"]
                first = conn.execute(statements[0]).fetchall()
                assert first, f"{finding['id']}: the first query of a manual fix found nothing to act on"
                manual.append(f"{finding['id']}: {step} (its first query lists {len(first)} rows)")
                continue
            for statement in statements:
                conn.execute(statement)
    if manual:
        pytest.skip("needs a manual step: " + "; ".join(manual))
