"""Lock waits: live sampling of pg_stat_activity/pg_locks, lock waits read from logs,
the facts both produce, and the report section."""
