"""The planner's row estimate is off by a factor that shapes the plan, with its root cause.

## What it detects
Plan nodes of EXPLAIN ANALYZE plans whose q-error, max(estimated/actual, actual/estimated)
with both clamped to at least one row, is 10 or more, where the error starts (its
children estimate well) and where it matters: the node's subtree takes a meaningful
share of the statement's time, or the node is an input of a join, whose method and
order the planner chose from that estimate. Each finding names the root cause in
`evidence.cause`.

The cause of a scan's error is tested before it is named (`evidence.cause_tested`,
figures in `evidence.experiment`): during collection, each condition of the scan is
estimated alone by the planner (EXPLAIN) and counted (`SELECT count(*)`, read-only, under
a statement_timeout), and so is their conjunction (queryaudit.estimates). Each condition
right (within `COLUMN_RIGHT`) and the conjunction wrong: `correlated-columns`. A
condition itself off: `stale-statistics` (`out-of-range` for a range beyond the
histogram, `expression` for an expression of a column). Counters such as
`n_mod_since_analyze` are evidence beside it, not the verdict: a table loaded and
analyzed in one transaction keeps every row counted as modified with fresh statistics.
Without an experiment (cut off, budget spent, a saved snapshot without one, conditions
that cannot run alone), the cause is read from the counters and the catalog as below,
with medium confidence:

- `stale-statistics`: the table changed more since its last ANALYZE than autovacuum's
  analyze threshold (`autovacuum_analyze_threshold + autovacuum_analyze_scale_factor x
  reltuples`, table options included), or it was never analyzed;
- `out-of-range`: a range predicate looks beyond the column's histogram (rows added
  since the last ANALYZE at the end of a timestamp or id range);
- `correlated-columns`: equality predicates on several columns of one table, which the
  planner multiplies as if independent, with no extended statistics on them;
- `expression`: a predicate on a function or expression of a column, which has no
  statistics of its own;
- `default-selectivity`: the estimate is exactly one of the planner's hard-coded
  guesses (0.5 % for equality, 33 % for ranges), the mark of a predicate it could not
  estimate at all;
- `generic-plan`: the statement's plan with real values estimates well, but its generic
  plan (what a prepared statement reused by the application runs after five executions
  under `plan_cache_mode = auto`) is a different plan whose estimate for a scan is off by
  10 or more (skewed data: the generic plan cannot see the value);
- `join-selectivity`, `aggregate-groups`, `unknown`: the error starts in a join or a
  grouping, or no cause could be established.

## Why it matters
Every plan choice rests on row counts: a nested loop chosen for 8 rows that runs for
40 000, a hash table sized for 100 rows that spills, a sequential scan chosen where
an index would do. Fixing the estimate lets the planner choose again.

## How to fix
- stale statistics / out of range: `ANALYZE table`, and make autovacuum analyze it
  more often (`ALTER TABLE ... SET (autovacuum_analyze_scale_factor = 0.02)`); where the
  counters show few changes, a higher statistics target
  (`ALTER TABLE ... ALTER COLUMN ... SET STATISTICS 1000`). With `--verify-real` (scratch
  copies only) the fix runs in a rolled-back transaction and the scan's q-error is
  measured before and after;
- correlated columns: `CREATE STATISTICS name (dependencies, mcv) ON a, b FROM table;
  ANALYZE table;`
- expressions: statistics on the expression (PostgreSQL 14+:
  `CREATE STATISTICS name ON (lower(email)) FROM table`), or an expression index, which
  gets statistics on ANALYZE;
- default selectivity: rewrite the predicate so it compares a plain column, or give the
  expression statistics as above;
- generic plan: `ALTER ROLE app SET plan_cache_mode = force_custom_plan` for the role
  whose prepared statements run it (or stop preparing that statement).

## Example
```sql
-- Bitmap Index Scan on customers_city_zip_idx: estimated 8 rows, actual 400 (q-error 50)
CREATE STATISTICS customers_city_zip_stats (dependencies, mcv) ON city, zip FROM public.customers;
ANALYZE public.customers;
```

## Thresholds
q-error >= 10 (`MIN_Q_ERROR`); a condition alone within 3x of its count is right
(`COLUMN_RIGHT`); the node's subtree >= 10 % of the statement's execution
time (`MEANINGFUL_SHARE`) or the node is a join input. Severity follows the predicted
saving (the misestimated subtree's share of the statement x the statement's share of
total time, an upper bound): high from 10 %, medium from 2 %. An actual below the
estimate is not counted where execution stopped early by design: below a Limit with
nothing blocking in between, the inner side of a semi or anti join, a merge join's
inputs, a subplan. Findings with the same
table, cause and columns are merged across statements.

## Known false positives
A misestimate can be harmless when the plan would be the same with the right number
(a single table scan has no alternative); the predicted saving is then an upper bound.
Plans are taken with values drawn from pg_stats: the application's real values may be
estimated better or worse. Untested, correlated-column detection assumes that an
underestimate with several equality predicates on one table comes from correlation.
"""

