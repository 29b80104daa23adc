"""Audit history: every audit stored, per-window deltas, baselines, budgets and fleets.

- store.py: the SQLAlchemy store (SQLite file by default, PostgreSQL by URL), its
  versioned schema and migrations;
- windows.py: per-window deltas of pg_stat_statements' cumulative counters, with resets
  and evictions detected (pure);
- baseline.py: one audit (or report) against another: statement changes, new and
  resolved findings (pure);
- evidence.py: what explains a change, kept with every stored audit (plan shapes, catalog
  state, settings; pure);
- causes.py: the ranked causes of a statement's change, tested against that evidence (pure);
- predictions.py: a fix's predicted saving against the realized one, the track record (pure);
- trends.py: sparklines' series, plan history and findings lifecycle for the audit report;
- notify.py: `check --notify`, broken budgets posted to a webhook;
- budgets.py: queryaudit.toml / [tool.queryaudit] budgets and suppressions, evaluated
  on a comparison;
- render.py: history tables for the terminal and an HTML page with inline SVG charts;
- fleet.py: many targets audited concurrently, one report each and an index page.
"""
