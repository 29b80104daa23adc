"""Renderers for a migration review: JSON, SARIF 2.1.0, JUnit XML, Markdown, GitHub Actions
annotations and the terminal. They format the review; they decide nothing."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from xml.etree import ElementTree as ET

from queryaudit import __version__
from queryaudit.findings import SEVERITIES
from queryaudit.migrations import Rule, all_rules
from queryaudit.migrations.review import MigrationFinding, ReviewResult, at_or_above
from queryaudit.migrations.rules.syntax import SYNTAX_ERROR

INFORMATION_URI = "https://pypi.org/project/queryaudit/"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
# GitHub code scanning orders alerts by security-severity (0-10) when it is present.
SECURITY_SEVERITY = {"critical": "9.5", "high": "7.5", "medium": "5.0", "low": "2.0", "info": "0.5"}


def summary(result: ReviewResult) -> dict:
    return {
        "findings_by_severity": {s: sum(1 for f in result.findings if f.severity == s) for s in SEVERITIES},
        "suppressed": len(result.suppressed),
        "worst": result.worst(),
    }


def to_dict(result: ReviewResult, fail_on: str) -> dict:
    return {
        "tool": {"name": "queryaudit", "version": __version__},
        "settings": {
            "pg_version": ".".join(map(str, result.settings.pg_version)),
            "assume_in_transaction": result.settings.assume_in_transaction,
            "fail_on": fail_on,
        },
        "files": result.files,
        "findings": [f.to_dict() for f in result.findings],
        "suppressed": [f.to_dict() for f in result.suppressed],
        "dynamic": result.dynamic,
        "errors": result.errors,  # files that were not reviewed (each is also a syntax-error finding)
        "summary": {**summary(result), "failed": result.fails(fail_on) or bool(result.errors)},
    }


def write_json(result: ReviewResult, path: Path, fail_on: str) -> None:
    Path(path).write_text(json.dumps(to_dict(result, fail_on), indent=2, default=str) + "\n")


# --- SARIF --------------------------------------------------------------------------------


def _uri(path: str) -> str:
    p = Path(path)
    try:
        p = p.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        pass
    return p.as_posix()


def _fingerprint(f: MigrationFinding) -> str:
    # stable across line shifts: the rule, the file and the statement's normalized text
    basis = "\0".join([f.rule, _uri(f.path), " ".join(f.statement.split()).lower(), f.message])
    return hashlib.sha256(basis.encode()).hexdigest()[:32]


def _rule_descriptor(r: Rule) -> dict:
    doc = r.doc.strip()
    body = doc.partition("\n")[2].strip()
    return {
        "id": r.id,
        "name": "".join(part.capitalize() for part in r.id.split("-")),
        "shortDescription": {"text": r.title},
        "fullDescription": {"text": r.summary},
        "help": {"text": f"{r.summary}\n\n{body}", "markdown": f"**{r.summary}**\n\n{body}"},
        "defaultConfiguration": {"level": SARIF_LEVEL[r.severity]},
        "properties": {
            "tags": ["postgresql", "migration", r.group],
            "precision": "high",
            "problem.severity": {"error": "error", "warning": "warning", "note": "recommendation"}[
                SARIF_LEVEL[r.severity]
            ],
            "security-severity": SECURITY_SEVERITY[r.severity],
            "queryaudit-severity": r.severity,
        },
    }


def _result(f: MigrationFinding, index: dict[str, int]) -> dict:
    text = f.message
    if f.lock:
        text += f". Lock: {f.lock} (blocks {f.blocks})" if f.blocks else f". Lock: {f.lock}"
    if f.rewrite is not None:
        text += ". Table rewritten" if f.rewrite else ". No table rewrite"
    if f.safe_sql:
        text += f". Safe alternative:\n{f.safe_sql}"
    out = {
        "ruleId": f.rule,
        "ruleIndex": index[f.rule],
        "level": SARIF_LEVEL[f.severity],
        "message": {"text": text},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": _uri(f.path), "uriBaseId": "%SRCROOT%"},
                    "region": {"startLine": f.line, "startColumn": f.column, "endLine": max(f.line, f.end_line)},
                }
            }
        ],
        "partialFingerprints": {"queryaudit/v1": _fingerprint(f)},
        "properties": {"severity": f.severity, "lock": f.lock, "rewrite": f.rewrite, "table": f.table},
    }
    if f.suppressed is not None:
        out["suppressions"] = [{"kind": "inSource", "justification": f.suppressed}]
    return out


def to_sarif(result: ReviewResult) -> dict:
    rules = all_rules()
    index = {r.id: i for i, r in enumerate(rules)}
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "queryaudit",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "informationUri": INFORMATION_URI,
                        "rules": [_rule_descriptor(r) for r in rules],
                    }
                },
                "originalUriBaseIds": {"%SRCROOT%": {"uri": Path.cwd().resolve().as_uri() + "/"}},
                "columnKind": "unicodeCodePoints",
                "results": [_result(f, index) for f in result.findings + result.suppressed],
                "invocations": [_invocation(result)],
            }
        ],
    }


def _invocation(result: ReviewResult) -> dict:
    """A file that does not parse is also a tool execution notification: the run did not review it."""
    notes = [
        {
            "level": "error",
            "message": {"text": f.message},
            "descriptor": {"id": f.rule},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": _uri(f.path), "uriBaseId": "%SRCROOT%"},
                        "region": {"startLine": f.line, "startColumn": f.column},
                    }
                }
            ],
        }
        for f in result.findings
        if f.rule == SYNTAX_ERROR
    ]
    return {"executionSuccessful": not notes, "toolExecutionNotifications": notes}


def write_sarif(result: ReviewResult, path: Path) -> None:
    Path(path).write_text(json.dumps(to_sarif(result), indent=2) + "\n")


# --- JUnit ----------------------------------------------------------------------------------


def to_junit(result: ReviewResult, fail_on: str) -> str:
    suites = ET.Element("testsuites", name="queryaudit review-migration")
    by_file: dict[str, list[MigrationFinding]] = {p: [] for p in result.files}
    for f in result.findings:
        by_file.setdefault(f.path, []).append(f)
    total = failures = 0
    for path, findings in by_file.items():
        suite = ET.SubElement(suites, "testsuite", name=path)
        cases = 0
        if not findings:
            ET.SubElement(suite, "testcase", classname=path, name="migration review")
            cases = 1
        for f in findings:
            case = ET.SubElement(
                suite, "testcase", classname=path, name=f"{f.rule} at line {f.line}", file=path, line=str(f.line)
            )
            cases += 1
            if f.rule == SYNTAX_ERROR:  # JUnit's "could not run", whatever the gate
                ET.SubElement(case, "error", message=f.message, type=f.rule).text = _details(f)
            elif at_or_above(f.severity, fail_on):
                failure = ET.SubElement(case, "failure", message=f.message, type=f.severity)
                failure.text = _details(f)
                failures += 1
            else:
                ET.SubElement(case, "system-out").text = f"{f.severity}: {_details(f)}"
        suite.set("tests", str(cases))
        suite.set("failures", str(sum(1 for c in suite if c.find("failure") is not None)))
        suite.set("errors", str(sum(1 for c in suite if c.find("error") is not None)))
        total += cases
    suites.set("tests", str(total))
    suites.set("failures", str(failures))
    suites.set("errors", str(sum(1 for f in result.findings if f.rule == SYNTAX_ERROR)))
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)


def _details(f: MigrationFinding) -> str:
    lines = [f"{f.path}:{f.line}:{f.column}: [{f.rule}] {f.message}", f"statement: {f.statement[:300]}"]
    if f.lock:
        lines.append(f"lock: {f.lock}" + (f" (blocks {f.blocks})" if f.blocks else ""))
    if f.rewrite is not None:
        lines.append(f"table rewrite: {'yes' if f.rewrite else 'no'}")
    if f.measured:
        lines.append(f"measured: {json.dumps(f.measured, default=str)}")
    if f.safe_sql:
        lines.append(f"safe alternative:\n{f.safe_sql}")
    for key in ("before_plan", "after_plan"):
        if f.evidence.get(key):
            lines.append(f"{key.replace('_', ' ')}:\n{f.evidence[key]}")
    return "\n".join(lines)


def write_junit(result: ReviewResult, path: Path, fail_on: str) -> None:
    Path(path).write_text(to_junit(result, fail_on) + "\n")


# --- Markdown (PR comment) -----------------------------------------------------------------


def _md_cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def to_markdown(result: ReviewResult, fail_on: str) -> str:
    s = summary(result)
    counts = ", ".join(f"{n} {sev}" for sev, n in s["findings_by_severity"].items() if n) or "no findings"
    verdict = "❌ fails" if result.fails(fail_on) or result.errors else "✅ passes"
    out = [
        f"## queryaudit migration review: {verdict} (`--fail-on {fail_on}`)",
        "",
        f"{len(result.files)} file(s), PostgreSQL {'.'.join(map(str, result.settings.pg_version))}: {counts}"
        + (f"; {s['suppressed']} suppressed" if s["suppressed"] else ""),
        "",
    ]
    if result.findings:
        out += ["| severity | rule | where | finding | lock | rewrite |", "|---|---|---|---|---|---|"]
        for f in result.findings:
            out.append(
                f"| {f.severity} | `{f.rule}` | `{_md_cell(f.path)}:{f.line}` | {_md_cell(f.message)} | "
                f"{f.lock or ''} | {'' if f.rewrite is None else ('yes' if f.rewrite else 'no')} |"
            )
        out.append("")
        for f in result.findings:
            if not (f.safe_sql or f.evidence.get("before_plan")):
                continue
            out += [f"<details><summary><code>{f.rule}</code> at {_md_cell(f.path)}:{f.line}</summary>", ""]
            if f.blocks:
                out += [f"Lock **{f.lock}** blocks {f.blocks}.", ""]
            if f.safe_sql:
                out += ["Safe alternative:", "", "```sql", f.safe_sql, "```", ""]
            for key, label in (("before_plan", "Plan before"), ("after_plan", "Plan after")):
                if f.evidence.get(key):
                    out += [f"{label}:", "", "```", f.evidence[key], "```", ""]
            out += ["</details>", ""]
    dyn = result.dynamic
    if dyn:
        out += [f"### Measured on scratch database `{dyn['scratch_database']}` ({dyn['mode']} mode)", ""]
        if dyn.get("note"):
            out += [f"_{dyn['note']}_", ""]
        out += ["| where | duration | strongest lock | rewritten |", "|---|---|---|---|"]
        for st in dyn.get("statements", []):
            rewritten = ", ".join(r["relation"] for r in st.get("rewritten", [])) or "-"
            out.append(
                f"| `{_md_cell(st['path'])}:{st['line']}` | {st.get('duration_ms', '-')} ms | "
                f"{st.get('strongest_lock') or st.get('error') or st.get('skipped') or '-'} | {rewritten} |"
            )
        out.append("")
    if result.suppressed:
        out += ["<details><summary>Suppressed</summary>", ""]
        out += [f"- `{f.rule}` at {_md_cell(f.path)}:{f.line}: {_md_cell(f.suppressed)}" for f in result.suppressed]
        out += ["", "</details>", ""]
    return "\n".join(out)


def write_markdown(result: ReviewResult, path: Path, fail_on: str) -> None:
    Path(path).write_text(to_markdown(result, fail_on) + "\n")


# --- GitHub Actions annotations -------------------------------------------------------------


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotations(result: ReviewResult) -> list[str]:
    command = {"critical": "error", "high": "error", "medium": "warning", "low": "notice", "info": "notice"}
    lines = []
    for f in result.findings:
        message = f.message + (f" Safe alternative: {f.safe_sql}" if f.safe_sql else "")
        lines.append(
            f"::{command[f.severity]} file={_escape_property(_uri(f.path))},line={f.line},col={f.column},"
            f"endLine={max(f.line, f.end_line)},title={_escape_property(f'{f.rule} ({f.severity})')}::"
            f"{_escape_data(message)}"
        )
    return lines


def in_github_actions() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


# --- terminal -------------------------------------------------------------------------------

STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": "dim"}


def emit(console, *parts: tuple[str, str | None]) -> None:
    """One line of (text, style) parts: through rich on a terminal, plain print otherwise
    (console None: the start-up path, which does not import rich when nobody sees colours)."""
    if console is None:
        print("".join(text for text, _ in parts))
        return
    from rich.text import Text  # rich only on a terminal (start-up)

    console.print(
        Text.assemble(*[(text, style or "") for text, style in parts]), highlight=False, soft_wrap=True
    )  # one line per finding: editors and CI logs link file:line:col


def render_terminal(result: ReviewResult, console, fail_on: str) -> None:
    for f in result.findings:
        emit(
            console,
            (f"{f.path}:{f.line}:{f.column}", "bold"),
            (" ", None),
            (f.severity, STYLE[f.severity]),
            (" ", None),
            (f.rule, "magenta"),
            (f" {f.message}", None),
        )
        facts = [f"also {', '.join(f.evidence['also'])} (the same fix)"] if f.evidence.get("also") else []
        if f.lock:
            facts.append(f"lock {f.lock}" + (f" (blocks {f.blocks})" if f.blocks else ""))
        if f.rewrite is not None:
            facts.append("table rewritten" if f.rewrite else "no rewrite")
        if f.measured and f.measured.get("duration_ms") is not None:
            facts.append(f"measured {f.measured['duration_ms']} ms, {f.measured.get('strongest_lock') or 'no lock'}")
        if facts:
            emit(console, ("    " + "; ".join(facts), "dim"))
        if f.safe_sql:
            emit(console, ("    safe: " + f.safe_sql.replace("\n", "\n          "), "green"))
        for key in ("before_plan", "after_plan"):
            if f.evidence.get(key):
                emit(
                    console,
                    (
                        f"    {key.replace('_', ' ')}:\n"
                        + "\n".join("      " + line for line in f.evidence[key].splitlines()),
                        None,
                    ),
                )
    s = summary(result)
    counts = ", ".join(f"{n} {sev}" for sev, n in s["findings_by_severity"].items() if n) or "no findings"
    reviewed = f"{len(result.files) - len(result.errors)} file(s) reviewed" + (
        f", {len(result.errors)} not reviewed (syntax error)" if result.errors else ""
    )
    emit(
        console,
        (
            f"{reviewed}: {counts}"
            + (f", {s['suppressed']} suppressed" if s["suppressed"] else "")
            + (f"; fails --fail-on {fail_on}" if result.fails(fail_on) else ""),
            None,
        ),
    )