from __future__ import annotations

import datetime as dt
import re

from pglast import ast, parse_sql, visitors
from pglast.stream import RawStream

from queryaudit.checks import declare
from queryaudit.checks._plans import (
    CapturedPlan,
    analyzed_plans,
    columns_of,
    node_evidence,
    qualified,
    severity_for,
    table_for,
)
from queryaudit.estimates.model import EstimateExperiment, PredicateCount
from queryaudit.findings import Finding, Saving
from queryaudit.plans.model import PlanNode
from queryaudit.snapshot import Snapshot, Table
from queryaudit.sql import find_nodes, quote_ident

ID = "row-estimate-error"
TITLE = "Row estimate error"
MIN_Q_ERROR = 10.0
MEANINGFUL_SHARE = 0.10
# A condition's estimate within this factor of its count is right (experiments).
COLUMN_RIGHT = 3.0
HIGHER_TARGET = 1000  # statistics target suggested when ANALYZE alone keeps a column off
MAX_STATISTICS_COLUMNS = 8  # CREATE STATISTICS takes at most 8 columns
# The planner's guesses when it has nothing to go by (src/include/utils/selfuncs.h).
DEFAULT_SELECTIVITIES = {
    0.005: "DEFAULT_EQ_SEL (equality it could not estimate)",
    0.3333333333333333: "DEFAULT_INEQ_SEL (range it could not estimate)",
    0.000025: "two DEFAULT_EQ_SEL multiplied",
}
JOIN_TYPES = ("Nested Loop", "Hash Join", "Merge Join")
CONDITION_FIELDS = ("Filter", "Index Cond", "Recheck Cond")


# Nodes that read all of their input before returning anything: a Limit above them
# does not cut what runs below them.
BLOCKING = ("Sort", "Hash", "Aggregate", "HashAggregate", "GroupAggregate", "WindowAgg", "SetOp", "Unique")
CHECK = declare(
    ID, TITLE, family="plan", fix="statistics", thresholds=("MIN_Q_ERROR", "MEANINGFUL_SHARE", "COLUMN_RIGHT")
)


def stopped_early(node: PlanNode) -> bool:
    """Whether the node may have been stopped before producing all its rows, so an actual
    below the (full-run) estimate is no misestimate: below a Limit with nothing
    blocking in between, the inner side of a semi or anti join, either side of a merge
    join (it ends when the other side does), or inside a subplan (EXISTS stops at the
    first row)."""
    child = node
    for ancestor in node.ancestors():
        if ancestor.node_type == "Limit":
            return True
        if ancestor.raw.get("Join Type") in ("Semi", "Anti") and child.parent_relationship == "Inner":
            return True
        if ancestor.node_type == "Merge Join":
            return True
        if child.parent_relationship == "SubPlan":
            return True
        if ancestor.node_type in BLOCKING:
            return False
        child = ancestor
    return False


def origins(captured: CapturedPlan) -> list[PlanNode]:
    """Nodes where a large error starts: their own q-error is not inherited from a child."""
    out = []
    for node in captured.plan.nodes:
        q = node.q_error
        if q is None or q < MIN_Q_ERROR:
            continue
        if not node.underestimated and stopped_early(node):
            continue
        inherited = max((c.q_error or 1.0 for c in node.children if not c.is_cte_plan), default=1.0)
        if inherited * 2 > q:
            continue
        out.append(node)
    return out


