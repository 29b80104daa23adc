"""An audit plus an advisor run leave pg_stat_statements as they found it.

A dedicated cluster with a small pg_stat_statements.max (the default track = top and
track_utility = on, as on a production server), a 100-statement workload, then a full
audit (plan capture, fix verification) and an advisor run as a pg_monitor + SELECT
role: no entry is deallocated, every workload statement is still there, and the
auditor's own entries stay within the bound README states.
"""

from __future__ import annotations

import psycopg
import pytest

from conftest import VERSIONS, _bin_dir
from queryaudit.advisor.stage import AdvisorOptions
from queryaudit.demo.cluster import start_cluster
from queryaudit.pipeline import AuditOptions, collect_live
from queryaudit.plans.explain import EXPLAIN_ENTRIES

PGSS_MAX = 400  # the smallest pg_stat_statements.max accepts is 100
# The auditor's own constant texts, whatever the workload: the collection queries of
# every stage, the EXPLAIN machinery (one EXPLAIN text per options string), HypoPG
# calls, BEGIN/ROLLBACK/SAVEPOINT (47 on 15 and 44 on 18 measured).
OWN_ENTRIES_BOUND = 60

SHAPES = [
    "SELECT id FROM t{t} WHERE a = %s",
    "SELECT count(*) FROM t{t} WHERE b = %s AND c > %s",
    "SELECT id, c FROM t{t} WHERE a = %s ORDER BY c LIMIT 5",
    "SELECT sum(d) FROM t{t} WHERE d BETWEEN %s AND %s",
    "SELECT id FROM t{t} WHERE e = %s",
    "SELECT id FROM t{t} WHERE b = %s AND a = %s",
    # No aliases: PostgreSQL 18 jumbles a relation by its alias, x JOIN y would be one entry.
    "SELECT count(*) FROM t{t} JOIN t{u} ON t{u}.a = t{t}.id WHERE t{t}.b = %s",
    "SELECT max(c) FROM t{t} WHERE a IN (%s, %s)",
    "SELECT id FROM t{t} WHERE lower(e) = %s",
    "SELECT a, count(*) FROM t{t} WHERE b = %s GROUP BY a",
]
VALUES = [(7,), (3, 100), (9,), (10, 20), ("v42",), (2, 42), (5,), (1, 2), ("v7",), (4,)]


def entries(conn) -> dict[tuple, str]:
    rows = conn.execute("SELECT userid, queryid, toplevel, query FROM pg_stat_statements").fetchall()
    return {(r[0], r[1], r[2]): r[3] for r in rows}


def calls(conn, keys) -> dict[tuple, int]:
    rows = conn.execute("SELECT userid, queryid, toplevel, calls FROM pg_stat_statements").fetchall()
    return {(r[0], r[1], r[2]): r[3] for r in rows if (r[0], r[1], r[2]) in keys}


@pytest.mark.parametrize("version", VERSIONS)
def test_audit_and_advisor_leave_pg_stat_statements_as_found(version, tmp_path):
    bin_dir = _bin_dir(version)
    if bin_dir is None:
        pytest.skip(f"{version} binaries not found")
    cluster = start_cluster(
        bin_dir,
        {
            "pg_stat_statements.max": str(PGSS_MAX),
            "pg_stat_statements.track": "top",
            "pg_stat_statements.track_utility": "on",
            "autovacuum": "off",
        },
    )
    try:
        with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
            admin.execute("CREATE EXTENSION pg_stat_statements")
            hypopg = bool(admin.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'hypopg'").fetchone())
            if hypopg:
                admin.execute("CREATE EXTENSION hypopg")
            for t in range(10):
                admin.execute(f"CREATE TABLE t{t} (id bigint PRIMARY KEY, a int, b int, c int, d int, e text)")
                admin.execute(
                    f"INSERT INTO t{t} SELECT g, g % 500, g % 20, g % 1000, g % 97, 'v' || g "
                    "FROM generate_series(1, 20000) g"
                )
            admin.execute("VACUUM ANALYZE")
            admin.execute("CREATE ROLE auditor LOGIN")
            admin.execute("GRANT pg_monitor TO auditor")
            admin.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO auditor")
            admin.execute("SELECT pg_stat_statements_reset()")
            with psycopg.connect(cluster.dsn()) as app:
                for t in range(10):
                    for shape, values in zip(SHAPES, VALUES, strict=True):
                        for _ in range(3):
                            app.execute(shape.format(t=t, u=(t + 1) % 10), values).fetchall()
                app.commit()
            before = entries(admin)
            dealloc_before = admin.execute("SELECT dealloc FROM pg_stat_statements_info").fetchone()[0]
            workload = {k for k, q in before.items() if " FROM t" in q}
            assert len(workload) == 100, sorted(before.values())
            calls_before = calls(admin, workload)

            snap = collect_live(
                cluster.dsn(user="auditor"), AuditOptions(top=100, advisor=AdvisorOptions(statements=100))
            )
            assert snap.plans and any(p.method.startswith("analyze") for p in snap.plans)
            assert snap.index_advice is not None and snap.index_advice.statements_considered >= 90
            if hypopg:
                assert snap.index_advice.method == "hypothetical" and snap.index_advice.proposed

            after = entries(admin)
            dealloc_after = admin.execute("SELECT dealloc FROM pg_stat_statements_info").fetchone()[0]
            calls_after = calls(admin, workload)
        own = {k: q for k, q in after.items() if k not in before}
        print(
            f"{version}: {len(before)} entries before, {len(after)} after, {len(own)} of the auditor's, "
            f"{snap.index_advice.planner_calls} advisor plans, dealloc {dealloc_before} -> {dealloc_after}"
        )
        # No deallocation: the auditor's statements fit in the room the table had, and its
        # PREPAREs (nested in a DO block) leave no invisible "sticky" entry behind.
        assert dealloc_after == dealloc_before
        assert workload <= set(after), "a workload statement was evicted"
        # track = top: an EXPLAIN ANALYZE of a workload statement runs it nested, uncounted.
        assert calls_after == calls_before
        # Plan capture's sampled rows and the estimate experiments' counts run nested too:
        # no entry per table, column set or condition.
        rest = sorted(q[:120] for q in own.values())
        print(f"{len(rest)} entries of the auditor's")
        assert len(rest) <= OWN_ENTRIES_BOUND, "\n".join(rest)
        assert not [q for q in rest if "TABLESAMPLE" in q or q.startswith("SELECT count(*) FROM")], rest
        # No EXPLAIN text per statement: the auditor's EXPLAINs are a handful of texts.
        explains = [q for q in own.values() if q.lstrip().upper().startswith("EXPLAIN")]
        assert len(explains) <= EXPLAIN_ENTRIES, explains
    finally:
        cluster.destroy()
