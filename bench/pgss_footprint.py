"""What planning leaves in pg_stat_statements: 150 distinct statements, each planned with
values, with EXPLAIN ANALYZE and generic, through explain_prepared and through the
advisor's Planner, on PostgreSQL 15 and 18 with pg_stat_statements.max = 100 (its
minimum) and track = top. Prints the deallocations and the entries the view shows.

    .venv/bin/python bench/pgss_footprint.py

A sticky entry per PREPARE shows here as deallocations: the view does not list them.
"""

from __future__ import annotations

import psycopg

from queryaudit.demo.cluster import embedded_bin_dir, start_cluster, system_bin_dir
from queryaudit.plans.explain import Planner, explain_prepared

STATEMENTS = 150


def statement(i: int, extra: str) -> str:
    return f"SELECT id, {'a, ' * (i // 5)}{extra} FROM t{i % 5} WHERE a = $1 AND e = $2 AND id > 5"


def main() -> None:
    for version, bin_dir in (("pg15", system_bin_dir(15)), ("pg18", embedded_bin_dir())):
        if bin_dir is None:
            print(f"{version}: binaries not found")
            continue
        settings = {"pg_stat_statements.max": "100", "pg_stat_statements.track": "top", "autovacuum": "off"}
        cluster = start_cluster(bin_dir, settings)
        try:
            with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
                admin.execute("CREATE EXTENSION pg_stat_statements")
                for t in range(5):
                    admin.execute(f"CREATE TABLE t{t} (id int, a int, d date, e text)")
                admin.execute("SELECT pg_stat_statements_reset()")
                with psycopg.connect(cluster.dsn()) as conn:
                    for i in range(STATEMENTS):
                        for options, generic in (("FORMAT JSON", False), ("ANALYZE, FORMAT JSON", False)):
                            explain_prepared(conn, statement(i, "e"), options, [5, "x"], generic=generic)
                        explain_prepared(conn, statement(i, "e"), "FORMAT JSON", generic=True)
                    planner = Planner(conn)
                    for i in range(STATEMENTS):
                        planner.plan(statement(i, "d"), [5, "x"])
                        planner.plan(statement(i, "d"), [6, "x"])
                        planner.plan(statement(i, "d"), generic=True)
                    planner.close()
                dealloc = admin.execute("SELECT dealloc FROM pg_stat_statements_info").fetchone()[0]
                shown = admin.execute("SELECT count(*) FROM pg_stat_statements").fetchone()[0]
            print(
                f"{version}: {STATEMENTS * 6} plans of {STATEMENTS * 2} statements: dealloc {dealloc}, {shown} entries"
            )
        finally:
            cluster.destroy()


if __name__ == "__main__":
    main()
