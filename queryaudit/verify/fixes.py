"""Each kind of fix tried on its statement and timed: work_mem (and hash_mem_multiplier),
jit, the keyset rewrite, the N+1 batch, statistics (--verify-real only). One method per
kind, each returning a FixMeasurement; stage.py decides the order and the budget."""

from __future__ import annotations

from statistics import median

import psycopg
from psycopg import sql

from queryaudit.checks.row_estimate_error import HIGHER_TARGET
from queryaudit.connect import named_rows
from queryaudit.findings import Finding
from queryaudit.plans.explain import parameter_count, parameter_types
from queryaudit.plans.params import infer_parameters
from queryaudit.plans.workload import temp_kb_per_call
from queryaudit.snapshot import Snapshot
from queryaudit.sql import quote_ident
from queryaudit.verify import keyset, logic
from queryaudit.verify.measure import Runner
from queryaudit.verify.model import FixMeasurement
from queryaudit.verify.real import measure_statistics
from queryaudit.work_mem import block_size, scoped_work_mem_sql

RUNS = 3  # timed runs per side (after one warm-up each)
MAX_BATCH_KEYS = 100  # keys of one N+1 batch measured
STILL_MISESTIMATED = 10.0  # a scan's q-error after a statistics fix that calls for the next candidate


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class Verifier:
    def __init__(self, runner: Runner, snapshot: Snapshot, options, real_conn=None):
        self.runner, self.snapshot, self.options, self.real_conn = runner, snapshot, options, real_conn
        self.settings = self._settings()

    def _settings(self) -> dict:
        rows = named_rows(
            self.runner.conn,
            "SELECT name, setting, unit FROM pg_settings WHERE name IN "
            "('work_mem', 'shared_buffers', 'hash_mem_multiplier')",
        )
        out = {}
        for r in rows:
            out[r["name"]] = (
                float(r["setting"]) if r["name"] == "hash_mem_multiplier" else logic.to_kb(r["setting"], r["unit"])
            )
        out.setdefault("hash_mem_multiplier", 1.0)  # before 13 a hash gets work_mem, no more
        out["names"] = tuple(r["name"] for r in rows)
        return out

    # -- the statement as captured -------------------------------------------------
    def _bound(self, queryid: str) -> tuple[str, list[str] | None, list[str] | None] | None:
        """The statement with the captured plan's values, when the plan was EXPLAIN ANALYZEd."""
        capture = self.snapshot.plan_for(queryid)
        statement = self.snapshot.statement(queryid)
        if capture is None or capture.method != "analyze" or statement is None:
            return None
        query = statement.query
        if not parameter_count(query):
            return query, None, None
        if len(capture.parameters) < parameter_count(query) or any(v is None for v in capture.parameters):
            return None
        return query, list(capture.parameters), parameter_types(self.runner.conn, query)

    def _runs(self, per_run_ms: float, extra: int = 0) -> int:
        """Timed runs per side that fit what is left of the budget (0: none fits)."""
        fits = (self.runner.remaining_ms() / max(per_run_ms * 1.2, 1.0) - extra - 2) / 2
        return max(0, min(self.options.runs, int(fits)))

    def _timed(self, m: FixMeasurement, query, values, types, before_settings, after, runs: int) -> None:
        before_plans, after_plans = self.runner.interleaved(
            lambda: self.runner.explain(query, values, types, before_settings), after, runs
        )
        m.before_ms = [round(logic.execution_ms(p), 3) for p in before_plans]
        m.after_ms = [round(logic.execution_ms(p), 3) for p in after_plans]
        m.before = {"ms": round(median(m.before_ms), 3), **logic.buffers(before_plans[-1])}
        m.after = {"ms": round(median(m.after_ms), 3), **logic.buffers(after_plans[-1])}
        m.outcome, _ = logic.verdict(m.before_ms, m.after_ms)

    # -- work_mem ----------------------------------------------------------------
    def work_mem(self, queryid: str, found: list[Finding]) -> FixMeasurement:
        lead = max(found, key=lambda f: f.saving_share)
        m = FixMeasurement(finding_id=lead.id, check=lead.check, queryid=queryid, kind="work_mem")
        bound = self._bound(queryid)
        if bound is None:
            m.method, m.detail = "none", "no EXPLAIN ANALYZE with values was captured for this statement"
            return m
        query, values, types = bound
        hmm = self.settings["hash_mem_multiplier"]
        current, cap = self.settings["work_mem"], logic.work_mem_cap_kb(self.settings["shared_buffers"])
        captured = self.snapshot.plan_for(queryid).plan
        per_run = logic.execution_ms(captured)
        reported = 0.0
        for f in found:
            if f.check == "disk-sort":
                reported = max(reported, float(f.evidence.get("disk_kb") or 0))
            else:
                reported = max(
                    reported, float(f.evidence.get("peak_memory_kb") or 0) * float(f.evidence.get("batches") or 1) / hmm
                )
        # The workload's own spill (temp blocks per call, pg_stat_statements) sets the first
        # size when it is larger than the sample's: the sample may select less than it runs.
        statement = self.snapshot.statement(queryid)
        workload_kb = temp_kb_per_call(statement, block_size(self.snapshot)) if statement else 0.0
        reported = max(reported, workload_kb)
        value = logic.first_work_mem_kb(reported, current, cap)
        fitted = None
        while value is not None:
            plan = self.runner.explain(query, values, types, {"work_mem": f"{int(value)}kB"})
            disk, need = logic.spills(plan, hmm)
            m.steps.append(
                {
                    "work_mem": logic.format_mb(logic.round_up_mb(value)),
                    "spilled_kb": round(disk),
                    "in_memory_kb": round(need),
                    "ms": round(logic.execution_ms(plan), 3),
                }
            )
            if disk == 0:
                fitted = (value, need)
                break
            value = logic.next_work_mem_kb(value, cap)
        if fitted is None:
            m.outcome = "not-removed"
            m.detail = (
                f"still spills at work_mem = {logic.format_mb(logic.round_up_mb(cap))}, the bound "
                "(a quarter of shared_buffers, at least 64MB, at most 1GB): more memory is not the fix; "
                f"{self._values_used(queryid)}"
            )
            return m
        proposed = logic.proposed_work_mem_kb(fitted[1], fitted[0])
        scaled = self._scale_to_workload(queryid, proposed, cap)
        if scaled is not None:
            fitted, proposed = (scaled, fitted[1] * scaled / proposed), scaled
        if proposed < fitted[0]:
            plan = self.runner.explain(query, values, types, {"work_mem": f"{int(proposed)}kB"})
            disk, need = logic.spills(plan, hmm)
            m.steps.append(
                {
                    "work_mem": logic.format_mb(logic.round_up_mb(proposed)),
                    "spilled_kb": round(disk),
                    "in_memory_kb": round(need),
                    "ms": round(logic.execution_ms(plan), 3),
                }
            )
            if disk > 0:
                proposed = fitted[0]
        setting = logic.format_mb(logic.round_up_mb(proposed))
        m.fix = f"SET LOCAL work_mem = '{setting}'"
        m.fix_sql = scoped_work_mem_sql(setting)
        if all(f.check == "hash-spill" for f in found) and "hash_mem_multiplier" in self.settings.get("names", ()):
            multiplier = logic.hash_mem_multiplier_for(fitted[1] * hmm, current)
            if multiplier is not None:
                plan = self.runner.explain(query, values, types, {"hash_mem_multiplier": str(multiplier)})
                disk, need = logic.spills(plan, multiplier)
                m.steps.append(
                    {
                        "hash_mem_multiplier": multiplier,
                        "spilled_kb": round(disk),
                        "in_memory_kb": round(need * multiplier),
                        "ms": round(logic.execution_ms(plan), 3),
                    }
                )
                if disk == 0:  # the same memory for hashes only, sorts keep the current work_mem
                    m.fix_sql += (
                        f"\n-- or, for hashes only (work_mem unchanged), checked to run in one batch:\n"
                        f"-- SET LOCAL hash_mem_multiplier = {multiplier};"
                    )
        runs = self._runs(per_run)
        if runs == 0:
            m.outcome, m.detail = (
                "inconclusive",
                (f"{m.fix} removes the spill; no budget left to time it; {self._values_used(queryid)}"),
            )
            return m
        self._timed(
            m, query, values, types, {}, lambda: self.runner.explain(query, values, types, {"work_mem": setting}), runs
        )
        m.detail = (
            f"EXPLAIN ANALYZE with {m.fix}: the work fits in memory "
            f"({fitted[1]:,.0f} kB); {runs} interleaved runs each side; {self._values_used(queryid)}"
        )
        if scaled is not None:
            m.detail += "; the size that fit the sample scaled by the workload's temp blocks per call / the sample's"
        return m

    def _values_used(self, queryid: str) -> str:
        """Which values the measurement ran with, and how close they are to the workload."""
        capture = self.snapshot.plan_for(queryid)
        values = ", ".join(f"${n} = {v}" for n, v in enumerate(capture.parameters, 1)) if capture else ""
        match = capture.workload_match if capture else None
        if match is None or match.verdict == "unknown":
            return f"values {values or '(none)'}"
        return (
            f"values {values or '(none)'} ({match.verdict}: rows x{match.rows_ratio:g}, "
            f"temp x{match.temp_ratio or 1:g} of the workload per call)"
        )

    def _scale_to_workload(self, queryid: str, proposed_kb: float, cap_kb: float) -> float | None:
        """When the sample spilled less than the workload does per call (temp blocks,
        pg_stat_statements), the size that fits the sample is scaled by the ratio: the
        workload's own spill would still go to disk at the sample's size."""
        capture = self.snapshot.plan_for(queryid)
        match = capture.workload_match if capture else None
        if match is None or not match.plan_temp_blocks or match.workload_temp_blocks <= 2 * match.plan_temp_blocks:
            return None
        return min(cap_kb, logic.round_up_mb(proposed_kb * match.workload_temp_blocks / match.plan_temp_blocks) * 1024)

    # -- jit -----------------------------------------------------------------------
    def jit(self, queryid: str, finding: Finding) -> FixMeasurement:
        m = FixMeasurement(
            finding_id=finding.id, check=finding.check, queryid=queryid, kind="jit", fix="SET LOCAL jit = off"
        )
        bound = self._bound(queryid)
        if bound is None:
            m.method, m.detail = "none", "no EXPLAIN ANALYZE with values was captured for this statement"
            return m
        query, values, types = bound
        runs = self._runs(logic.execution_ms(self.snapshot.plan_for(queryid).plan))
        if runs == 0:
            m.method, m.detail = "none", "no budget left to time it"
            return m
        self._timed(
            m, query, values, types, {}, lambda: self.runner.explain(query, values, types, {"jit": "off"}), runs
        )
        m.detail = f"EXPLAIN ANALYZE with and without {m.fix}; {runs} interleaved runs each side"
        return m

    # -- large OFFSET ----------------------------------------------------------------
    def offset(self, queryid: str, finding: Finding) -> FixMeasurement:
        m = FixMeasurement(finding_id=finding.id, check=finding.check, queryid=queryid, kind="keyset")
        table = self.snapshot.table(finding.table) if finding.table else None
        unique = [
            i.columns
            for i in sorted(
                self.snapshot.indexes_of(table.qualified_name) if table else [], key=lambda i: not i.is_primary
            )
            if i.is_unique and i.is_valid and i.predicate is None and i.columns
        ]
        plan = bound = None
        # Plan capture binds a normalized `OFFSET $n` to 0 (the first page: pg_stat_statements
        # keeps no value), which says nothing of the pages this finding is about: an OFFSET
        # of 0 falls through to the OFFSET the check estimated from the rows skipped per call.
        # `source` is read after the loop: it names where the values that stood came from.
        for get, source in (  # noqa: B007
            (lambda: self._bound(queryid), "the captured plan's values"),
            (lambda: self._offset_values(queryid, finding), "OFFSET estimated from pg_stat_statements"),
        ):
            found = get()
            if found is None:
                continue
            bound = query, values, types = found
            plan = keyset.plan(query, values or [], types or [], unique)
            if plan is None or plan.offset > 0:
                break
        if bound is None:
            m.method, m.detail = "none", "no values for this statement's parameters"
            return m
        if plan is None:
            m.method, m.detail = "none", "no keyset form: ORDER BY plain columns in one direction is needed"
            return m
        if plan.offset <= 0:
            m.method, m.detail = "none", "no OFFSET above 0 known for this statement: no page to seek past"
            return m
        row = self.runner.rows(keyset.last_key_query(plan))
        if not row:
            m.method, m.detail = "none", f"no row at offset {plan.offset}: nothing to seek past"
            return m
        n = len(plan.keys)
        last, key_types = list(row[0][:n]), list(row[0][n:])
        after_query = keyset.rewritten(plan, last, key_types)
        m.fix = plan.fix_text
        first = self.runner.explain(query, values, types)
        runs = self._runs(logic.execution_ms(first))
        if runs == 0:
            m.method, m.detail = "none", "no budget left to time it"
            return m
        self._timed(m, query, values, types, {}, lambda: self.runner.explain(after_query), runs)
        m.detail = (
            f"OFFSET {plan.offset} ({source}) against the keyset form from the real last key "
            f"({', '.join(plan.keys)} = {', '.join(map(str, last))}); {runs} interleaved runs each side"
        )
        m.steps.append({"rewrite": after_query})
        return m

    def _offset_values(self, queryid: str, finding: Finding):
        """Values for a statement whose plan capture found none for its OFFSET: the other
        parameters drawn as plan capture draws them, the OFFSET from the rows it skips per
        call (estimated from pg_stat_statements by the check)."""

        statement = self.snapshot.statement(queryid)
        skipped = finding.evidence.get("rows_skipped_per_call")
        if statement is None or not skipped or not parameter_count(statement.query):
            return None
        types = parameter_types(self.runner.conn, statement.query)
        binding = infer_parameters(statement.query, self.snapshot, types, statement)
        for slot in binding.slots:
            if slot.operator == "offset":  # drawn as OFFSET 0 (the first page): the estimate instead
                slot.value = str(int(skipped))
        if not binding.complete:
            return None
        return statement.query, [s.value for s in binding.slots], [s.type for s in binding.slots]

    # -- N+1 -----------------------------------------------------------------------------
    def batch(self, finding: Finding) -> FixMeasurement:
        child = finding.evidence.get("child") or {}
        m = FixMeasurement(
            finding_id=finding.id,
            check=finding.check,
            queryid=str(child.get("queryid")),
            kind="batch",
            fix=finding.evidence.get("batched_query"),
        )
        query, batched = child.get("query"), finding.evidence.get("batched_query")
        if not query or not batched or parameter_count(query) != 1 or parameter_count(batched) != 1:
            m.method, m.detail = "none", "only a lookup by one parameter is measured against its batch"
            return m
        column = finding.columns[0]
        per_parent = finding.evidence.get("calls_per_parent_call") or 10
        n = max(2, min(MAX_BATCH_KEYS, round(per_parent)))
        keys, source = self._batch_keys(finding, column, n)
        if not keys:
            m.method, m.detail = "none", "no keys to look up"
            return m
        child_type = parameter_types(self.runner.conn, query)[0]
        batch_type = parameter_types(self.runner.conn, batched)[0]
        array = "{" + ",".join('"' + k.replace("\\", "\\\\").replace('"', '\\"') + '"' for k in keys) + "}"
        singles, batches = [], []
        for _ in range(max(1, self.options.runs)):
            plans = [self.runner.explain(query, [k], [child_type]) for k in keys]
            singles.append(round(sum(logic.execution_ms(p, with_planning=True) for p in plans), 3))
            one = self.runner.explain(batched, [array], [batch_type])
            batches.append(round(logic.execution_ms(one, with_planning=True), 3))
        m.before_ms, m.after_ms = singles, batches
        m.before = {"ms": round(median(singles), 3), "round_trips": len(keys)}
        m.after = {"ms": round(median(batches), 3), "round_trips": 1}
        m.outcome, _ = logic.verdict(singles, batches)
        m.detail = (
            f"{len(keys)} single lookups (keys {source}) against one {column} = ANY($1): server time "
            "(planning + execution) summed per side, "
            f"{len(singles)} rounds"
        )
        return m

    def _batch_keys(self, finding: Finding, column: str, n: int) -> tuple[list[str], str]:
        parent = (finding.evidence.get("parent") or {}).get("queryid")
        link = finding.evidence.get("linked_by") or {}
        capture = self.snapshot.plan_for(parent) if parent else None
        if (
            capture
            and capture.method == "analyze"
            and capture.query_text
            and link.get("parent_column")
            and not parameter_count(capture.query_text)
        ):
            try:
                keys = self.runner.values(
                    sql.SQL("SELECT DISTINCT p.{}::text FROM ({}) AS p LIMIT {}").format(
                        sql.Identifier(link["parent_column"]), sql.SQL(capture.query_text), sql.Literal(n)
                    )
                )
                keys = [k for k in keys if k is not None]
                if keys:
                    return keys, "returned by the parent statement"
            except psycopg.Error:
                pass
        schema, _, name = (finding.table or "").rpartition(".")
        keys = self.runner.values(
            sql.SQL("SELECT {}::text FROM {} WHERE {} IS NOT NULL LIMIT {}").format(
                sql.Identifier(column), sql.Identifier(schema or "public", name), sql.Identifier(column), sql.Literal(n)
            )
        )
        return keys, f"read from {finding.table}"

    # -- statistics (CREATE STATISTICS, ANALYZE) ---------------------------------------
    def statistics(self, queryid: str, finding: Finding) -> FixMeasurement:
        m = FixMeasurement(
            finding_id=finding.id, check=finding.check, queryid=queryid, kind="statistics", fix=finding.fix_sql
        )
        if self.real_conn is None:
            m.method, m.outcome = "none", "unverified"
            m.detail = (
                "CREATE STATISTICS and ANALYZE write the catalog: not tried in the read-only audit session "
                "(nor possible on a replica); audit a scratch copy with --verify-real to measure it"
            )
            return m

        bound = self._bound(queryid)
        if bound is None:
            m.method, m.detail = "none", "no EXPLAIN ANALYZE with values was captured for this statement"
            return m
        # The misestimated scan, found again by its relation and alias (the plan may change shape).
        relation = finding.evidence.get("relation")
        scan = (relation, finding.evidence.get("alias")) if relation else None
        measure_statistics(self.real_conn, self.runner, m, *bound, finding.fix_sql, self.options.runs, scan)
        target_fix = self._statistics_target(finding)
        if scan is None or target_fix is None or (m.after.get("q_error") or 0) < STILL_MISESTIMATED:
            return m
        # ANALYZE alone left the estimate off: the next candidate is a larger sample of the
        # columns (a value the default sample misses), measured the same way.
        larger = FixMeasurement(
            finding_id=finding.id, check=finding.check, queryid=queryid, kind="statistics", fix=target_fix
        )
        measure_statistics(self.real_conn, self.runner, larger, *bound, target_fix, self.options.runs, scan)
        m.steps = [
            {"fix": finding.fix_sql, "q_error": m.after.get("q_error")},
            {"fix": target_fix, "q_error": larger.after.get("q_error")},
        ]
        if (larger.after.get("q_error") or STILL_MISESTIMATED) < m.after["q_error"]:
            larger.steps, larger.fix_sql = m.steps, target_fix
            return larger
        return m

    @staticmethod
    def _statistics_target(finding: Finding) -> str | None:
        """`ALTER TABLE t ALTER COLUMN c SET STATISTICS 1000; ANALYZE t;` for a finding whose
        fix is a plain ANALYZE of the misestimated columns' table."""

        fix = (finding.fix_sql or "").strip()
        if not fix.startswith("ANALYZE ") or "\n" in fix or not finding.columns:
            return None
        table = fix.removeprefix("ANALYZE ").rstrip(";")
        return (
            "".join(
                f"ALTER TABLE {table} ALTER COLUMN {quote_ident(c)} SET STATISTICS {HIGHER_TARGET};\n"
                for c in finding.columns
            )
            + f"ANALYZE {table};"
        )
