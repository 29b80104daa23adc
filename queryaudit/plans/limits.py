"""How much EXPLAIN an audit may spend: the defaults, in one place. Import-light: the CLI
reads them when it declares its options, before any command runs."""

DEFAULT_BUDGET_S = 60.0  # all EXPLAINs of one audit together (--explain-budget)
DEFAULT_STATEMENT_LIMIT_MS = 10_000  # statement_timeout of one EXPLAIN ANALYZE (--explain-timeout)
