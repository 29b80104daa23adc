"""Budgets and suppressions: what `queryaudit check` holds an audit to.

Read from `queryaudit.toml` (top level) or `[tool.queryaudit]` in pyproject.toml, found
in the current folder or above, or given with --config:

    store = "postgresql://auditor@history-db/queryaudit"   # default for --store

    [budgets]                          # every statement, in the audit's window
    mean-time-regression-pct = 50      # mean time per call grew by more than 50 %
    max-mean-time-ms = 200             # mean time per call above 200 ms
    max-total-time-ms = 600000         # time spent in one statement during the window
    max-calls = 1000000                # calls of one statement during the window
    fail-on-new-finding = "high"       # a finding of severity high or worse that the baseline lacked
    min-calls = 5                      # statements with fewer calls are not judged on their mean
    min-mean-ms = 0.1                  # nor are statements faster than this on both sides

    [[budgets.statement]]              # one statement, by queryid or a regex on its text
    pattern = "FROM orders WHERE customer_id"
    mean-time-regression-pct = 20
    max-mean-time-ms = 5

    [[suppress]]                       # a finding accepted until a date
    id = "unused-index:0123456789ab"   # a finding id, or a glob (unused-index:*)
    reason = "kept for the month-end report"
    expires = 2026-03-31

Pure: it reads a comparison dict (history.baseline.compare) and returns what broke.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from queryaudit.errors import AuditError
from queryaudit.findings import SEVERITIES, SEVERITY_RANK
from queryaudit.history.causes import cause_summary

CONFIG_FILE = "queryaudit.toml"
# Top-level keys of the configuration; other features add theirs here.
KNOWN_SECTIONS = {"store", "budgets", "suppress"}
THRESHOLDS = {  # key -> what it limits (for messages)
    "mean-time-regression-pct": "mean time regression",
    "max-mean-time-ms": "mean time",
    "max-total-time-ms": "total time in the window",
    "max-calls": "calls in the window",
}
GLOBAL_ONLY = {"fail-on-new-finding": None, "min-calls": 5, "min-mean-ms": 0.1}
# With no [budgets] table, check still guards the obvious: a statement twice as
# slow, or a new finding of severity high or worse.
DEFAULT_BUDGETS = {"mean-time-regression-pct": 100.0, "fail-on-new-finding": "high"}


@dataclass
class StatementBudget:
    thresholds: dict[str, float]
    queryid: str | None = None
    pattern: re.Pattern | None = None
    label: str | None = None

    def matches(self, queryid: str, query: str) -> bool:
        if self.queryid is not None:
            return queryid == self.queryid
        return bool(self.pattern and self.pattern.search(" ".join(query.split())))

    def describe(self) -> str:
        return self.label or (f"queryid {self.queryid}" if self.queryid else f"pattern {self.pattern.pattern!r}")


@dataclass
class Suppression:
    id: str
    reason: str
    expires: dt.date

    def matches(self, finding_id: str) -> bool:
        return fnmatch.fnmatchcase(finding_id, self.id)


@dataclass
class Config:
    source: str = "defaults"
    store: str | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    fail_on_new_finding: str | None = None
    min_calls: int = 5
    min_mean_ms: float = 0.1
    statements: list[StatementBudget] = field(default_factory=list)
    suppressions: list[Suppression] = field(default_factory=list)


def find_config(start: Path | None = None) -> Path | None:
    """queryaudit.toml, else a pyproject.toml with [tool.queryaudit], in start or a parent."""
    folder = (start or Path.cwd()).resolve()
    for d in [folder, *folder.parents]:
        if (d / CONFIG_FILE).is_file():
            return d / CONFIG_FILE
        pyproject = d / "pyproject.toml"
        if pyproject.is_file():
            try:
                if "queryaudit" in tomllib.loads(pyproject.read_text()).get("tool", {}):
                    return pyproject
            except (tomllib.TOMLDecodeError, UnicodeDecodeError):
                continue
    return None


def read_toml(path: Path, what: str = "configuration file") -> dict:
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise AuditError(f"{what} not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise AuditError(f"{path}: not valid TOML ({exc})") from None


def array_of_tables(source: str, value, key: str) -> list[tuple[str, dict]]:
    """[[key]] entries as (key[n], table), or an AuditError naming the key."""
    if not isinstance(value, list):
        raise AuditError(f"{source}: {key} must be an array of tables ([[{key}]])")
    for n, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise AuditError(f"{source}: {key}[{n}] must be a table")
    return [(f"{key}[{n}]", entry) for n, entry in enumerate(value)]


def load_config(path: Path | None = None) -> Config:
    """The configuration from path (or found), or the defaults; AuditError names a bad key."""
    explicit = path is not None
    path = path or find_config()
    if path is None:
        return parse_config({}, "defaults")
    data = read_toml(path)
    if Path(path).name == "pyproject.toml":
        data = data.get("tool", {}).get("queryaudit")
        if data is None:
            if explicit:
                raise AuditError(f"{path}: no [tool.queryaudit] table")
            data = {}
        return parse_config(data, f"{path} [tool.queryaudit]")
    return parse_config(data, str(path))


def _number(source: str, key: str, value, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise AuditError(f"{source}: {key} must be a number >= {minimum:g}, not {value!r}")
    return float(value)


def _thresholds(source: str, prefix: str, table: dict, allowed: set[str]) -> dict[str, float]:
    for key in table:
        if key not in allowed:
            raise AuditError(f"{source}: unknown key {prefix}{key} (known: {', '.join(sorted(allowed))})")
    return {k: _number(source, prefix + k, v) for k, v in table.items() if k in THRESHOLDS}


def _severity(source: str, key: str, value) -> str:
    if value not in SEVERITIES:
        raise AuditError(f"{source}: {key} must be one of {', '.join(SEVERITIES)}, not {value!r}")
    return value


def parse_config(data: dict, source: str) -> Config:
    if not isinstance(data, dict):
        raise AuditError(f"{source}: expected a table")
    for key in data:
        if key not in KNOWN_SECTIONS:
            raise AuditError(f"{source}: unknown key {key} (known: {', '.join(sorted(KNOWN_SECTIONS))})")
    config = Config(source=source)
    if "store" in data:
        if not isinstance(data["store"], str) or not data["store"]:
            raise AuditError(f"{source}: store must be a URL or a file path")
        config.store = data["store"]
    # Without a [budgets] table the defaults hold (a file with only suppressions still gates).
    budgets = data.get("budgets", DEFAULT_BUDGETS)
    if not isinstance(budgets, dict):
        raise AuditError(f"{source}: budgets must be a table ([budgets])")
    statements = budgets.get("statement", [])
    globals_ = {k: v for k, v in budgets.items() if k != "statement"}
    config.thresholds = _thresholds(source, "budgets.", globals_, set(THRESHOLDS) | set(GLOBAL_ONLY))
    if "fail-on-new-finding" in globals_:
        config.fail_on_new_finding = _severity(source, "budgets.fail-on-new-finding", globals_["fail-on-new-finding"])
    if "min-calls" in globals_:
        config.min_calls = int(_number(source, "budgets.min-calls", globals_["min-calls"]))
    if "min-mean-ms" in globals_:
        config.min_mean_ms = _number(source, "budgets.min-mean-ms", globals_["min-mean-ms"])
    for key, entry in array_of_tables(source, statements, "budgets.statement"):
        selectors = {k: entry[k] for k in ("queryid", "pattern") if k in entry}
        if len(selectors) != 1:
            raise AuditError(f"{source}: {key} needs exactly one of queryid or pattern")
        thresholds = _thresholds(
            source,
            f"{key}.",
            {k: v for k, v in entry.items() if k not in ("queryid", "pattern", "name")},
            set(THRESHOLDS),
        )
        if not thresholds:
            raise AuditError(f"{source}: {key} sets no threshold (one of {', '.join(THRESHOLDS)})")
        budget = StatementBudget(thresholds, label=entry.get("name"))
        if "queryid" in selectors:
            budget.queryid = str(selectors["queryid"])
        else:
            try:
                budget.pattern = re.compile(str(selectors["pattern"]), re.IGNORECASE)
            except re.error as exc:
                raise AuditError(f"{source}: {key}.pattern is not a valid regular expression ({exc})") from None
        config.statements.append(budget)
    for key, entry in array_of_tables(source, data.get("suppress", []), "suppress"):
        for k in entry:
            if k not in ("id", "reason", "expires"):
                raise AuditError(f"{source}: unknown key {key}.{k} (known: expires, id, reason)")
        for k in ("id", "reason", "expires"):
            if not entry.get(k):
                raise AuditError(
                    f"{source}: {key}.{k} is required (a suppression names the finding id, why, and until when)"
                )
        expires = entry["expires"]
        if isinstance(expires, str):
            try:
                expires = dt.date.fromisoformat(expires)
            except ValueError:
                raise AuditError(f"{source}: {key}.expires must be a date (2026-03-31), not {expires!r}") from None
        elif isinstance(expires, dt.datetime):
            expires = expires.date()
        elif not isinstance(expires, dt.date):
            raise AuditError(f"{source}: {key}.expires must be a date (2026-03-31), not {expires!r}")
        config.suppressions.append(Suppression(str(entry["id"]), str(entry["reason"]), expires))
    return config


@dataclass
class Violation:
    budget: str  # the key that broke: mean-time-regression-pct, fail-on-new-finding, ...
    subject: str  # the statement or finding
    message: str
    queryid: str | None = None
    finding_id: str | None = None
    before: float | None = None
    after: float | None = None
    limit: float | str | None = None
    causes: list[dict] | None = None  # what explains a regression (history.causes), ranked
    cause_reason: str | None = None  # why no cause was found

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class Verdict:
    violations: list[Violation] = field(default_factory=list)
    suppressed: list[dict] = field(default_factory=list)  # findings a live suppression covered
    expired: list[Suppression] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    judged_statements: int = 0

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "violations": [v.to_dict() for v in self.violations],
            "suppressed": self.suppressed,
            "judged_statements": self.judged_statements,
            "expired_suppressions": [
                {"id": s.id, "reason": s.reason, "expires": s.expires.isoformat()} for s in self.expired
            ],
            "notes": self.notes,
        }


def _short(query: str, width: int = 80) -> str:
    flat = " ".join(query.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.3f} ms"


def causes_text(row: dict) -> str:
    """The ranked causes of a statement's change, for one line."""

    if row.get("causes"):
        return "; causes: " + ", ".join(cause_summary(c) for c in row["causes"])
    if row.get("reason"):
        return f"; no cause found: {row['reason']}"
    return ""


