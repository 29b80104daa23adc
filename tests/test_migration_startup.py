"""review-migration's start-up path (`queryaudit review-migration`, `python -m queryaudit`):
argparse instead of typer, nothing imported that one file's review does not use, and the same
options and results as the typer command. The figure itself comes from
bench/startup_review_migration.py, never from a test."""

from __future__ import annotations

import subprocess
import sys

import typer

from conftest import ROOT, run_cli
from queryaudit.cli import app
from queryaudit.migrations.command import build_parser


def _option_names_of_typer_command() -> set[str]:
    command = typer.main.get_command(app).commands["review-migration"]
    return {opt for p in command.params for opt in (*p.opts, *p.secondary_opts) if opt.startswith("--")}


def test_the_start_up_parser_has_the_typer_commands_options():
    fast = {opt for action in build_parser()._actions for opt in action.option_strings if opt.startswith("--")}
    fast -= {"--help", "--debug"}  # --debug is the typer app's global option
    assert fast == _option_names_of_typer_command()


def test_the_start_up_path_imports_neither_typer_nor_the_database_driver(tmp_path):
    path = tmp_path / "0001.sql"
    path.write_text("ALTER TABLE t ADD COLUMN c text;\n")
    code = (
        "import sys\nfrom queryaudit.migrations.command import main\nmain([sys.argv[1]])\n"
        "heavy = sorted(m for m in ('typer', 'pydantic', 'psycopg', 'rich', 'sqlglot', 'sqlalchemy', "
        "'queryaudit.snapshot', 'queryaudit.cli') if m in sys.modules)\nprint('LOADED', heavy)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout, proc.stdout


def test_both_entry_points_give_the_same_review(tmp_path):
    path = tmp_path / "0001.sql"
    path.write_text("DROP TABLE t;\nALTER TABLE u RENAME COLUMN a TO b;\n")
    fast = subprocess.run(
        [sys.executable, "-m", "queryaudit", "review-migration", str(path), "--json", str(tmp_path / "fast.json")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    slow = run_cli("review-migration", str(path), "--json", str(tmp_path / "slow.json"))
    assert fast.returncode == slow.returncode == 1
    assert fast.stdout == slow.stdout
    assert (tmp_path / "fast.json").read_text() == (tmp_path / "slow.json").read_text()
    bad = subprocess.run(
        [sys.executable, "-m", "queryaudit", "review-migration", "--top", "0", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and bad.stderr.startswith("queryaudit: error:")
    listed = subprocess.run(
        [sys.executable, "-m", "queryaudit", "review-migration", "--list-rules"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert listed.returncode == 0 and listed.stdout == run_cli("review-migration", "--list-rules").stdout
