"""The command line itself, database-free: version, help, missing optional parts."""
from conftest import run_cli
from queryaudit import __version__


def test_version_prints_and_exits_zero():
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"queryaudit {__version__}"
