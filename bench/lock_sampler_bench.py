"""The lock sampler's own cost: queries per second and server time, from pg_stat_statements.

    .venv/bin/python bench/lock_sampler_bench.py [--dsn DSN] [--seconds 10] [--rate 10] [--sessions 50]

Without --dsn it starts a throwaway cluster (the embedded PostgreSQL 18). Two windows:
nobody waits (the tick query skips pg_locks: a one-time filter), then contention (a
holder and 3 waiters on one row, so every tick also reads pg_locks and pg_blocking_pids).
`--sessions` idle connections are opened so pg_stat_activity is not trivially small. The auditor's statements carry the
`/* queryaudit */` comment (queryaudit.connect.MARKER), which is how they are counted.
Not a test: run it on demand.
"""

from __future__ import annotations

import argparse
import threading
import time

import psycopg

from queryaudit.connect import OWN_STATEMENT_PATTERN, session
from queryaudit.locks.sampling import LockSampler, SampleOptions


def own_cost(admin: psycopg.Connection) -> dict[str, tuple[int, float]]:
    rows = admin.execute(
        "SELECT query, calls, total_exec_time FROM pg_stat_statements WHERE query LIKE %s", (OWN_STATEMENT_PATTERN,)
    ).fetchall()
    return {q: (int(c), float(t)) for q, c, t in rows}


def window(dsn: str, admin: psycopg.Connection, seconds: float, rate: float, label: str) -> None:
    admin.execute("SELECT pg_stat_statements_reset()")
    with session(dsn) as conn:
        started = time.monotonic()
        facts = LockSampler(conn, SampleOptions(seconds=seconds, rate_hz=rate)).run()
        elapsed = time.monotonic() - started
    cost = own_cost(admin)
    sampler = {q: v for q, v in cost.items() if "pg_stat_activity" in q or "pg_locks" in q}
    calls = sum(c for c, _ in sampler.values())
    server_ms = sum(t for _, t in sampler.values())
    print(
        f"{label}: {elapsed:.2f} s, {facts.ticks} ticks ({facts.ticks / elapsed:.1f}/s), "
        f"{facts.lock_queries} pg_locks reads; sampler queries {calls} ({calls / elapsed:.1f}/s), "
        f"server time {server_ms:.1f} ms ({server_ms / elapsed:.2f} ms per second sampled, "
        f"{100 * server_ms / 1000 / elapsed:.3f}% of one core)"
    )
    for query, (c, t) in sorted(sampler.items(), key=lambda kv: -kv[1][1]):
        kind = (
            "tick (one query)"
            if "pg_stat_activity" in query and "pg_blocking_pids" in query
            else ("held locks (once)" if "pg_locks" in query else "other")
        )
        print(f"    {kind:24} calls {c:6}  mean {t / c:.3f} ms  total {t:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=float, default=10)
    parser.add_argument("--sessions", type=int, default=50)
    args = parser.parse_args()
    cluster = None
    dsn = args.dsn
    if dsn is None:
        from queryaudit.demo.cluster import embedded_bin_dir, start_cluster

        cluster = start_cluster(embedded_bin_dir(), {"max_connections": "200"})
        dsn = cluster.dsn()
    idle, threads = [], []
    try:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            admin.execute("DROP TABLE IF EXISTS queryaudit_bench_counter")
            admin.execute("CREATE TABLE queryaudit_bench_counter (id int PRIMARY KEY, n int)")
            admin.execute("INSERT INTO queryaudit_bench_counter VALUES (1, 0)")
            idle = [psycopg.connect(dsn, autocommit=True) for _ in range(args.sessions)]
            window(dsn, admin, args.seconds, args.rate, "nobody waits")

            holder = psycopg.connect(dsn)
            holder.execute("UPDATE queryaudit_bench_counter SET n = n + 1 WHERE id = 1")

            def waiter():
                with psycopg.connect(dsn, autocommit=True) as c:
                    c.execute("UPDATE queryaudit_bench_counter SET n = n + 1 WHERE id = 1")

            threads = [threading.Thread(target=waiter) for _ in range(3)]
            for t in threads:
                t.start()
            time.sleep(0.3)
            window(dsn, admin, args.seconds, args.rate, "3 sessions waiting")
            holder.rollback()
            holder.close()
            for t in threads:
                t.join()
            admin.execute("DROP TABLE queryaudit_bench_counter")
    finally:
        for c in idle:
            c.close()
        if cluster:
            cluster.destroy()


if __name__ == "__main__":
    main()