def _carriers(node: PlanNode) -> list[PlanNode]:
    """The origin and the ancestors that inherit its error (q-error still >= the minimum)."""
    chain = [node]
    for ancestor in node.ancestors():
        if (ancestor.q_error or 1.0) < MIN_Q_ERROR:
            break
        chain.append(ancestor)
    return chain


def _join_fed(node: PlanNode) -> PlanNode | None:
    """The join whose method or order was chosen from this estimate: the first join that
    one of the error's carriers is an input of."""
    for carrier in _carriers(node):
        if carrier.parent is not None and carrier.parent.node_type in JOIN_TYPES:
            return carrier.parent
    return None


def _affected_share(captured: CapturedPlan, node: PlanNode) -> float:
    """What the misestimate shapes, as a share of the statement: the misestimated subtree,
    plus the own time of the join planned from it (an upper bound of what a better
    estimate could save)."""
    share = captured.plan.subtree_share(node)
    join = _join_fed(node)
    if join is not None:
        share += captured.plan.share(join)
    return min(1.0, share)


def matters(captured: CapturedPlan, node: PlanNode) -> bool:
    if captured.plan.subtree_share(node) >= MEANINGFUL_SHARE:
        return True
    join = _join_fed(node)
    return bool(join and captured.plan.subtree_share(join) >= MEANINGFUL_SHARE)


def analyze_threshold(snapshot: Snapshot, table: Table) -> float:
    """autovacuum's analyze threshold for the table, its reloptions included."""
    settings = snapshot.server.settings
    options = dict(o.split("=", 1) for o in table.reloptions if "=" in o)
    base = float(options.get("autovacuum_analyze_threshold", _number(settings.get("autovacuum_analyze_threshold"), 50)))
    scale = float(
        options.get("autovacuum_analyze_scale_factor", _number(settings.get("autovacuum_analyze_scale_factor"), 0.1))
    )
    return base + scale * max(0.0, table.reltuples)


def _number(text: str | None, default: float) -> float:
    try:
        return float(str(text).split()[0])
    except (TypeError, ValueError, IndexError):
        return default


def _stale(snapshot: Snapshot, table: Table) -> dict | None:
    never = table.last_analyze is None and table.last_autoanalyze is None
    threshold = analyze_threshold(snapshot, table)
    if never and (table.reltuples < 0 or not any(c.table == table.qualified_name for c in snapshot.column_stats)):
        return {"detail": "never analyzed", "n_mod_since_analyze": table.n_mod_since_analyze}
    if table.n_mod_since_analyze > threshold:
        options = dict(o.split("=", 1) for o in table.reloptions if "=" in o)
        autovacuum_off = (
            options.get("autovacuum_enabled") in ("false", "off") or snapshot.server.settings.get("autovacuum") == "off"
        )
        return {
            "detail": f"{table.n_mod_since_analyze:,} rows modified since the last ANALYZE, beyond "
            f"autovacuum's analyze threshold of {threshold:,.0f}"
            + (" (autovacuum is off for it)" if autovacuum_off else ""),
            "n_mod_since_analyze": table.n_mod_since_analyze,
            "analyze_threshold": round(threshold),
            "last_analyze": table.last_analyze or table.last_autoanalyze,
            "autovacuum_off": autovacuum_off,
        }
    return None


class _Predicates(visitors.Visitor):
    """Top-level comparisons of a printed condition: equality columns, expressions, ranges."""

    def __init__(self):
        self.equal_columns: list[str] = []
        self.expressions: list[str] = []
        self.ranges: list[tuple[str, str, str]] = []  # column, operator, constant text

    def visit_A_Expr(self, ancestors, node):
        op = node.name[-1].sval if node.name else ""
        for left, right in ((node.lexpr, node.rexpr), (node.rexpr, node.lexpr)):
            col = _plain_column(left)
            const = _constant(right)
            if col and op == "=" and (const is not None or _plain_column(right) is None):
                if const is not None:
                    self.equal_columns.append(col)
            if col and op in ("<", "<=", ">", ">=") and const is not None:
                self.ranges.append((col, op, const))
            if _is_expression_on_column(left) and (const is not None):
                self.expressions.append(_deparse(left))


