"""Plan capture: EXPLAIN the top statements, safely, within a time budget.

For each of the top N statements (by total time), and each statement of a
`--queries` file:
- read-only statements (pglast decides: SELECT, VALUES, TABLE, WITH without
  data-modifying CTEs, no FOR UPDATE / SELECT INTO) get
  EXPLAIN (ANALYZE, BUFFERS, SETTINGS, FORMAT JSON) with realistic values bound to
  their $n placeholders (queryaudit.plans.params); when no value can be inferred, the
  generic plan (no execution) and parameter_source says which placeholder stopped it;
- INSERT/UPDATE/DELETE/MERGE get a plain EXPLAIN, unless --analyze-dml: then EXPLAIN
  ANALYZE inside a transaction that is always rolled back (the only transaction the
  auditor ever makes read-write), and never on a hot standby;
- a statement whose mean time exceeds the per-statement limit gets a plain EXPLAIN;
  every EXPLAIN ANALYZE runs under its own statement_timeout, and all of them share a
  total budget (--explain-budget);
- a statement that cannot be explained (text that does not parse, permission denied,
  a dropped table, a timeout) is recorded as skipped with the reason; the others go on;
- every analyzed plan is compared with the workload's per-call figures
  (queryaudit.plans.workload); once every statement has a first plan, the values of those
  unlike the workload are searched (queryaudit.plans.search) within what is left.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pglast
import psycopg
from pglast import ast
from psycopg import sql

from queryaudit.collect import top_statements
from queryaudit.connect import named_rows, scalar
from queryaudit.errors import AuditError
from queryaudit.plans.explain import (
    SET_LOCAL_SQL,
    explain_generic,
    explain_rolled_back,
    parameter_count,
    parameter_types,
    set_local,
)
from queryaudit.plans.limits import DEFAULT_BUDGET_S, DEFAULT_STATEMENT_LIMIT_MS
from queryaudit.plans.logged import logged_plan, logged_statement, logged_values
from queryaudit.plans.model import build
from queryaudit.plans.nested import read_nested
from queryaudit.plans.params import Binding, ParameterSlot, infer_parameters
from queryaudit.plans.plannable import date_columns, make_plannable
from queryaudit.plans.samples import SAMPLES, RowSample, apply_rows, join_request, sample_requests
from queryaudit.plans.search import candidate_sets, estimate_distance
from queryaudit.plans.workload import ParameterSet, compare, per_call, weigh
from queryaudit.snapshot import PlanCapture, Snapshot, Statement
from queryaudit.sql import find_nodes, fingerprint, parse, statement_kind

ANALYZE_OPTIONS = "ANALYZE, BUFFERS, SETTINGS, FORMAT JSON"
PLAIN_OPTIONS = "SETTINGS, FORMAT JSON"
SAMPLE_TIMEOUT_MS = 2_000  # one TABLESAMPLE read of a few rows
JOIN_SAMPLE_TIMEOUT_MS = 1_000  # a few rows of the statement's join; slower: table by table
SAMPLE_SHARE = 0.1  # another sampled row only when one execution takes at most this share of the budget left
PLAIN_TIMEOUT_MS = 5_000  # a plain EXPLAIN (planning only) after the budget is spent
SEARCH_RUNS = 4  # candidate sets EXPLAIN ANALYZEd when the first sample is unlike the workload
SEARCH_SHARE = 0.25  # one candidate's run may take at most this share of the budget left
ESTIMATE_TIMEOUT_MS = 1_000  # one plain EXPLAIN ranking a candidate set
RANK_SHARE = 0.05  # the plain EXPLAINs ranking one statement's candidates: this share of the budget left


@dataclass
class PlanOptions:
    top: int = 20
    budget_s: float = DEFAULT_BUDGET_S
    statement_limit_ms: int = DEFAULT_STATEMENT_LIMIT_MS  # statement_timeout of one EXPLAIN ANALYZE
    analyze_dml: bool = False
    queries_file: Path | None = None


def read_queries_file(path: Path) -> list[str]:
    """Concrete statements, separated by semicolons (pglast splits, so ';' in strings is safe)."""

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise AuditError(f"cannot read the queries file {path}: {exc.strerror or exc}") from None
    try:
        return [str(s).strip() for s in pglast.split(text) if str(s).strip()]
    except Exception as exc:
        raise AuditError(f"{path} is not valid SQL: {str(exc).splitlines()[0]}") from None


def render_query(query: str, binding: Binding) -> str:
    """The statement as explained, values in place of $n (for the report; never executed)."""
    by_number = {s.number: s for s in binding.slots}

    def literal(m: re.Match) -> str:
        slot = by_number.get(int(m.group(1)))
        if slot is None or slot.value is None:
            return m.group(0)
        quoted = "'" + slot.value.replace("'", "''") + "'"
        return f"{quoted}::{slot.type}" if slot.type else quoted

    return re.sub(r"\$(\d+)(?!\d)", literal, query)


# Volatile built-ins that change nothing outside the statement: calling them does not
# stop EXPLAIN ANALYZE. Any other volatile function (pg_stat_statements_reset(),
# pg_terminate_backend(), a PL/pgSQL function that writes to a log table...) might act
# even in a read-only transaction, so such statements get a plain EXPLAIN.
HARMLESS_VOLATILE = {
    "random",
    "random_normal",
    "gen_random_uuid",
    "uuid_generate_v4",
    "clock_timestamp",
    "timeofday",
    "statement_timestamp",
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "setseed",
    "txid_current_if_assigned",
    "pg_current_xact_id_if_assigned",
}


def functions_called(query: str) -> list[str]:

    names: list[str] = []
    for stmt in parse(query) or ():
        for call in find_nodes(stmt.stmt, ast.FuncCall):
            name = call.funcname[-1].sval if call.funcname else None
            if name and name not in names:
                names.append(name)
    return names


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def skip_reason(exc: psycopg.Error) -> str:
    """What a DBA does about an EXPLAIN that failed."""
    message = _first_line(exc)
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return f"permission denied ({message}): GRANT SELECT on the tables it reads to the audit role"
    if isinstance(
        exc,
        (
            psycopg.errors.UndefinedTable,
            psycopg.errors.UndefinedColumn,
            psycopg.errors.UndefinedFunction,
            psycopg.errors.InvalidSchemaName,
        ),
    ):
        return f"the statement no longer matches the schema ({message}): dropped or renamed since it ran"
    if isinstance(
        exc,
        (
            psycopg.errors.SyntaxError,
            psycopg.errors.AmbiguousFunction,
            psycopg.errors.IndeterminateDatatype,
            psycopg.errors.DatatypeMismatch,
        ),
    ):
        return (
            f"the normalized text cannot be prepared ({message}): give a concrete example with --queries, "
            "or the server log with --log (log_min_duration_statement)"
        )
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return f"cancelled by statement_timeout ({message})"
    return message


class PlanCapturer:
    """One audit's plan capture: the budget, the session, and what was captured."""

    def __init__(self, conn: psycopg.Connection, snapshot: Snapshot, options: PlanOptions):
        self.conn = conn
        self.snapshot = snapshot
        self.options = options
        self.deadline = time.monotonic() + options.budget_s
        self.pending_samples: list = []  # (capture, text, binding, sampled rows, timeout) for more_samples
        self.pending_searches: list = []  # (statement, capture, text, binding, plannable, samples) for search_values

    # -- one statement -------------------------------------------------------------
    def capture(self, statement: Statement) -> PlanCapture:
        started = time.monotonic()
        capture = self._capture(statement)
        if capture.plan and capture.workload_match is None and capture.method in ("analyze", "analyze-rolled-back"):
            capture.workload_match = compare(capture.plan, statement)
        capture.duration_ms = round((time.monotonic() - started) * 1000, 3)
        return capture

    def _capture(self, statement: Statement) -> PlanCapture:
        query = statement.query
        kind = statement_kind(query)

        def skipped(reason):
            return PlanCapture(statement.queryid, "skipped", query_text=query, skipped_reason=reason)

        if self.conn.broken or self.conn.closed:
            return skipped("the connection to the server was lost earlier")
        if kind == "invalid":
            return skipped("the text does not parse (truncated, or not SQL): nothing to explain")
        if kind == "other":
            return skipped("not a plannable statement (utility command)")
        remaining_ms = (self.deadline - time.monotonic()) * 1000
        logged = logged_statement(self.snapshot, statement)
        if logged is not None:
            from_log = self._capture_logged(statement, kind, logged, remaining_ms)
            if from_log is not None:
                return from_log
        example = self._qualstats_example(statement, kind, remaining_ms)
        if example is not None:
            return example
        # What pg_stat_statements wrote is not always what the server can plan: typed
        # literals, constants kept in GROUP BY, placeholders with no type (queryaudit.plans.plannable).
        plannable = make_plannable(query, date_columns(self.snapshot.tables))
        text = plannable.text
        analyze, why_not = self._may_analyze(statement, kind, remaining_ms)
        try:
            binding = None
            samples: list = []
            if parameter_count(text):
                binding = infer_parameters(text, self.snapshot, parameter_types(self.conn, text), statement, plannable)
                # Only reads take sampled rows: a DELETE of a real row that others reference
                # fails on the foreign key and teaches nothing.
                samples = self._sample(text, binding, remaining_ms) if kind == "read" else []
            if binding is not None and not binding.complete:
                plan = explain_generic(self.conn, text, PLAIN_OPTIONS)
                return PlanCapture(
                    statement.queryid,
                    "generic",
                    plan=plan,
                    query_text=text,
                    parameter_source=f"generic plan: no realistic value for "
                    f"{', '.join(f'${s.number}' for s in binding.missing())} "
                    f"({binding.describe()})",
                    skipped_reason=why_not,
                )
            # A plain EXPLAIN executes nothing: it gets a short timeout of its own even
            # when the ANALYZE budget is spent.
            timeout_ms = int(min(self.options.statement_limit_ms, max(remaining_ms, PLAIN_TIMEOUT_MS)))
            source = binding.describe() if binding else "no parameters"
            if analyze:
                try:
                    plan = self._explain(text, binding, ANALYZE_OPTIONS, timeout_ms, read_write=kind == "dml")
                    method = "analyze-rolled-back" if kind == "dml" else "analyze"
                    if binding is not None:
                        self._record_generic(statement.queryid, text)
                    capture = self._done(statement, method, plan, text, binding, source, None)
                    if kind == "read" and binding is not None and self._first_match(statement, capture, binding):
                        # Unlike the workload: its values are searched once every statement has a first plan.
                        self.pending_searches.append((statement, capture, text, binding, plannable, samples))
                    if samples and kind == "read":
                        # Other rows are tried after every statement has its first plan.
                        self.pending_samples.append((capture, text, binding, samples, timeout_ms))
                    return capture
                except psycopg.errors.QueryCanceled as exc:
                    why_not = (
                        f"EXPLAIN ANALYZE exceeded the per-statement limit of {timeout_ms} ms "
                        f"({_first_line(exc)}); plain EXPLAIN instead"
                    )
            plan = self._explain(text, binding, PLAIN_OPTIONS, timeout_ms)
            return self._done(statement, "explain", plan, text, binding, source, why_not)
        except psycopg.Error as exc:
            if self.conn.broken or self.conn.closed:
                return skipped(f"the connection to the server was lost ({_first_line(exc)})")
            return skipped(skip_reason(exc))

    # -- concrete text from the server log ---------------------------------------------
    def _capture_logged(self, statement: Statement, kind: str, logged, remaining_ms: float) -> PlanCapture | None:
        """EXPLAIN ANALYZE with the values of a logged execution; when the statement may not
        be executed (too slow for the budget, DML, volatile), the auto_explain plan the
        log holds stands in. None: nothing usable in the log, plan as usual."""
        analyze, why_not = self._may_analyze(statement, kind, remaining_ms)
        from_log = logged_plan(logged)
        if not analyze:
            if from_log is None:
                return None
            took = f", {logged.plan_duration_ms:.0f} ms" if logged.plan_duration_ms is not None else ""
            return PlanCapture(
                statement.queryid,
                "logged",
                plan=from_log,
                query_text=logged.query,
                parameter_source=f"auto_explain plan from the server log{took}",
                skipped_reason=f"{why_not}; the logged auto_explain plan stands in",
            )
        found = logged_values(logged)
        if found is None:
            return None
        text, values = found
        how = "bind values of a logged execution" if values else "the text of a logged execution"
        try:
            return self._analyze_concrete(
                statement, kind, text, values, remaining_ms, f"the server log: {how} (log_min_duration_statement)"
            )
        except psycopg.errors.QueryCanceled as exc:
            if from_log is None:
                return None
            return PlanCapture(
                statement.queryid,
                "logged",
                plan=from_log,
                query_text=logged.query,
                parameter_source="auto_explain plan from the server log",
                skipped_reason=f"EXPLAIN ANALYZE with the logged values was cancelled "
                f"({_first_line(exc)}); the logged auto_explain plan stands in",
            )

    def _analyze_concrete(
        self, statement: Statement, kind: str, text: str, values: list[str], remaining_ms: float, source: str
    ) -> PlanCapture | None:
        """EXPLAIN ANALYZE of a concrete text (or a text and its values). None when the
        server rejects it (the normalized text decides then); a timeout propagates."""
        timeout_ms = int(min(self.options.statement_limit_ms, remaining_ms))
        try:
            binding = None
            if values:
                types = parameter_types(self.conn, text)
                binding = Binding(
                    [
                        ParameterSlot(number=n, type=t, value=v, source=source)
                        for n, (t, v) in enumerate(zip(types, values, strict=False), 1)
                    ]
                )
            plan = self._explain(text, binding, ANALYZE_OPTIONS, timeout_ms, read_write=kind == "dml")
        except psycopg.errors.QueryCanceled:
            raise
        except psycopg.Error:
            if self.conn.broken:
                raise
            return None  # e.g. the text names a table since dropped
        return PlanCapture(
            statement.queryid,
            "analyze-rolled-back" if kind == "dml" else "analyze",
            plan=plan,
            query_text=render_query(text, binding) if binding else text,
            parameters=values,
            parameter_source=source,
        )

    def _qualstats_example(self, statement: Statement, kind: str, remaining_ms: float) -> PlanCapture | None:
        """pg_qualstats keeps an example of each statement with its constants
        (pg_qualstats_example_query, 2.0+): real values, the next best thing to the log."""
        if (
            "pg_qualstats" not in self.snapshot.server.extensions
            or kind != "read"
            or not self._may_analyze(statement, kind, remaining_ms)[0]
        ):
            return None
        try:
            with self.conn.transaction(force_rollback=True):
                text = scalar(self.conn, "SELECT pg_qualstats_example_query(%s::bigint)", (int(statement.queryid),))
        except (psycopg.Error, ValueError):
            if self.conn.broken:
                raise
            return None
        if not text or statement_kind(text) != "read" or parameter_count(text):
            return None
        try:
            return self._analyze_concrete(
                statement,
                kind,
                text,
                [],
                remaining_ms,
                "pg_qualstats: an execution's constants (pg_qualstats_example_query)",
            )
        except psycopg.errors.QueryCanceled:
            return None

    # -- values from sampled rows --------------------------------------------------
    def _sample(self, text: str, binding: Binding, remaining_ms: float) -> list[tuple[RowSample, list[tuple]]]:
        """Fill the binding from real rows (queryaudit.plans.samples): from the statement's join
        when its placeholders span joined tables, else table by table. A table whose
        sample fails keeps its pg_stats values, and the reason goes into the slot."""
        if remaining_ms <= 0:
            return []
        timeout_ms = int(min(SAMPLE_TIMEOUT_MS, remaining_ms))
        try:
            joined = join_request(text, binding)
            requests = sample_requests(binding)
        except Exception:  # a parse tree this code does not know: pg_stats values stand
            return []
        if joined is not None:
            try:
                rows = self._sample_rows(joined, min(timeout_ms, JOIN_SAMPLE_TIMEOUT_MS), exact_only=True)
            except psycopg.Error:
                if self.conn.broken:
                    raise
                rows = []  # too slow or not printable as SQL: table by table instead
            if apply_rows(joined, rows):
                return [(joined, rows)]
        taken = []
        for request in requests:
            try:
                rows = self._sample_rows(request, timeout_ms)
            except psycopg.Error as exc:
                if self.conn.broken:
                    raise
                for slots in request.slots:
                    for slot in slots:
                        if slot.value is None:
                            slot.problem = f"sampling {request.table} failed ({_first_line(exc)})"
                continue
            if apply_rows(request, rows):
                taken.append((request, rows))
        return taken

    def _sample_rows(self, request: RowSample, timeout_ms: int, exact_only: bool = False) -> list[tuple]:
        """A page sample first, then (a small table's sample may come back empty) the first rows."""
        rows: list[tuple] = []
        for exact in (True,) if exact_only else (False, True):
            with self.conn.transaction(force_rollback=True):
                set_local(self.conn, "statement_timeout", f"{timeout_ms}ms")  # one pgss entry, whatever the value
                # nested: pg_stat_statements gains no entry per table sampled
                rows = read_nested(self.conn, request.sql(self.snapshot, exact=exact), len(request.outputs))
            if rows:
                break
        return rows

    def more_samples(self) -> None:
        """A second pass, once every statement has its plan: EXPLAIN ANALYZE again with
        other sampled rows, cheapest statements first, while that costs little of what
        is left of the budget; each capture keeps the execution times (its own first)."""
        for capture, text, binding, samples, timeout_ms in sorted(
            self.pending_samples, key=lambda p: p[0].plan.get("Execution Time") or 0.0
        ):
            times = [float(capture.plan.get("Execution Time") or 0.0)]
            try:
                for pick in range(1, SAMPLES):
                    remaining_ms = (self.deadline - time.monotonic()) * 1000
                    if times[0] > remaining_ms * SAMPLE_SHARE or self.conn.broken:
                        break
                    if not all(apply_rows(request, rows, pick) for request, rows in samples):
                        break
                    again = self._explain(text, binding, ANALYZE_OPTIONS, min(timeout_ms, int(remaining_ms)))
                    times.append(round(float(again.get("Execution Time") or 0.0), 3))
            except psycopg.Error:
                if self.conn.broken:
                    return
            if len(times) > 1:
                capture.sample_ms = [round(times[0], 3), *times[1:]]

    # -- values that reproduce the workload ---------------------------------------------
    @staticmethod
    def _first_match(statement: Statement, capture: PlanCapture, binding: Binding) -> bool:
        """The first sample against the workload (queryaudit.plans.workload); True when unlike it."""
        first = ParameterSet(
            values=list(capture.parameters),
            sources=[s.source or "" for s in binding.slots],
            match=compare(capture.plan, statement),
            chosen=True,
        )
        capture.workload_match, capture.parameter_sets = first.match, [first]
        weigh(capture.parameter_sets)
        return first.match.verdict == "unlike" and per_call(statement) is not None

    def search_values(self) -> None:
        """A pass once every statement has its first plan, most total time first: the values
        of each statement whose first sample is unlike the workload are searched. A statement
        whose search kept other values gets no more sampled rows (they would replace them)."""
        replaced = set()
        for statement, capture, text, binding, plannable, samples in self.pending_searches:
            if self.deadline - time.monotonic() <= 0 or self.conn.broken:
                break
            started = time.monotonic()
            try:
                if self._reproduce(statement, capture, text, binding, plannable, samples):
                    replaced.add(id(capture))
            except psycopg.Error:
                if self.conn.broken:
                    return
            capture.duration_ms = round((capture.duration_ms or 0.0) + (time.monotonic() - started) * 1000, 3)
        self.pending_samples = [p for p in self.pending_samples if id(p[0]) not in replaced]

    def _reproduce(
        self, statement: Statement, capture: PlanCapture, text: str, binding: Binding, plannable, samples: list
    ) -> bool:
        """Search the candidate values (queryaudit.plans.search) for the set closest to the
        workload: ranked by the planner's row estimate (within RANK_SHARE of the budget left),
        the closest EXPLAIN ANALYZEd within the budget. The capture keeps the closest plan and
        its values; True when that is not the first sample."""
        first = capture.parameter_sets[0]
        workload = per_call(statement)
        rank_until = time.monotonic() + max(0.5, (self.deadline - time.monotonic()) * RANK_SHARE)
        types = [s.type for s in binding.slots]
        sets = candidate_sets(
            binding,
            self.snapshot,
            plannable.bind if plannable else None,
            self._other_rows(binding, samples),
            self._qualstats_constants(statement),
        )
        ranked = []
        for candidate in sets:
            if time.monotonic() > min(rank_until, self.deadline):
                break
            try:
                estimate = explain_rolled_back(
                    self.conn, text, "FORMAT JSON", candidate.values, types, self._timeout_setup(ESTIMATE_TIMEOUT_MS)
                )
            except psycopg.Error:
                if self.conn.broken:
                    raise
                continue  # a value the column's type refuses: not a candidate
            rows = float(estimate.get("Plan", {}).get("Plan Rows") or 0)
            ranked.append((estimate_distance(rows, workload["rows"]), candidate))
        ranked.sort(key=lambda pair: pair[0])
        per_run_ms = max(float(capture.plan.get("Execution Time") or 0.0), statement.mean_exec_time_ms)
        tried, plans = [], {}
        for _, candidate in ranked[:SEARCH_RUNS]:
            remaining_ms = (self.deadline - time.monotonic()) * 1000
            if per_run_ms > remaining_ms * SEARCH_SHARE:
                break
            try:
                plan = explain_rolled_back(
                    self.conn,
                    text,
                    ANALYZE_OPTIONS,
                    candidate.values,
                    types,
                    self._timeout_setup(int(min(self.options.statement_limit_ms, remaining_ms))),
                )
            except psycopg.Error:
                if self.conn.broken:
                    raise
                continue
            found = ParameterSet(values=candidate.values, sources=candidate.sources, match=compare(plan, statement))
            tried.append(found)
            plans[id(found)] = plan
            if found.match.verdict == "representative":
                break
        best = min([first, *tried], key=lambda p: p.match.distance)
        capture.parameter_sets = sorted([first, *tried], key=lambda p: p.match.distance)
        how = (
            f"first sample unlike the workload ({'; '.join(first.match.reasons)}): {len(ranked)} candidate "
            f"set{'s' if len(ranked) != 1 else ''} ranked by the planner's row estimate, {len(tried)} run with "
            "EXPLAIN ANALYZE"
        )
        if best is first:
            capture.search_note = how + "; none came closer, the first sample stands"
            weigh(capture.parameter_sets)
            return False
        first.chosen, best.chosen = False, True
        weigh(capture.parameter_sets)
        bound = Binding(
            [
                ParameterSlot(
                    number=s.number,
                    type=s.type,
                    table=s.table,
                    column=s.column,
                    operator=s.operator,
                    value=v,
                    source=src,
                )
                for s, v, src in zip(binding.slots, best.values, best.sources, strict=True)
            ]
        )
        capture.plan = plans[id(best)]
        capture.parameters, capture.query_text = list(best.values), render_query(text, bound)
        capture.parameter_source = bound.describe()
        capture.first_sample, capture.workload_match = first, best.match
        changed = [
            f"${s.number} = {s.value} ({s.source})"
            for s, old in zip(bound.slots, first.values, strict=True)
            if s.value != old
        ]
        capture.search_note = (
            f"{how}; kept {', '.join(changed)}: "
            f"{best.match.verdict}, rows x{best.match.rows_ratio:g} of the workload per call"
        )
        return True

    def _qualstats_constants(self, statement: Statement) -> dict[tuple[str, str], list[tuple[str, str]]]:
        """The constants pg_qualstats saw this statement compare with each column, most
        frequent first (`'failed'::text` -> failed): values the workload itself ran."""
        if "pg_qualstats" not in self.snapshot.server.extensions:
            return {}
        try:
            with self.conn.transaction(force_rollback=True):
                rows = self.conn.execute(
                    "SELECT n.nspname || '.' || c.relname, a.attname, q.constvalue, sum(q.occurences) "
                    "FROM pg_qualstats() q JOIN pg_class c ON c.oid = q.lrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "JOIN pg_attribute a ON a.attrelid = q.lrelid AND a.attnum = q.lattnum "
                    "WHERE q.queryid = %s AND q.constvalue IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 4 DESC LIMIT 40",
                    (int(statement.queryid),),
                ).fetchall()
        except (psycopg.Error, ValueError):
            if self.conn.broken:
                raise
            return {}
        out: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for table, column, constant, seen in rows:
            value = qualstats_constant(constant)
            if value is not None:
                out.setdefault((table, column), []).append(
                    (value, f"pg_qualstats: a constant the workload ran ({int(seen):,} times)")
                )
        return out

    def _timeout_setup(self, timeout_ms: int) -> list:
        return [(SET_LOCAL_SQL, ("statement_timeout", f"{max(1, timeout_ms)}ms"))]

    @staticmethod
    def _other_rows(binding: Binding, samples: list) -> list[list[str | None]]:
        """The value lists other sampled rows give (the binding is left as it was)."""
        kept = [(s.value, s.source) for s in binding.slots]
        out = []
        try:
            for pick in range(1, SAMPLES):
                if samples and all(apply_rows(request, rows, pick) for request, rows in samples):
                    out.append([s.value for s in binding.slots])
        finally:
            for s, (value, source) in zip(binding.slots, kept, strict=True):
                s.value, s.source = value, source
        return out

    def _record_generic(self, queryid: str, query: str) -> None:
        """The generic plan's shape and scan estimates beside the analyzed custom plan:
        a prepared statement reused by the application runs the generic one after five
        executions when it looks no costlier (plan_cache_mode = auto). Kept small: node
        types, and the estimated rows of each scan by alias."""
        try:
            generic = explain_generic(self.conn, query, PLAIN_OPTIONS)
        except psycopg.Error:
            return  # the analyzed plan stands on its own
        summary = generic_summary(generic)
        self.snapshot.extras.setdefault("generic_plans", {})[queryid] = summary

    def _done(self, statement, method, plan, query, binding, source, why_not) -> PlanCapture:
        return PlanCapture(
            statement.queryid,
            method,
            plan=plan,
            query_text=render_query(query, binding) if binding else query,
            parameters=[s.value for s in binding.slots] if binding else [],
            parameter_source=source,
            skipped_reason=why_not,
        )

    def _may_analyze(self, statement: Statement, kind: str, remaining_ms: float) -> tuple[bool, str | None]:
        if kind == "dml":
            if not self.options.analyze_dml:
                return False, "writes data: plain EXPLAIN (EXPLAIN ANALYZE of DML only with --analyze-dml)"
            if self.snapshot.server.in_recovery:
                return False, "--analyze-dml refused: the server is a hot standby (pg_is_in_recovery())"
        volatile = self._volatile_functions(statement.query)
        if volatile:
            return False, (
                f"calls volatile function{'s' if len(volatile) > 1 else ''} {', '.join(volatile)} "
                "(may act beyond the statement): plain EXPLAIN"
            )
        if statement.mean_exec_time_ms > self.options.statement_limit_ms:
            return False, (
                f"mean time {statement.mean_exec_time_ms:.0f} ms exceeds the per-statement limit "
                f"of {self.options.statement_limit_ms} ms: plain EXPLAIN"
            )
        if remaining_ms <= 0:
            return False, (
                f"the EXPLAIN ANALYZE budget ({self.options.budget_s:g} s, --explain-budget) was used "
                "up by earlier statements: plain EXPLAIN"
            )
        if statement.mean_exec_time_ms > remaining_ms:
            # Executing it would overrun the budget: spend what is left on the statements
            # that fit, plan this one without running it.
            return False, (
                f"mean time {statement.mean_exec_time_ms:.0f} ms exceeds what is left of the "
                f"EXPLAIN ANALYZE budget ({remaining_ms:.0f} ms; --explain-budget): plain EXPLAIN"
            )
        return True, None

    def _volatile_functions(self, query: str) -> list[str]:
        called = [f for f in functions_called(query) if f.lower() not in HARMLESS_VOLATILE]
        if not called:
            return []
        rows = named_rows(
            self.conn,
            "SELECT DISTINCT proname FROM pg_proc WHERE proname = ANY(%s) AND provolatile = 'v' ORDER BY 1",
            (called,),
        )
        return [r["proname"] for r in rows]

    def _explain(
        self, query: str, binding: Binding | None, options: str, timeout_ms: int, read_write: bool = False
    ) -> dict:
        """EXPLAIN in a transaction that is always rolled back, under its own statement_timeout.

        With values, the statement is PREPAREd and EXECUTEd: the values travel as typed
        literals and the text itself is never rewritten. PREPARE is not transactional,
        so the prepared statement is deallocated after the rollback, whatever happened."""
        setup = [("SET TRANSACTION READ WRITE", None)] if read_write else []  # only this rolled-back one writes
        setup.append((SET_LOCAL_SQL, ("statement_timeout", f"{timeout_ms}ms")))
        slots = binding.slots if binding else []
        return explain_rolled_back(self.conn, query, options, [s.value for s in slots], [s.type for s in slots], setup)

    # -- statements from a file ----------------------------------------------------
    def file_statement(self, number: int, text: str) -> Statement:
        """A concrete statement from --queries: the workload's own entry when its query
        identifier (14+, EXPLAIN VERBOSE, the queryid pg_stat_statements gives it) matches
        one, else a new entry under that identifier (or, without one, a number derived
        from the text)."""
        queryid = None
        if statement_kind(text) in ("read", "dml"):
            try:
                with self.conn.transaction(force_rollback=True):
                    explained = scalar(self.conn, sql.SQL("EXPLAIN (VERBOSE, FORMAT JSON) ") + sql.SQL(text))
                found = (explained[0] if isinstance(explained, list) else explained).get("Query Identifier")
                queryid = str(found) if found not in (None, 0) else None
            except psycopg.Error:
                if self.conn.broken:
                    raise
        existing = self.snapshot.statement(queryid) if queryid else None
        if existing is None:
            # Drivers send values as parameters ($1), a file has literals: their queryids
            # differ, their fingerprints (pglast: constants and parameters alike) do not.
            print_ = fingerprint(text)
            same = [s for s in self.snapshot.statements if print_ and fingerprint(s.query) == print_]
            existing = max(same, key=lambda s: s.total_exec_time_ms, default=None)
        if existing is not None:
            return Statement(
                queryid=existing.queryid,
                query=text,
                calls=existing.calls,
                total_exec_time_ms=existing.total_exec_time_ms,
                mean_exec_time_ms=existing.mean_exec_time_ms,
                rows=existing.rows,
            )
        if queryid is None:
            queryid = str(-int(hashlib.sha1(text.encode()).hexdigest()[:15], 16))
        return Statement(queryid=queryid, query=text, calls=0, total_exec_time_ms=0.0, mean_exec_time_ms=0.0, rows=0)


