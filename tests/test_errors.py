"""Each connection and setup problem gives one clear line, exit code 2, no traceback."""

import pytest

from conftest import run_cli
from queryaudit.demo.cluster import embedded_bin_dir, start_cluster


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_unreachable_server():
    result = run_cli("audit", "--dsn", "postgresql://postgres@127.0.0.1:1/postgres")
    assert_one_line_error(result, "cannot reach the PostgreSQL server", "127.0.0.1")


def test_wrong_password_is_named_and_never_echoed(empty_db):
    empty_db.execute("DO $$ BEGIN CREATE ROLE password_required NOLOGIN; EXCEPTION WHEN duplicate_object THEN END $$")
    role = f"pw_{empty_db.name}"
    empty_db.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'right-secret' IN ROLE password_required")
    result = run_cli("audit", "--dsn", empty_db.dsn_as(role, "wrong-secret"))
    line = assert_one_line_error(result, "authentication failed", role)
    assert "wrong-secret" not in result.stderr + result.stdout
    assert "right-secret" not in line


def test_missing_database(server):
    dsn = server.cluster.dsn("no_such_db")
    assert_one_line_error(run_cli("audit", "--dsn", dsn), 'database "no_such_db" does not exist')


def test_extension_not_created(empty_db):
    empty_db.execute("DROP EXTENSION pg_stat_statements")
    assert_one_line_error(run_cli("audit", "--dsn", empty_db.dsn), "CREATE EXTENSION pg_stat_statements")


def test_extension_not_preloaded(tmp_path):
    cluster = start_cluster(embedded_bin_dir(), {"shared_preload_libraries": "''"})
    try:
        import psycopg

        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pg_stat_statements")
        result = run_cli("audit", "--dsn", cluster.dsn())
        assert_one_line_error(result, "shared_preload_libraries", "restart")
    finally:
        cluster.destroy()


def test_missing_privilege_names_the_grant(shop_db):
    shop_db.run_workload("shop")  # statements of the superuser, invisible to a plain role
    role = f"plain_{shop_db.name}"
    shop_db.execute(f"CREATE ROLE {role} LOGIN")
    result = run_cli("audit", "--dsn", shop_db.dsn_as(role))
    assert_one_line_error(result, "GRANT pg_read_all_stats")


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["audit", "--snapshot", "/nonexistent/snap.json"], "snapshot file not found"),
        (["audit", "--dsn", "this is not a dsn"], "connection string"),
        (["audit", "--log", "/nonexistent/postgresql.log"], "log file not found"),
        (["plan", "/nonexistent/plan.txt"], "not found"),
        (["compare", "/nonexistent/a.json", "/nonexistent/b.json"], "a.json"),
        (["review-migration", "/nonexistent/0001.sql"], "no such file"),
    ],
)
def test_bad_input(args, fragment):
    assert_one_line_error(run_cli(*args), fragment)