def _strip_casts(node):
    while isinstance(node, ast.TypeCast):
        node = node.arg
    return node


def _plain_column(node) -> str | None:
    node = _strip_casts(node)
    if isinstance(node, ast.ColumnRef) and all(isinstance(f, ast.String) for f in node.fields):
        return node.fields[-1].sval
    return None


def _constant(node) -> str | None:
    node = _strip_casts(node)
    if isinstance(node, ast.A_Const) and node.val is not None:
        val = node.val
        return str(getattr(val, "sval", None) or getattr(val, "ival", None) or getattr(val, "fval", None) or "")
    return None


def _is_expression_on_column(node) -> bool:
    node = _strip_casts(node)
    if not isinstance(node, (ast.FuncCall, ast.A_Expr, ast.CoalesceExpr)):
        return False
    return bool(find_nodes(node, ast.ColumnRef))


def _deparse(node) -> str:
    try:
        return RawStream()(node)
    except Exception:
        return "?"


def _predicates(node: PlanNode) -> _Predicates:
    found = _Predicates()
    for name in CONDITION_FIELDS:
        if node.raw.get(name):
            _condition_predicates(node.raw[name], found)
    return found


def _condition_predicates(text: str, found: _Predicates | None = None) -> _Predicates:
    found = found if found is not None else _Predicates()
    try:
        found(parse_sql(f"SELECT 1 WHERE {text}")[0].stmt)
    except Exception:
        pass
    return found


def _comparable(text: str):
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(
            text.replace(" ", "T", 1).replace("+00", "+00:00")
            if re.search(r"[+-]\d\d$", text)
            else text.replace(" ", "T", 1)
        )
    except ValueError:
        return None


def _out_of_range(snapshot: Snapshot, table: Table, ranges) -> dict | None:
    for column, op, const in ranges:
        stats = snapshot.stats_for(table.qualified_name, column)
        bounds = [b for b in (stats.histogram_bounds or []) if b is not None] if stats else []
        value = _comparable(const)
        if not bounds or value is None:
            continue
        low, high = _comparable(bounds[0]), _comparable(bounds[-1])
        try:
            beyond = (op in (">", ">=") and high is not None and value >= high) or (
                op in ("<", "<=") and low is not None and value <= low
            )
        except TypeError:
            continue
        if beyond:
            return {"column": column, "value": const, "histogram_low": bounds[0], "histogram_high": bounds[-1]}
    return None


def _default_selectivity(node: PlanNode, table: Table) -> str | None:
    rows = table.reltuples
    if rows <= 0 or node.estimated_rows <= 1:
        return None
    fraction = node.estimated_rows / rows
    for default, name in DEFAULT_SELECTIVITIES.items():
        if abs(fraction - default) <= default * 0.02:
            return name
    return None


def _has_extended_statistics(snapshot: Snapshot, table: Table, columns: list[str]) -> bool:
    return any(
        s.table == table.qualified_name and set(columns) <= set(s.columns) and ({"d", "m"} & set(s.kinds))
        for s in snapshot.extended_statistics
    )


def diagnose(snapshot: Snapshot, node: PlanNode, experiment: EstimateExperiment | None = None) -> dict:
    """The root cause of a misestimate at `node`: cause, fix SQL, columns and details. With
    an experiment whose figures establish the cause, the experiment decides; otherwise the
    counters and the catalog do, and the cause is marked untested."""
    table = table_for(snapshot, node)
    if table is not None and experiment is not None:
        tested = _tested_cause(snapshot, table, node, experiment)
        if tested is not None:
            return tested
    cause = _untested_cause(snapshot, node, table)
    cause["tested"] = False
    if experiment is not None:
        cause["experiment"] = _experiment_evidence(experiment)
    return cause


