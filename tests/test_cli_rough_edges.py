"""The command line as a new user meets it (issue 26): help at 80 columns without a terminal,
review-migration's help, --debug after the command, the error without a DSN, the terminal
report's layout, `| head`, and snapshot --redact."""

from __future__ import annotations

import copy
import io
import json
import os
import subprocess
import sys

import pytest
import typer
from rich.console import Console

from conftest import ROOT, run_cli
from queryaudit.cli import app, hoist_debug
from queryaudit.report import terminal

COMMANDS = sorted(typer.main.get_command(app).commands)


def _long_options(command: str) -> set[str]:
    cmd = typer.main.get_command(app).commands[command]
    return {o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")}


@pytest.mark.parametrize("command", COMMANDS)
def test_help_at_80_columns_without_a_terminal_names_every_option_whole(command):
    result = run_cli(command, "--help", env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    assert "…" not in result.stdout and "<bool>" not in result.stdout
    words = set(result.stdout.replace(",", " ").split())
    assert _long_options(command) <= words, _long_options(command) - words


def test_review_migration_help_is_the_same_from_both_entry_points():
    typer_help = run_cli("review-migration", "--help", env={"COLUMNS": "80"})
    for flag in ("--help", "-h"):
        fast = subprocess.run(
            [sys.executable, "-m", "queryaudit", "review-migration", flag],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "COLUMNS": "80"},
        )
        assert fast.returncode == 0, fast.stderr
        assert fast.stdout == typer_help.stdout
    # It reads like every other command's help: the same heading and option lines.
    assert typer_help.stdout.startswith("Usage: queryaudit review-migration [OPTIONS]")
    assert "  --assume-in-transaction " in typer_help.stdout and "-h, --help" in typer_help.stdout


def test_hoist_debug_moves_it_before_the_command_and_leaves_values_after_double_dash():
    assert hoist_debug(["audit", "--top", "3", "--debug"]) == ["--debug", "audit", "--top", "3"]
    assert hoist_debug(["plan", "--", "--debug"]) == ["plan", "--", "--debug"]
    assert hoist_debug(["checks"]) == ["checks"]


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_before_or_after_the_command_prints_the_traceback(tmp_path, where):
    missing = str(tmp_path / "missing.txt")
    args = ["--debug", "plan", missing] if where == "before" else ["plan", missing, "--debug"]
    result = run_cli(*args)
    assert result.returncode == 2
    assert "Traceback" in result.stderr and f"plan file not found: {missing}" in result.stderr
    fast = subprocess.run(
        [sys.executable, "-m", "queryaudit", "review-migration", missing, "--debug"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert fast.returncode == 2 and "Traceback" in fast.stderr
    quiet = run_cli("plan", missing)
    assert "Traceback" not in quiet.stderr and quiet.stderr.count("\n") == 1


def test_no_dsn_and_no_pg_variables_says_no_dsn_was_given(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k != "DATABASE_URL"}
    # libpq's default is the local socket: point it at an empty folder so no server can answer there.
    result = subprocess.run(
        [sys.executable, "-m", "queryaudit.cli", "audit", "--no-explain"],
        capture_output=True,
        text=True,
        env={**env, "PGSYSCONFDIR": str(tmp_path)},
        cwd=tmp_path,
    )
    if "PGHOST" in os.environ or os.path.exists("/var/run/postgresql/.s.PGSQL.5432"):
        pytest.skip("a server answers on the default socket here")
    assert result.returncode == 2
    assert result.stderr.startswith("queryaudit: error: no DSN given") and result.stderr.count("\n") == 1
    assert "--dsn postgresql://" in result.stderr and "DATABASE_URL" in result.stderr
    assert "TCP" not in result.stderr


def test_review_migration_into_a_closed_pipe_stops_quietly(tmp_path):
    # Enough findings that the output outgrows the pipe's buffer before the reader leaves.
    path = tmp_path / "0001_many.sql"
    path.write_text("".join(f"ALTER TABLE t{i} ADD COLUMN c int NOT NULL;\n" for i in range(3000)))
    for entry in (["queryaudit"], ["queryaudit.cli"]):
        proc = subprocess.Popen(
            [sys.executable, "-m", *entry, "review-migration", str(path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout.readline()
        proc.stdout.close()
        stderr = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 141, stderr
        assert stderr == ""


def _report() -> dict:
    report = copy.deepcopy(json.loads((ROOT / "reports" / "demo.json").read_text()))
    base = report["summary"]["top_fixes"][0]
    measured = {
        "method": "real",
        "kind": "EXPLAIN ANALYZE of SELECT 3",
        "measure": "measured time",
        "before_text": "4.1 ms",
        "after_text": "0.009 ms",
        "runs": 3,
    }
    report["summary"]["top_fixes"] = [
        {
            **base,
            "title": "first fix",
            "fix_sql": "CREATE INDEX one ON t (a);",
            "before_after": None,
            "saving_basis": None,
        },
        {
            **base,
            "title": "second fix",
            "fix_sql": "CREATE INDEX two ON t (b);",
            "before_after": None,
            "saving_basis": None,
        },
        {**base, "title": "third fix", "fix_sql": None, "before_after": measured, "saving_basis": None},
    ]
    report["queries"][0]["rows_per_call"] = 200000.0
    report["queries"][1]["rows_per_call"] = 0.5
    return report


def _render(report: dict, compare: bool = False, width: int = 100) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None)
    (terminal.render_compare if compare else terminal.render)(report, console)
    return out.getvalue()


def test_terminal_fix_lines_sit_under_their_own_fix_and_rows_per_call_are_whole():
    text = _render(_report())
    after_second = text[text.index("-- fix #2") :]
    assert "-- fix #3: third fix" in after_second
    third = after_second.index("-- fix #3")
    assert after_second.index("4.1 ms → 0.009 ms") > third  # the measurement follows its own heading
    assert "200,000" in text and "200000.0" not in text
    assert " 0.50 " in text


def test_terminal_compare_table_shows_the_whole_change():
    comparison = json.loads((ROOT / "reports" / "demo-compare.json").read_text())
    comparison["statements"][0]["mean_change_text"] = "no significant change (95 % interval -65% … +70%)"
    for width in (80, 100, 140):
        text = _render(comparison, compare=True, width=width)
        assert "no significant change" in text and "no significa…" not in text
        assert max(len(line) for line in text.splitlines()) <= width
        # Each statement keeps its text: in the table, or numbered under it when the table is narrow.
        assert all(s["query"][:15] in text for s in comparison["statements"][:15]), width
        assert "faster" in text  # the status column folded into the change


def test_checks_lines_up_every_title_after_the_longest_id():
    result = run_cli("checks")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("parallel-workers-not-launched ") for line in lines)
    columns = {len(line) - len(line.split(None, 1)[1]) for line in lines}
    assert len(columns) == 1, columns


@pytest.mark.parametrize("redact", [True, False])
def test_snapshot_redact_replaces_the_values_it_collects(shop_db, tmp_path, redact):
    shop_db.run_workload("shop")
    path = tmp_path / "snap.json"
    result = run_cli("snapshot", "--dsn", shop_db.dsn, "--no-explain", "-o", str(path), *(["--redact"] * redact))
    assert result.returncode == 0, result.stderr
    stats = [
        c
        for c in json.loads(path.read_text())["column_stats"]
        if c["table"] == "public.orders" and c["column"] == "status"
    ]
    values = stats[0]["most_common_vals"]
    assert values
    statuses = {r[0] for r in shop_db.execute("SELECT DISTINCT status FROM orders")}
    if redact:
        assert not statuses & set(map(str, values)), values
    else:
        assert set(map(str, values)) <= statuses
