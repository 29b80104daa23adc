"""EXPLAIN ANALYZE with and without a fix, in the audit's read-only session.

Every run is its own transaction, always rolled back: the fix is a SET LOCAL (or a
rewritten statement), so nothing outlives the run. Values travel as in plan capture
(queryaudit.plans.explain: one prepared statement, one EXPLAIN text), with custom plans forced (after five executions
the plan cache could switch to a generic plan and measure something else). All runs
share a deadline: what is left of the EXPLAIN budget.
"""

from __future__ import annotations

import time

import psycopg

from queryaudit.connect import first_column
from queryaudit.errors import AuditError
from queryaudit.plans.explain import explain_rolled_back, set_local

OPTIONS = "ANALYZE, BUFFERS, TIMING OFF, SUMMARY ON, FORMAT JSON"


class BudgetExhausted(AuditError):
    pass


class Runner:
    def __init__(self, conn: psycopg.Connection, deadline: float, statement_limit_ms: int):
        self.conn = conn
        self.deadline = deadline
        self.statement_limit_ms = statement_limit_ms

    def remaining_ms(self) -> float:
        return (self.deadline - time.monotonic()) * 1000

    def timeout_ms(self) -> int:
        remaining = self.remaining_ms()
        if remaining <= 50:
            raise BudgetExhausted("the EXPLAIN budget is used up")
        return int(min(self.statement_limit_ms, remaining))

    def explain(
        self,
        query: str,
        values: list[str] | None = None,
        types: list[str] | None = None,
        settings: dict[str, str] | None = None,
        options: str = OPTIONS,
    ) -> dict:
        """One EXPLAIN ANALYZE of `query` ($n bound to `values`) with `settings` SET LOCAL."""
        # set_config, not SET LOCAL: the same pg_stat_statements entry whatever the value.
        setup = [
            ("SELECT set_config(%s, %s, true)", ("statement_timeout", f"{self.timeout_ms()}ms")),
            ("SELECT set_config(%s, %s, true)", ("plan_cache_mode", "force_custom_plan")),
        ]
        setup += [("SELECT set_config(%s, %s, true)", (key, value)) for key, value in (settings or {}).items()]
        return explain_rolled_back(self.conn, query, options, values, types, setup)

    def rows(self, query: str, params: tuple | list = ()) -> list[tuple]:
        """A read (the keys a keyset rewrite or a batch needs), under the same limits."""
        with self.conn.transaction(force_rollback=True):
            set_local(self.conn, "statement_timeout", f"{self.timeout_ms()}ms")
            return self.conn.execute(query, params).fetchall()

    def values(self, query, params: tuple | list = ()) -> list:
        """The first column of a read's rows (keys for a batch), under the same limits."""
        with self.conn.transaction(force_rollback=True):
            set_local(self.conn, "statement_timeout", f"{self.timeout_ms()}ms")
            return self.conn.cursor(row_factory=first_column).execute(query, params).fetchall()

    def interleaved(self, before, after, runs: int) -> tuple[list[dict], list[dict]]:
        """`runs` timed runs of each side, alternating (a warm-up of each first, not counted),
        and in swapped order every other round (B A, A B, B A, ...): drift in the cache or the
        machine's load then hits both sides alike, and neither side always runs second."""
        before(), after()
        b, a = [], []
        for round_ in range(runs):
            if round_ % 2:
                a.append(after())
                b.append(before())
            else:
                b.append(before())
                a.append(after())
        return b, a