def _untested_cause(snapshot: Snapshot, node: PlanNode, table: Table | None) -> dict:
    """The cause read from the counters and the catalog, when no experiment established one."""
    if node.node_type in JOIN_TYPES:
        return {
            "cause": "join-selectivity",
            "table": None,
            "columns": [],
            "fix_sql": None,
            "advice": "the join's own estimate is off (correlated join keys, or keys outside the statistics): "
            "check the join columns' statistics; CREATE STATISTICS does not cover joins",
        }
    if node.node_type in ("Aggregate", "HashAggregate", "GroupAggregate"):
        return {
            "cause": "aggregate-groups",
            "table": None,
            "columns": [],
            "fix_sql": None,
            "advice": "the number of groups is misestimated: CREATE STATISTICS (ndistinct) on the grouping "
            "columns, or ALTER TABLE ... ALTER COLUMN ... SET (n_distinct = ...)",
        }
    if table is None:
        return {"cause": "unknown", "table": None, "columns": [], "fix_sql": None, "advice": None}
    name = qualified(table)
    columns = columns_of(table, node, CONDITION_FIELDS)
    stale = _stale(snapshot, table)
    if stale:
        return {
            "cause": "stale-statistics",
            "table": table,
            "columns": columns,
            "fix_sql": f"ANALYZE {name};",
            "advice": f"{stale['detail']}; analyze it now and let autovacuum analyze it more often "
            f"(ALTER TABLE {name} SET (autovacuum_analyze_scale_factor = 0.02))",
            "detail": stale,
        }
    predicates = _predicates(node)
    out_of_range = _out_of_range(snapshot, table, predicates.ranges)
    if out_of_range:
        return {
            "cause": "out-of-range",
            "table": table,
            "columns": [out_of_range["column"]],
            "fix_sql": f"ANALYZE {name};",
            "advice": f"{out_of_range['column']} {out_of_range['value']} lies beyond the histogram "
            f"(last bound {out_of_range['histogram_high']}): rows added since the last ANALYZE; "
            "analyze more often",
            "detail": out_of_range,
        }
    names = {c.name for c in table.columns}
    equal = list(dict.fromkeys(c for c in predicates.equal_columns if c in names))
    if len(equal) >= 2 and node.underestimated and not _has_extended_statistics(snapshot, table, equal):
        return {
            "cause": "correlated-columns",
            "table": table,
            "columns": equal,
            "fix_sql": _create_statistics(table, equal),
            "advice": "the planner multiplies the selectivities of these columns as if they were independent",
            "detail": {"equality_columns": equal},
        }
    if predicates.expressions:
        expression = predicates.expressions[0]
        if snapshot.server.version_num >= 140000:
            fix = (
                f"CREATE STATISTICS IF NOT EXISTS {quote_ident(table.schema)}."
                f"{quote_ident((table.name + '_expr_stats')[:63])} ON ({expression}) FROM {name};\nANALYZE {name};"
            )
        else:  # expression statistics arrived in 14: an expression index gets statistics on ANALYZE
            fix = f"CREATE INDEX CONCURRENTLY ON {name} (({expression}));\nANALYZE {name};"
        return {
            "cause": "expression",
            "table": table,
            "columns": columns,
            "fix_sql": fix,
            "advice": f"no statistics exist for {expression}",
            "detail": {"expression": expression},
        }
    default = _default_selectivity(node, table)
    if default:
        return {
            "cause": "default-selectivity",
            "table": table,
            "columns": columns,
            "fix_sql": None,
            "advice": f"the estimate is the planner's hard-coded {default}: rewrite the predicate on plain "
            "columns, or give the expression statistics",
            "detail": {"default": default},
        }
    return {
        "cause": "unknown",
        "table": table,
        "columns": columns,
        "fix_sql": None,
        "advice": f"raise the statistics target of the filtered columns (ALTER TABLE {name} ALTER COLUMN ... "
        f"SET STATISTICS 1000; ANALYZE {name}) if their distribution is skewed",
    }


def _create_statistics(table: Table, columns: list[str]) -> str:
    name = qualified(table)
    stat_name = quote_ident(f"{table.name}_{'_'.join(columns)}_stats"[:63])
    cols = ", ".join(quote_ident(c) for c in columns)
    return (
        f"CREATE STATISTICS IF NOT EXISTS {quote_ident(table.schema)}.{stat_name} "
        f"(dependencies, mcv) ON {cols} FROM {name};\nANALYZE {name};"
    )


def experiment_for(snapshot: Snapshot, queryid: str, node: PlanNode) -> EstimateExperiment | None:
    return next((e for e in snapshot.estimate_experiments if e.queryid == queryid and e.node_id == node.path), None)


