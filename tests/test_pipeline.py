"""One pipeline: `audit`, `fleet` (targets.toml) and `check` build the same audit from the
same options. Here the explain options and the logs, on a real server: a statement slower
than --explain-timeout gets a plain EXPLAIN, --analyze-dml explains the UPDATE in a
rolled-back transaction, and --log adds the log section, whichever command ran."""

import json

import pytest

from conftest import run_cli
from queryaudit.pipeline import AuditOptions, build_stages
from queryaudit.verify.stage import VerifyOptions

LOG = """\
2026-11-30 03:00:00.100 UTC [4242] LOG:  duration: 2.500 ms  statement: SELECT v FROM parity WHERE id = 1
2026-11-30 03:00:00.200 UTC [4242] LOG:  duration: 2.500 ms  statement: SELECT v FROM parity WHERE id = 2
2026-11-30 03:00:00.300 UTC [4243] LOG:  duration: 12.000 ms  statement: UPDATE parity SET v = v + 1 WHERE id = 3
"""


def test_build_stages_is_pure_and_follows_the_options():
    options = AuditOptions(top=7, sample_seconds=1, explain=True, explain_statement_ms=100, analyze_dml=True)
    before = list(options.collect.stages)
    names = [name for name, _ in build_stages(options, "postgresql://nowhere/db")]
    assert names == [
        "lock sampling",
        "plans",
        "estimate experiments",
        "fix verification",
        "index advisor",
        "index sizing",
    ]
    assert options.collect.stages == before and options.collect.top == 20  # the caller's options are untouched
    assert [n for n, _ in build_stages(AuditOptions(explain=False), "x")] == ["index advisor"]
    # A live audit reads its logs before plan capture (logged values for the plans); no verification asked.
    with_logs = AuditOptions(logs=["server.log"], verify=VerifyOptions(enabled=False))
    assert [n for n, _ in build_stages(with_logs, "x")] == [
        "logs",
        "plans",
        "estimate experiments",
        "index advisor",
        "index sizing",
    ]


# The statement is slower than the --explain-timeout by a sleep (a floor, whatever the load);
# the UPDATE's EXPLAIN ANALYZE has the whole timeout, far more than it needs on a busy machine.
EXPLAIN_TIMEOUT_S = 1.0
SLOW_S = 1.5


def _methods(report: dict) -> dict[str, str]:
    return {
        q["query"].split()[0]: q["plan_method"]
        for q in report["queries"]
        if "parity" in q["query"] and q["query"].startswith(("SELECT count", "UPDATE"))
    }


@pytest.fixture
def parity_db(empty_db):
    empty_db.execute("CREATE TABLE parity (id int PRIMARY KEY, v int NOT NULL)")
    empty_db.execute("INSERT INTO parity SELECT g, g % 10 FROM generate_series(1, 200) g")
    empty_db.execute("ANALYZE parity")  # pg_stats gives the EXPLAINs their parameter values
    # STABLE, so plan capture may execute the statement: only its recorded mean keeps it from
    # EXPLAIN ANALYZE. The sleep is a floor that no machine, quiet or loaded, goes under.
    empty_db.execute(
        "CREATE FUNCTION parity_wait(float8) RETURNS int STABLE LANGUAGE sql AS 'SELECT 1 FROM pg_sleep($1)'"
    )
    empty_db.execute("SELECT pg_stat_statements_reset()")
    for _ in range(2):
        empty_db.execute("SELECT count(*), parity_wait(%s) FROM parity WHERE v <> 1", (SLOW_S,))
        empty_db.execute("UPDATE parity SET v = v + 1 WHERE id = %s", (3,))
    return empty_db


def test_audit_fleet_and_check_honour_explain_options_and_logs(parity_db, tmp_path):
    log = tmp_path / "postgresql.log"
    log.write_text(LOG)
    options = [
        "--explain-timeout",
        str(EXPLAIN_TIMEOUT_S),
        "--analyze-dml",
        "--log",
        str(log),
        "--log-line-prefix",
        "%m [%p] ",
    ]

    result = run_cli("audit", "--dsn", parity_db.dsn, *options, "--json", str(tmp_path / "audit.json"))
    assert result.returncode == 0, result.stderr
    audit = json.loads((tmp_path / "audit.json").read_text())

    (tmp_path / "targets.toml").write_text(f'[[target]]\nname = "parity"\ndsn = "{parity_db.dsn}"\n')
    result = run_cli("fleet", str(tmp_path / "targets.toml"), *options, "--out-dir", str(tmp_path / "fleet"))
    assert result.returncode == 0, result.stdout + result.stderr
    fleet = json.loads((tmp_path / "fleet" / "parity.json").read_text())

    result = run_cli(
        "check",
        "--dsn",
        parity_db.dsn,
        *options,
        "--store",
        str(tmp_path / "h.db"),
        "--json",
        str(tmp_path / "check.json"),
    )
    assert result.returncode in (0, 1), result.stderr
    check = json.loads((tmp_path / "check.json").read_text())["report"]

    for name, report in (("audit", audit), ("fleet", fleet), ("check", check)):
        # The statement's recorded mean is over the --explain-timeout: a plain EXPLAIN.
        assert _methods(report) == {"SELECT": "explain", "UPDATE": "analyze-rolled-back"}, (name, _methods(report))
        assert report["logs"] and report["logs"]["records"] == 3 and report["logs"]["statement_count"] == 2, name


def test_targets_toml_overrides_the_audit_options_per_target(tmp_path):
    from queryaudit.history.fleet import FleetOptions, load_targets

    (tmp_path / "targets.toml").write_text(
        '[[target]]\nname = "a"\ndsn = "postgresql://x/a"\nexplain-timeout = 0.5\nanalyze-dml = true\n'
        'log = ["a.log"]\n\n[[target]]\nname = "b"\ndsn = "postgresql://x/b"\n'
    )
    (a, b), _ = load_targets(tmp_path / "targets.toml")
    defaults = FleetOptions(audit=AuditOptions(top=5, redact=True, explain_statement_ms=2000))
    first, second = a.options(defaults).audit, b.options(defaults).audit
    assert (first.explain_statement_ms, first.analyze_dml, first.logs, first.top, first.redact) == (
        500,
        True,
        ["a.log"],
        5,
        True,
    )
    assert (second.explain_statement_ms, second.analyze_dml, second.logs) == (2000, False, [])
    assert defaults.audit.explain_statement_ms == 2000  # the command line's options are not changed