def qualstats_constant(text: str) -> str | None:
    """pg_qualstats prints a constant as SQL (`'failed'::text`, `2::integer`): the bare value."""
    m = re.fullmatch(r"(?s)\s*(?:'((?:[^']|'')*)'|([^':]+?))(?:::[\w .\"\[\]()]+)?\s*", text or "")
    if m is None:
        return None
    return m.group(1).replace("''", "'") if m.group(1) is not None else m.group(2).strip()


def generic_summary(explain: dict) -> dict:
    plan = build(explain)
    return {
        "node_types": [n.node_type for n in plan.nodes],
        "total_cost": plan.root.total_cost,
        "scans": [
            {
                "relation": n.raw.get("Relation Name"),
                "alias": n.alias,
                "node": n.label,
                "estimated_rows": n.estimated_rows,
            }
            for n in plan.nodes
            if n.raw.get("Relation Name")
        ],
    }


def capture_plans(conn: psycopg.Connection, snapshot: Snapshot, options: PlanOptions) -> None:
    capturer = PlanCapturer(conn, snapshot, options)
    captures: dict[str, PlanCapture] = {}
    if options.queries_file is not None:
        # Concrete statements first: their plans (real values) replace the
        # workload's generic ones, and they are the user's explicit request.
        for number, text in enumerate(read_queries_file(options.queries_file), 1):
            statement = capturer.file_statement(number, text)
            capture = capturer.capture(statement)
            capture.parameter_source = f"--queries {Path(options.queries_file).name} #{number}"
            in_workload = snapshot.statement(statement.queryid) is not None
            if not in_workload:
                snapshot.statements.append(_measured(statement, capture))
            captures[statement.queryid] = capture
            snapshot.extras.setdefault("queries_file", []).append(
                {
                    "number": number,
                    "queryid": statement.queryid,
                    "in_workload": in_workload,
                    "file": str(options.queries_file),
                }
            )
    for statement in top_statements(snapshot, options.top):
        if statement.queryid in captures:
            continue
        captures[statement.queryid] = capturer.capture(statement)
    capturer.search_values()
    capturer.more_samples()
    snapshot.plans = [c for c in snapshot.plans if c.queryid not in captures] + list(captures.values())


def _measured(statement: Statement, capture: PlanCapture) -> Statement:
    """A --queries statement not in the workload, with the one execution measured by
    EXPLAIN ANALYZE (when there was one) as its time."""
    if capture.plan and capture.plan.get("Execution Time") is not None:
        ms = float(capture.plan["Execution Time"])
        rows = capture.plan.get("Plan", {}).get("Actual Rows") or 0
        statement.calls, statement.total_exec_time_ms, statement.mean_exec_time_ms = 1, ms, ms
        statement.rows = int(float(rows))
    return statement


def plan_stage(options: PlanOptions):
    """The (name, fn) entry for CollectOptions.stages."""
    return ("plans", lambda conn, snapshot: capture_plans(conn, snapshot, options))