def _figures(p: PredicateCount) -> dict:
    return {
        "condition": p.sql,
        "estimated_rows": p.estimated_rows,
        "actual_rows": p.actual_rows,
        "q_error": round(p.q_error, 1) if p.q_error is not None else None,
        "problem": p.problem,
    }


def _experiment_evidence(experiment: EstimateExperiment) -> dict:
    return {
        "conditions": [_figures(p) for p in experiment.predicates],
        "combined": _figures(experiment.combined) if experiment.combined else None,
        "untested_conditions": experiment.untested,
        "table_rows_estimated": experiment.table_rows,
        "problem": experiment.problem,
    }


def _independence(experiment: EstimateExperiment) -> float | None:
    """actual / what independence predicts from the counts alone (N x product of the
    conditions' fractions): far from 1, the columns are correlated, whatever pg_stats says."""
    n = experiment.table_rows
    counts = [p.actual_rows for p in experiment.predicates]
    if len(counts) < 2 or not n or n < 1 or None in counts or experiment.combined.actual_rows is None:
        return None
    predicted = n
    for count in counts:
        predicted *= count / n
    return max(1.0, experiment.combined.actual_rows) / max(1.0, predicted)


def _counters(snapshot: Snapshot, table: Table) -> dict:
    """What the counters say, as evidence beside the experiment."""
    threshold = analyze_threshold(snapshot, table)
    return {
        "n_mod_since_analyze": table.n_mod_since_analyze,
        "analyze_threshold": round(threshold),
        "last_analyze": table.last_analyze or table.last_autoanalyze,
        "beyond_threshold": table.n_mod_since_analyze > threshold,
    }


def _describe(p: PredicateCount) -> str:
    return f"{p.sql}: estimated {p.estimated_rows:,.0f}, counted {p.actual_rows:,}"


def _tested_cause(snapshot: Snapshot, table: Table, node: PlanNode, experiment: EstimateExperiment) -> dict | None:
    """The cause the experiment establishes, or None when its figures do not (incomplete,
    or its conditions alone do not reproduce the error: join parameters, a subplan)."""
    combined = experiment.combined
    if (
        experiment.problem
        or combined is None
        or combined.q_error is None
        or combined.q_error < MIN_Q_ERROR
        or any(p.q_error is None for p in experiment.predicates)
    ):
        return None
    name = qualified(table)
    counters = _counters(snapshot, table)
    figures = _experiment_evidence(experiment)
    off = [p for p in experiment.predicates if p.q_error > COLUMN_RIGHT]
    together = _independence(experiment)
    correlated = together is not None and max(together, 1 / together) >= MIN_Q_ERROR
    columns = list(dict.fromkeys(c for p in experiment.predicates for c in p.columns))[:MAX_STATISTICS_COLUMNS]
    base = {"table": table, "tested": True, "experiment": figures}
    if off and all(not p.plain_column for p in off):
        # The expression compared (lower(email) of lower(email) = '...'), for its statistics.
        expression = next(iter(_condition_predicates(off[0].sql).expressions), None)
        fix = (
            f"CREATE STATISTICS IF NOT EXISTS {quote_ident(table.schema)}."
            f"{quote_ident((table.name + '_expr_stats')[:63])} ON ({expression}) FROM {name};\nANALYZE {name};"
            if snapshot.server.version_num >= 140000 and expression
            else None
        )
        expression = expression or off[0].sql
        return {
            **base,
            "cause": "expression",
            "columns": off[0].columns,
            "fix_sql": fix,
            "advice": f"tested: {_describe(off[0])}; the planner has no statistics for the expression",
            "detail": {"expression": expression, **counters},
        }
    if off:
        off_columns = list(dict.fromkeys(c for p in off for c in p.columns))
        out_of_range = _out_of_range(snapshot, table, [r for r in _predicates(node).ranges if r[0] in off_columns])
        fix = _create_statistics(table, columns) if correlated and len(columns) >= 2 else f"ANALYZE {name};"
        if not counters["beyond_threshold"]:
            target = "; ".join(
                f"ALTER TABLE {name} ALTER COLUMN {quote_ident(c)} SET STATISTICS {HIGHER_TARGET}" for c in off_columns
            )
            hint = (
                f" The counters show few changes since the last ANALYZE: if ANALYZE does not bring it close "
                f"(--verify-real measures it on a scratch copy), raise the statistics target: {target}; "
                f"ANALYZE {name}."
            )
        else:
            hint = f" {counters['n_mod_since_analyze']:,} rows were modified since the last ANALYZE."
        cause = "out-of-range" if out_of_range else "stale-statistics"
        return {
            **base,
            "cause": cause,
            "columns": off_columns,
            "fix_sql": fix,
            "advice": "tested: " + "; ".join(_describe(p) for p in off) + ": the column's own estimate is off, "
            "its statistics no longer describe the table."
            + hint
            + (
                " The counts also show the columns correlated: the statistics object covers that."
                if fix.startswith("CREATE")
                else ""
            ),
            "detail": {**counters, "columns_off": off_columns, **(out_of_range or {})},
        }
    if len(columns) >= 2:
        covered = _has_extended_statistics(snapshot, table, columns)
        fix = f"ANALYZE {name};" if covered else _create_statistics(table, columns)
        note = (
            f" The counters ({counters['n_mod_since_analyze']:,} rows modified since the last ANALYZE, "
            f"threshold {counters['analyze_threshold']:,}) suggested stale statistics; the single-column "
            "estimates show they are not."
            if counters["beyond_threshold"]
            else ""
        )
        return {
            **base,
            "cause": "correlated-columns",
            "columns": columns,
            "fix_sql": fix,
            "advice": "tested: each condition alone is estimated within "
            f"{COLUMN_RIGHT:g}x ({'; '.join(_describe(p) for p in experiment.predicates)}), together "
            f"estimated {combined.estimated_rows:,.0f}, counted {combined.actual_rows:,}: the planner "
            "multiplies their selectivities as if they were independent"
            + (" (a statistics object exists: ANALYZE builds it)" if covered else "")
            + "."
            + note,
            "detail": {
                **counters,
                "equality_columns": columns,
                "independence_ratio": round(together, 1) if together is not None else None,
            },
        }
    return None