def evaluate(config: Config, comparison: dict, today: dt.date | None = None) -> Verdict:
    """Hold the comparison (history.baseline.compare) to the budgets; what broke, named."""
    today = today or dt.date.today()
    verdict = Verdict()
    has_baseline = comparison.get("before") is not None
    used_budgets: set[int] = set()
    for row in comparison["statements"]:
        after, before = row.get("after"), row.get("before")
        if not after or not after.get("calls"):
            continue
        queryid = row.get("after_queryid") or row["queryid"]
        limits = dict(config.thresholds)
        for n, budget in enumerate(config.statements):
            if budget.matches(queryid, row["query"]) or budget.matches(row["queryid"], row["query"]):
                limits.update(budget.thresholds)
                used_budgets.add(n)
        if not limits:
            continue
        verdict.judged_statements += 1
        subject = f'statement {queryid} "{_short(row["query"])}"'
        mean_after, calls = after.get("mean_exec_time_ms"), after["calls"]
        judged_mean = calls >= config.min_calls

        def broke(key, before_v, after_v, text, subject=subject, queryid=queryid, limits=limits):
            verdict.violations.append(
                Violation(
                    key,
                    subject,
                    f"{subject}: {text}",
                    queryid=queryid,
                    before=before_v,
                    after=after_v,
                    limit=limits[key],
                )
            )

        if "mean-time-regression-pct" in limits and before and judged_mean and mean_after is not None:
            mean_before = before.get("mean_exec_time_ms")
            if (
                mean_before is not None
                and before.get("calls", 0) >= config.min_calls
                and max(mean_before, mean_after) >= config.min_mean_ms
                and mean_before > 0
            ):
                change = (mean_after - mean_before) / mean_before * 100
                # Over budget only when the change is real as compare judges it (Welch's test,
                # and not the machine's load: queryaudit.before_after); without a spread the
                # change alone decides.
                test = row.get("significance") or {}
                noise = test.get("method") == "welch" and (
                    not test.get("significant") or bool(test.get("within_machine_noise"))
                )
                if change > limits["mean-time-regression-pct"] and noise:
                    verdict.notes.append(
                        f"{subject}: mean {_ms(mean_before)} -> {_ms(mean_after)} "
                        f"(+{change:,.0f} %) is within the noise ({row.get('mean_change_text')})"
                    )
                elif change > limits["mean-time-regression-pct"]:
                    broke(
                        "mean-time-regression-pct",
                        mean_before,
                        mean_after,
                        f"mean time {_ms(mean_before)} -> {_ms(mean_after)} (+{change:,.0f} %, budget "
                        f"{limits['mean-time-regression-pct']:g} %){causes_text(row)}",
                    )
                    verdict.violations[-1].causes = row.get("causes")
                    verdict.violations[-1].cause_reason = row.get("reason")
        if (
            "max-mean-time-ms" in limits
            and judged_mean
            and mean_after is not None
            and mean_after > limits["max-mean-time-ms"]
        ):
            broke(
                "max-mean-time-ms",
                (before or {}).get("mean_exec_time_ms"),
                mean_after,
                f"mean time {_ms(mean_after)} over {calls} calls (budget {limits['max-mean-time-ms']:g} ms)",
            )
        if "max-total-time-ms" in limits and after["total_exec_time_ms"] > limits["max-total-time-ms"]:
            broke(
                "max-total-time-ms",
                (before or {}).get("total_exec_time_ms"),
                after["total_exec_time_ms"],
                f"total time {_ms(after['total_exec_time_ms'])} in the window "
                f"(budget {limits['max-total-time-ms']:g} ms)",
            )
        if "max-calls" in limits and calls > limits["max-calls"]:
            broke(
                "max-calls",
                (before or {}).get("calls"),
                calls,
                f"{calls:,} calls in the window (budget {limits['max-calls']:g})",
            )
    for n, budget in enumerate(config.statements):
        if n not in used_budgets:
            verdict.notes.append(f"the budget for {budget.describe()} matched no statement of this audit")

    live = [s for s in config.suppressions if s.expires >= today]
    verdict.expired = [s for s in config.suppressions if s.expires < today]
    if config.fail_on_new_finding:
        worst = SEVERITY_RANK[config.fail_on_new_finding]
        if not has_baseline:
            verdict.notes.append("no baseline: every finding counts as new")
        for f in comparison["findings"]["new"]:
            if SEVERITY_RANK.get(f.get("severity"), 9) > worst:
                continue
            cover = next((s for s in live if s.matches(f["id"])), None)
            if cover:
                verdict.suppressed.append({"id": f["id"], "reason": cover.reason, "expires": cover.expires.isoformat()})
                continue
            subject = f"finding {f['id']}"
            lapsed = next((s for s in verdict.expired if s.matches(f["id"])), None)
            extra = f" (its suppression expired on {lapsed.expires.isoformat()})" if lapsed else ""
            verdict.violations.append(
                Violation(
                    "fail-on-new-finding",
                    subject,
                    f"new {f.get('severity')} finding {f['id']}: {f.get('title')}{extra} "
                    f"(budget: no new finding of severity {config.fail_on_new_finding} or worse)",
                    finding_id=f["id"],
                    limit=config.fail_on_new_finding,
                )
            )
    return verdict
