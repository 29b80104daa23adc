"""N+1 query loops: one idea, found three ways.

- `shape`: is a statement a single-table lookup by equality (the child of a loop), and
  its batched form and join with the parent, built on pglast's syntax tree.
- `runs`: runs of one statement close together in one session, for the sources that see
  only statements (pg_stat_statements via the check, server logs, raw driver calls).
- `queryaudit.capture`: in the application, the ORM's own lazy loads (the semantic signal).
- `queryaudit.checks.n_plus_one`: the finding.

The thresholds live here, once, for all of them (the CLI's defaults included).
"""

# Statements only (logs, raw driver calls): a loop is at least MIN_EXECUTIONS executions of
# one fingerprint with different parameters, in one session, at most MAX_GAP other
# statements between two of them, and at least MIN_RUN_MS of execution time in total
# (below that a loop costs nobody anything; a capture sets it to 0).
MIN_EXECUTIONS = 5
MIN_RUN_MS = 50.0
MAX_GAP = 3
# Logs: a loop is reported when it repeats in this many transactions or requests, and what
# it costs is its round trips (the application waits for each) plus the server's time.
MIN_REPEATS = 2
ROUND_TRIP_MS = 0.5
MAX_SESSIONS = 20000  # sessions followed at once; the oldest is closed beyond this (flat memory)
# ORM lazy loads (capture): the second lazy load of one relation, from one line, on rows
# of a multi-row result, in one unit of work, is the loop (as nplusone and Bullet see it).
MIN_LAZY_LOADS = 2