def _generic_misestimate(snapshot: Snapshot, captured: CapturedPlan, node: PlanNode) -> dict | None:
    """The generic plan (what a reused prepared statement runs) estimates this scan far
    off while the custom plan with values estimates it well, and the two plans differ."""
    generic = (snapshot.extras.get("generic_plans") or {}).get(captured.queryid)
    if not generic or node.q_error is None or node.q_error >= MIN_Q_ERROR:
        return None
    if generic.get("node_types") == [n.node_type for n in captured.plan.nodes]:
        return None  # same plan whatever the values: the generic plan costs nothing here
    scan = next(
        (
            s
            for s in generic.get("scans") or []
            if s.get("alias") == node.alias and s.get("relation") == node.raw.get("Relation Name")
        ),
        None,
    )
    if scan is None or node.actual_rows is None:
        return None
    est, act = max(1.0, float(scan["estimated_rows"])), max(1.0, node.actual_rows)
    q = max(est / act, act / est)
    if q < MIN_Q_ERROR:
        return None
    return {
        "generic_estimated_rows": scan["estimated_rows"],
        "generic_node": scan["node"],
        "generic_q_error": round(q, 1),
        "custom_estimated_rows": node.estimated_rows,
        "actual_rows": node.actual_rows,
    }


GENERIC_FIX = (
    "-- for the role (or database) whose prepared statements run it:\n"
    "ALTER ROLE <app_role> SET plan_cache_mode = force_custom_plan;"
)


def run(snapshot: Snapshot) -> list[Finding]:
    groups: dict[tuple, list[tuple[CapturedPlan, PlanNode, dict]]] = {}
    for captured in analyzed_plans(snapshot):
        for node in captured.plan.scans():
            detail = _generic_misestimate(snapshot, captured, node)
            if detail is None or captured.plan.subtree_share(node) < MEANINGFUL_SHARE:
                continue
            table = table_for(snapshot, node)
            statement = captured.statement
            cached = bool(statement.plans and statement.calls and statement.plans < statement.calls)
            cause = {
                "cause": "generic-plan",
                "table": table,
                "columns": columns_of(table, node, CONDITION_FIELDS),
                "fix_sql": GENERIC_FIX,
                "detail": {**detail, "plans": statement.plans, "calls": statement.calls, "plan_cache_in_use": cached},
                "advice": "the generic plan of this prepared statement misestimates the rows its values select "
                "(skewed data): force custom plans for the role, or stop preparing this statement",
            }
            groups.setdefault((f"{captured.queryid}:generic", "generic-plan", ()), []).append((captured, node, cause))
    for captured in analyzed_plans(snapshot):
        for node in origins(captured):
            if not matters(captured, node):
                continue
            cause = diagnose(snapshot, node, experiment_for(snapshot, captured.queryid, node))
            table = cause["table"]
            key = (
                table.qualified_name if table else f"{captured.queryid}:{node.path}",
                cause["cause"],
                tuple(cause["columns"]) if cause["cause"] == "correlated-columns" else (),
            )
            groups.setdefault(key, []).append((captured, node, cause))
    return [_finding(snapshot, members) for members in groups.values()]


def _finding(snapshot: Snapshot, members: list[tuple[CapturedPlan, PlanNode, dict]]) -> Finding:
    captured, node, cause = max(members, key=lambda m: m[1].q_error or 0)
    savings_by_statement: dict[str, Saving] = {}
    for c, n, _ in members:
        s = c.saving(snapshot, _affected_share(c, n))
        if (
            c.queryid not in savings_by_statement
            or s.share_of_total_time > savings_by_statement[c.queryid].share_of_total_time
        ):
            savings_by_statement[c.queryid] = s
    savings = list(savings_by_statement.values())
    saving = Saving(
        share_of_total_time=round(min(1.0, sum(s.share_of_total_time for s in savings)), 6),
        ms_per_call=savings[0].ms_per_call if len(savings) == 1 else None,
        total_ms=round(sum(s.total_ms or 0 for s in savings), 3),
    )
    table = cause["table"]
    direction = "under" if node.underestimated else "over"
    what = f"{table.qualified_name}" if table else node.label
    if cause["cause"] == "generic-plan":
        detail = cause["detail"]
        title = (
            f"Generic plan of a prepared statement misestimates {what} by {detail['generic_q_error']:,.0f}x: "
            f"estimated {detail['generic_estimated_rows']:,.0f}, actual {node.actual_rows:,.0f}"
        )
    else:
        title = (
            f"Row estimate {direction} by {node.q_error:,.0f}x on {what} ({cause['cause']}): "
            f"estimated {node.estimated_rows:,.0f}, actual {node.actual_rows:,.0f}"
        )
    join = _join_fed(node)
    evidence = {
        **node_evidence(captured, node, snapshot),
        "cause": cause["cause"],
        "direction": direction,
        "join_planned_from_it": join.path_labels if join else None,
        "subtree_share_of_statement": round(captured.plan.subtree_share(node), 4),
        "relation": node.raw.get("Relation Name"),
        "alias": node.alias,
        "detail": cause.get("detail"),
        "cause_tested": cause.get("tested", False),
        "experiment": cause.get("experiment"),
        "statements": [
            {"queryid": c.queryid, "node_path": n.path_labels, "q_error": round(n.q_error, 1)} for c, n, _ in members
        ],
    }
    return Finding(
        check=ID,
        severity=severity_for(saving),
        title=title,
        table=table.qualified_name if table else None,
        columns=list(cause["columns"]),
        queryids=list(dict.fromkeys(c.queryid for c, _, _ in members)),
        fix_sql=cause["fix_sql"],
        advice=cause.get("advice"),
        predicted_saving=saving,
        confidence=_confidence(cause),
        effort="maintenance" if cause["cause"] in ("stale-statistics", "out-of-range") else "schema",
        evidence=evidence,
        key=f"{ID}|{what}|{cause['cause']}|{','.join(cause['columns'])}",
    )


def _confidence(cause: dict) -> str:
    """High only where an experiment tested the cause: a counter such as n_mod_since_analyze
    is evidence, not the verdict."""
    if cause["cause"] in ("unknown", "join-selectivity", "aggregate-groups"):
        return "low"
    return "high" if cause.get("tested") else "medium"
