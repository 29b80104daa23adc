"""Index advisor benchmark (issue 4), run on demand, not in CI.

1. Throughput: 100 distinct statements over 25 tables (--statements), values bound by
   an audit's plan capture, advice verified with HypoPG; prints the plans made, the
   seconds and the load average (target: the advice under 60 s on 2 cores).
2. TPC-H-style: the 8 tables generated locally at a small scale factor (primary keys
   only, as dbgen loads them), the 22 queries adapted to PostgreSQL with fixed
   substitution parameters. Reports the workload cost reduction (sum of the queries'
   planner costs with the chosen set, all hypothetical indexes together) at storage
   budgets of 1x, 2x and 4x the largest table, and the advisor's runtime. Each query
   weighs its own baseline cost (the TPC-H power test runs each once).

Run from a checkout:  .venv/bin/python bench/advisor_bench.py [--sf 0.05] [--skip-throughput]
Needs PostgreSQL 15 with HypoPG (/usr/lib/postgresql/15/bin, postgresql-15-hypopg).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from queryaudit.advisor.stage import AdvisorOptions, advise  # noqa: E402
from queryaudit.collect import CollectOptions, catalog, collect_snapshot  # noqa: E402
from queryaudit.connect import session  # noqa: E402
from queryaudit.demo.cluster import start_cluster, system_bin_dir  # noqa: E402
from queryaudit.pipeline import AuditOptions, collect_live  # noqa: E402
from queryaudit.snapshot import Statement  # noqa: E402
from queryaudit.sql import resolve_tables  # noqa: E402
from queryaudit.verify.stage import VerifyOptions  # noqa: E402


def throughput(cluster, statements: int = 100) -> None:
    """`statements` distinct statements (4 shapes over statements/4 tables), run with
    values; an audit's plan capture binds values to each (as the advisor command does),
    then the advisor alone is timed: plans made, seconds, load average."""
    tables = max(1, statements // 4)
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE bench_many")
    dsn = cluster.dsn("bench_many")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
        conn.execute("CREATE EXTENSION hypopg")
        for t in range(tables):
            conn.execute(f"CREATE TABLE t{t} (id bigint PRIMARY KEY, a int, b int, c timestamptz, d int, e text)")
            conn.execute(
                f"INSERT INTO t{t} SELECT g, g % 500, g % 20, now() - g * interval '1 min', g % 7, "
                f"'v' || g FROM generate_series(1, 20000) g"
            )
        conn.execute("VACUUM ANALYZE")
        conn.execute("SELECT pg_stat_statements_reset()")
        shapes = [
            "SELECT id, e FROM t{t} WHERE a = %s",
            "SELECT id FROM t{t} WHERE b = %s AND c > %s ORDER BY c LIMIT 10",
            "SELECT count(*) FROM t{t} JOIN t{u} ON t{u}.d = t{t}.id WHERE t{t}.a = %s",
            "SELECT id FROM t{t} WHERE lower(e) = %s",
        ]
        for t in range(tables):
            for n, shape in enumerate(shapes):
                values = ("v42",) if n == 3 else (42, "2024-01-01") if n == 1 else (42,)
                conn.execute(shape.format(t=t, u=(t + 1) % tables), values).fetchall()
    snap = collect_live(
        dsn, AuditOptions(top=statements, advisor=AdvisorOptions(enabled=False), verify=VerifyOptions(enabled=False))
    )
    load = os.getloadavg()[0]
    with session(dsn) as conn:
        started = time.monotonic()
        advice = advise(conn, snap, AdvisorOptions(statements=statements))
        seconds = time.monotonic() - started
    on_values = sum(1 for v in advice.costed_on.values() if v != "generic plan")
    print(
        f"throughput: {advice.statements_considered} statements over {tables} tables "
        f"({on_values} costed on captured values), {advice.candidates_considered} candidates, "
        f"{advice.planner_calls} plans made in {seconds:.1f} s "
        f"= {advice.statements_considered / seconds:.1f} statements/s; {len(advice.proposed)} indexes proposed; "
        f"load average {load:.1f} before, {os.getloadavg()[0]:.1f} after"
    )


TPCH_SCHEMA = """
CREATE TABLE region (r_regionkey int PRIMARY KEY, r_name text, r_comment text);
CREATE TABLE nation (n_nationkey int PRIMARY KEY, n_name text, n_regionkey int, n_comment text);
CREATE TABLE supplier (s_suppkey int PRIMARY KEY, s_name text, s_address text, s_nationkey int, s_phone text,
                       s_acctbal numeric(15,2), s_comment text);
CREATE TABLE customer (c_custkey int PRIMARY KEY, c_name text, c_address text, c_nationkey int, c_phone text,
                       c_acctbal numeric(15,2), c_mktsegment text, c_comment text);
CREATE TABLE part (p_partkey int PRIMARY KEY, p_name text, p_mfgr text, p_brand text, p_type text, p_size int,
                   p_container text, p_retailprice numeric(15,2), p_comment text);
CREATE TABLE partsupp (ps_partkey int, ps_suppkey int, ps_availqty int, ps_supplycost numeric(15,2),
                       ps_comment text, PRIMARY KEY (ps_partkey, ps_suppkey));
CREATE TABLE orders (o_orderkey int PRIMARY KEY, o_custkey int, o_orderstatus text, o_totalprice numeric(15,2),
                     o_orderdate date, o_orderpriority text, o_clerk text, o_shippriority int, o_comment text);
CREATE TABLE lineitem (l_orderkey int, l_partkey int, l_suppkey int, l_linenumber int, l_quantity numeric(15,2),
                       l_extendedprice numeric(15,2), l_discount numeric(15,2), l_tax numeric(15,2),
                       l_returnflag text, l_linestatus text, l_shipdate date, l_commitdate date,
                       l_receiptdate date, l_shipinstruct text, l_shipmode text, l_comment text,
                       PRIMARY KEY (l_orderkey, l_linenumber));
"""

TPCH_DATA = """
SELECT setseed(0.4);
INSERT INTO region SELECT k, (ARRAY['AFRICA','AMERICA','ASIA','EUROPE','MIDDLE EAST'])[k + 1], 'r' FROM generate_series(0, 4) k;
INSERT INTO nation SELECT k, (ARRAY['ALGERIA','ARGENTINA','BRAZIL','CANADA','EGYPT','ETHIOPIA','FRANCE','GERMANY',
  'INDIA','INDONESIA','IRAN','IRAQ','JAPAN','JORDAN','KENYA','MOROCCO','MOZAMBIQUE','PERU','CHINA','ROMANIA',
  'SAUDI ARABIA','VIETNAM','RUSSIA','UNITED KINGDOM','UNITED STATES'])[k + 1],
  (ARRAY[0,1,1,1,4,0,3,3,2,2,4,4,2,4,0,0,0,1,2,3,4,2,3,3,1])[k + 1], 'n' FROM generate_series(0, 24) k;
INSERT INTO supplier SELECT k, 'Supplier#' || k, 'addr' || k, k % 25, (10 + k % 25) || '-' || k, random() * 10000,
  CASE WHEN k % 100 = 0 THEN 'Customer Complaints' ELSE 'fine' END FROM generate_series(1, {s}) k;
INSERT INTO customer SELECT k, 'Customer#' || k, 'addr' || k, k % 25, (10 + k % 25) || '-555-' || k,
  random() * 10000 - 1000, (ARRAY['AUTOMOBILE','BUILDING','FURNITURE','HOUSEHOLD','MACHINERY'])[1 + k % 5], 'c'
  FROM generate_series(1, {c}) k;
INSERT INTO part SELECT k, (ARRAY['almond','green','forest','navy','khaki','ivory'])[1 + k % 6] || ' ' ||
  (ARRAY['blush','lace','metallic','puff','rose'])[1 + k % 5], 'Manufacturer#' || (1 + k % 5),
  'Brand#' || (1 + k % 5) || (1 + k % 4),
  (ARRAY['ECONOMY','PROMO','STANDARD','MEDIUM','LARGE'])[1 + k % 5] || ' ' ||
  (ARRAY['ANODIZED','BRUSHED','POLISHED','PLATED'])[1 + k % 4] || ' ' || (ARRAY['BRASS','STEEL','TIN','COPPER'])[1 + k % 4],
  1 + k % 50, (ARRAY['SM','MED','LG','JUMBO','WRAP'])[1 + k % 5] || ' ' ||
  (ARRAY['CASE','BOX','PACK','PKG','BAG','JAR','DRUM','CAN'])[1 + k % 8], 900 + k % 1000, 'p'
  FROM generate_series(1, {p}) k;
INSERT INTO partsupp SELECT p, 1 + (p + i * ({s} / 4)) % {s}, 1 + (p * i) % 9999, 1 + (p * 7 + i) % 1000, 'ps'
  FROM generate_series(1, {p}) p, generate_series(0, 3) i;
INSERT INTO orders SELECT k, 1 + (k * 7) % ({c} * 2 / 3), (ARRAY['F','O','P'])[1 + k % 3], random() * 400000,
  date '1992-01-01' + (k * 13) % 2405, (ARRAY['1-URGENT','2-HIGH','3-MEDIUM','4-NOT SPECIFIED','5-LOW'])[1 + k % 5],
  'Clerk#' || (k % 1000), 0, CASE WHEN k % 50 = 0 THEN 'special requests' ELSE 'o' END
  FROM generate_series(1, {o}) k;
INSERT INTO lineitem SELECT o.o_orderkey, 1 + (o.o_orderkey * 31 + n) % {p}, 1 + (o.o_orderkey + n * 7) % {s}, n,
  1 + (o.o_orderkey + n) % 50, 1000 + (o.o_orderkey * n) % 50000, ((o.o_orderkey + n) % 11) / 100.0,
  ((o.o_orderkey + n) % 9) / 100.0, CASE WHEN o.o_orderdate < date '1995-06-17' THEN (ARRAY['R','A'])[1 + n % 2]
  ELSE 'N' END, CASE WHEN o.o_orderdate < date '1995-06-17' THEN 'F' ELSE 'O' END,
  o.o_orderdate + 1 + (o.o_orderkey + n) % 121, o.o_orderdate + 30 + n * 5, o.o_orderdate + 2 + (o.o_orderkey + n) % 150,
  (ARRAY['DELIVER IN PERSON','COLLECT COD','NONE','TAKE BACK RETURN'])[1 + n % 4],
  (ARRAY['REG AIR','AIR','RAIL','SHIP','TRUCK','MAIL','FOB'])[1 + (o.o_orderkey + n) % 7], 'l'
  FROM orders o, generate_series(1, 1 + o.o_orderkey % 7) n;
VACUUM ANALYZE;
"""  # noqa: E501

TPCH_QUERIES = [
    # 1
    """SELECT l_returnflag, l_linestatus, sum(l_quantity), sum(l_extendedprice), sum(l_extendedprice * (1 - l_discount)),
       avg(l_quantity), avg(l_discount), count(*) FROM lineitem WHERE l_shipdate <= date '1998-12-01' - interval '90 day'
       GROUP BY l_returnflag, l_linestatus ORDER BY l_returnflag, l_linestatus""",  # noqa: E501
    # 2
    """SELECT s_acctbal, s_name, n_name, p_partkey, p_mfgr FROM part, supplier, partsupp, nation, region
       WHERE p_partkey = ps_partkey AND s_suppkey = ps_suppkey AND p_size = 15 AND p_type LIKE '%BRASS'
       AND s_nationkey = n_nationkey AND n_regionkey = r_regionkey AND r_name = 'EUROPE'
       AND ps_supplycost = (SELECT min(ps_supplycost) FROM partsupp, supplier, nation, region
         WHERE p_partkey = ps_partkey AND s_suppkey = ps_suppkey AND s_nationkey = n_nationkey
         AND n_regionkey = r_regionkey AND r_name = 'EUROPE')
       ORDER BY s_acctbal DESC, n_name, s_name, p_partkey LIMIT 100""",
    # 3
    """SELECT l_orderkey, sum(l_extendedprice * (1 - l_discount)) AS revenue, o_orderdate, o_shippriority
       FROM customer, orders, lineitem WHERE c_mktsegment = 'BUILDING' AND c_custkey = o_custkey
       AND l_orderkey = o_orderkey AND o_orderdate < date '1995-03-15' AND l_shipdate > date '1995-03-15'
       GROUP BY l_orderkey, o_orderdate, o_shippriority ORDER BY revenue DESC, o_orderdate LIMIT 10""",
    # 4
    """SELECT o_orderpriority, count(*) FROM orders WHERE o_orderdate >= date '1993-07-01'
       AND o_orderdate < date '1993-10-01' AND EXISTS (SELECT * FROM lineitem WHERE l_orderkey = o_orderkey
       AND l_commitdate < l_receiptdate) GROUP BY o_orderpriority ORDER BY o_orderpriority""",
    # 5
    """SELECT n_name, sum(l_extendedprice * (1 - l_discount)) AS revenue FROM customer, orders, lineitem, supplier,
       nation, region WHERE c_custkey = o_custkey AND l_orderkey = o_orderkey AND l_suppkey = s_suppkey
       AND c_nationkey = s_nationkey AND s_nationkey = n_nationkey AND n_regionkey = r_regionkey
       AND r_name = 'ASIA' AND o_orderdate >= date '1994-01-01' AND o_orderdate < date '1995-01-01'
       GROUP BY n_name ORDER BY revenue DESC""",
    # 6
    """SELECT sum(l_extendedprice * l_discount) FROM lineitem WHERE l_shipdate >= date '1994-01-01'
       AND l_shipdate < date '1995-01-01' AND l_discount BETWEEN 0.05 AND 0.07 AND l_quantity < 24""",
    # 7
    """SELECT n1.n_name, n2.n_name, extract(year FROM l_shipdate), sum(l_extendedprice * (1 - l_discount))
       FROM supplier, lineitem, orders, customer, nation n1, nation n2 WHERE s_suppkey = l_suppkey
       AND o_orderkey = l_orderkey AND c_custkey = o_custkey AND s_nationkey = n1.n_nationkey
       AND c_nationkey = n2.n_nationkey AND ((n1.n_name = 'FRANCE' AND n2.n_name = 'GERMANY')
       OR (n1.n_name = 'GERMANY' AND n2.n_name = 'FRANCE'))
       AND l_shipdate BETWEEN date '1995-01-01' AND date '1996-12-31' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3""",
    # 8
    """SELECT extract(year FROM o_orderdate), sum(CASE WHEN n2.n_name = 'BRAZIL' THEN l_extendedprice ELSE 0 END)
       / sum(l_extendedprice) FROM part, supplier, lineitem, orders, customer, nation n1, nation n2, region
       WHERE p_partkey = l_partkey AND s_suppkey = l_suppkey AND l_orderkey = o_orderkey AND o_custkey = c_custkey
       AND c_nationkey = n1.n_nationkey AND n1.n_regionkey = r_regionkey AND r_name = 'AMERICA'
       AND s_nationkey = n2.n_nationkey AND o_orderdate BETWEEN date '1995-01-01' AND date '1996-12-31'
       AND p_type = 'ECONOMY ANODIZED STEEL' GROUP BY 1 ORDER BY 1""",
    # 9
    """SELECT n_name, extract(year FROM o_orderdate), sum(l_extendedprice * (1 - l_discount) - ps_supplycost * l_quantity)
       FROM part, supplier, lineitem, partsupp, orders, nation WHERE s_suppkey = l_suppkey AND ps_suppkey = l_suppkey
       AND ps_partkey = l_partkey AND p_partkey = l_partkey AND o_orderkey = l_orderkey AND s_nationkey = n_nationkey
       AND p_name LIKE '%green%' GROUP BY 1, 2 ORDER BY 1, 2 DESC""",  # noqa: E501
    # 10
    """SELECT c_custkey, c_name, sum(l_extendedprice * (1 - l_discount)) AS revenue, c_acctbal, n_name
       FROM customer, orders, lineitem, nation WHERE c_custkey = o_custkey AND l_orderkey = o_orderkey
       AND o_orderdate >= date '1993-10-01' AND o_orderdate < date '1994-01-01' AND l_returnflag = 'R'
       AND c_nationkey = n_nationkey GROUP BY c_custkey, c_name, c_acctbal, n_name ORDER BY revenue DESC LIMIT 20""",
    # 11
    """SELECT ps_partkey, sum(ps_supplycost * ps_availqty) AS value FROM partsupp, supplier, nation
       WHERE ps_suppkey = s_suppkey AND s_nationkey = n_nationkey AND n_name = 'GERMANY' GROUP BY ps_partkey
       HAVING sum(ps_supplycost * ps_availqty) > (SELECT sum(ps_supplycost * ps_availqty) * 0.0001
         FROM partsupp, supplier, nation WHERE ps_suppkey = s_suppkey AND s_nationkey = n_nationkey
         AND n_name = 'GERMANY') ORDER BY value DESC""",
    # 12
    """SELECT l_shipmode, count(*) FILTER (WHERE o_orderpriority IN ('1-URGENT', '2-HIGH'))
       FROM orders, lineitem WHERE o_orderkey = l_orderkey AND l_shipmode IN ('MAIL', 'SHIP')
       AND l_commitdate < l_receiptdate AND l_shipdate < l_commitdate AND l_receiptdate >= date '1994-01-01'
       AND l_receiptdate < date '1995-01-01' GROUP BY l_shipmode ORDER BY l_shipmode""",
    # 13
    """SELECT c_count, count(*) FROM (SELECT c_custkey, count(o_orderkey) AS c_count FROM customer
       LEFT OUTER JOIN orders ON c_custkey = o_custkey AND o_comment NOT LIKE '%special%requests%'
       GROUP BY c_custkey) AS c_orders GROUP BY c_count ORDER BY 2 DESC, c_count DESC""",
    # 14
    """SELECT 100.00 * sum(CASE WHEN p_type LIKE 'PROMO%' THEN l_extendedprice * (1 - l_discount) ELSE 0 END)
       / sum(l_extendedprice * (1 - l_discount)) FROM lineitem, part WHERE l_partkey = p_partkey
       AND l_shipdate >= date '1995-09-01' AND l_shipdate < date '1995-10-01'""",
    # 15
    """WITH revenue AS (SELECT l_suppkey AS supplier_no, sum(l_extendedprice * (1 - l_discount)) AS total_revenue
       FROM lineitem WHERE l_shipdate >= date '1996-01-01' AND l_shipdate < date '1996-04-01' GROUP BY l_suppkey)
       SELECT s_suppkey, s_name, total_revenue FROM supplier, revenue WHERE s_suppkey = supplier_no
       AND total_revenue = (SELECT max(total_revenue) FROM revenue) ORDER BY s_suppkey""",
    # 16
    """SELECT p_brand, p_type, p_size, count(DISTINCT ps_suppkey) FROM partsupp, part WHERE p_partkey = ps_partkey
       AND p_brand <> 'Brand#45' AND p_type NOT LIKE 'MEDIUM POLISHED%' AND p_size IN (49, 14, 23, 45, 19, 3, 36, 9)
       AND ps_suppkey NOT IN (SELECT s_suppkey FROM supplier WHERE s_comment LIKE '%Customer%Complaints%')
       GROUP BY p_brand, p_type, p_size ORDER BY 4 DESC, p_brand, p_type, p_size""",
    # 17
    """SELECT sum(l_extendedprice) / 7.0 FROM lineitem, part WHERE p_partkey = l_partkey AND p_brand = 'Brand#23'
       AND p_container = 'MED BOX' AND l_quantity < (SELECT 0.2 * avg(l_quantity) FROM lineitem
       WHERE l_partkey = p_partkey)""",
    # 18
    """SELECT c_name, c_custkey, o_orderkey, o_orderdate, o_totalprice, sum(l_quantity) FROM customer, orders, lineitem
       WHERE o_orderkey IN (SELECT l_orderkey FROM lineitem GROUP BY l_orderkey HAVING sum(l_quantity) > 300)
       AND c_custkey = o_custkey AND o_orderkey = l_orderkey
       GROUP BY c_name, c_custkey, o_orderkey, o_orderdate, o_totalprice ORDER BY o_totalprice DESC, o_orderdate
       LIMIT 100""",
    # 19
    """SELECT sum(l_extendedprice * (1 - l_discount)) FROM lineitem, part WHERE p_partkey = l_partkey
       AND l_shipinstruct = 'DELIVER IN PERSON' AND l_shipmode IN ('AIR', 'REG AIR')
       AND ((p_brand = 'Brand#12' AND p_container IN ('SM CASE', 'SM BOX') AND l_quantity BETWEEN 1 AND 11)
         OR (p_brand = 'Brand#23' AND p_container IN ('MED BAG', 'MED BOX') AND l_quantity BETWEEN 10 AND 20)
         OR (p_brand = 'Brand#34' AND p_container IN ('LG CASE', 'LG BOX') AND l_quantity BETWEEN 20 AND 30))""",
    # 20
    """SELECT s_name, s_address FROM supplier, nation WHERE s_suppkey IN (SELECT ps_suppkey FROM partsupp
       WHERE ps_partkey IN (SELECT p_partkey FROM part WHERE p_name LIKE 'forest%')
       AND ps_availqty > (SELECT 0.5 * sum(l_quantity) FROM lineitem WHERE l_partkey = ps_partkey
         AND l_suppkey = ps_suppkey AND l_shipdate >= date '1994-01-01' AND l_shipdate < date '1995-01-01'))
       AND s_nationkey = n_nationkey AND n_name = 'CANADA' ORDER BY s_name""",
    # 21
    """SELECT s_name, count(*) FROM supplier, lineitem l1, orders, nation WHERE s_suppkey = l1.l_suppkey
       AND o_orderkey = l1.l_orderkey AND o_orderstatus = 'F' AND l1.l_receiptdate > l1.l_commitdate
       AND EXISTS (SELECT * FROM lineitem l2 WHERE l2.l_orderkey = l1.l_orderkey AND l2.l_suppkey <> l1.l_suppkey)
       AND NOT EXISTS (SELECT * FROM lineitem l3 WHERE l3.l_orderkey = l1.l_orderkey
         AND l3.l_suppkey <> l1.l_suppkey AND l3.l_receiptdate > l3.l_commitdate)
       AND s_nationkey = n_nationkey AND n_name = 'SAUDI ARABIA' GROUP BY s_name ORDER BY 2 DESC, s_name LIMIT 100""",
    # 22
    """SELECT cntrycode, count(*), sum(c_acctbal) FROM (SELECT substring(c_phone FROM 1 FOR 2) AS cntrycode, c_acctbal
       FROM customer WHERE substring(c_phone FROM 1 FOR 2) IN ('13', '31', '23', '29', '30', '18', '17')
       AND c_acctbal > (SELECT avg(c_acctbal) FROM customer WHERE c_acctbal > 0.00
         AND substring(c_phone FROM 1 FOR 2) IN ('13', '31', '23', '29', '30', '18', '17'))
       AND NOT EXISTS (SELECT * FROM orders WHERE o_custkey = c_custkey)) AS custsale
       GROUP BY cntrycode ORDER BY cntrycode""",
]


def tpch(cluster, sf: float) -> None:
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE bench_tpch")
    dsn = cluster.dsn("bench_tpch")
    sizes = {"s": max(20, int(10000 * sf)), "c": int(150000 * sf), "p": int(200000 * sf), "o": int(1500000 * sf)}
    started = time.monotonic()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
        conn.execute("CREATE EXTENSION hypopg")
        conn.execute(TPCH_SCHEMA)
        for statement in TPCH_DATA.format(**sizes).split(";\n"):
            if statement.strip():
                conn.execute(statement)
    print(f"TPC-H-style data at SF {sf}: {sizes} loaded in {time.monotonic() - started:.0f} s")
    with session(dsn) as conn:
        snap = collect_snapshot(conn, CollectOptions(top=0))
        # The power test runs each query once: each weighs its own baseline cost.
        from queryaudit.advisor.costing import generic_cost

        snap.statements = []
        for n, q in enumerate(TPCH_QUERIES, 1):
            cost, _ = generic_cost(conn, q)
            snap.statements.append(
                Statement(queryid=f"Q{n}", query=q, calls=1, total_exec_time_ms=cost, mean_exec_time_ms=cost, rows=1)
            )
        snap.total_exec_time_ms = sum(s.total_exec_time_ms for s in snap.statements)
        touched = sorted({t for s in snap.statements for t in resolve_tables(s.query, snap.tables)})
        snap.column_stats = catalog.collect_column_stats(conn, touched)
        largest = max(snap.tables, key=lambda t: t.table_bytes)
        print(f"largest table: {largest.qualified_name} {largest.table_bytes / 10**6:.1f} MB (10^6 bytes)")
        print("| budget | indexes | workload cost before | after | reduction | advisor runtime |")
        print("|---|---|---|---|---|---|")
        for factor in (1, 2, 4):
            budget_mb = factor * largest.table_bytes / 10**6
            t0 = time.monotonic()
            advice = advise(conn, snap, AdvisorOptions(statements=22, budget_bytes=int(budget_mb * 10**6)))
            runtime = time.monotonic() - t0
            before, after = advice.workload_cost_before or 0, advice.workload_cost_after or advice.workload_cost_before
            cut = 1 - after / before if before else 0
            print(
                f"| {factor}x ({budget_mb:.0f} MB) | {len(advice.proposed)} | {before:,.0f} | {after:,.0f} | "
                f"{cut:.1%} | {runtime:.1f} s |"
            )
            for p in advice.proposed:
                print(f"    {p.create_sql}  -- {', '.join(p.queryids)}, {p.size_bytes / 10**6:.1f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sf", type=float, default=0.05, help="TPC-H scale factor (0.05: lineitem ~300k rows)")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--statements", type=int, default=100, help="statements of the throughput workload")
    parser.add_argument("--skip-tpch", action="store_true")
    args = parser.parse_args()
    bin_dir = system_bin_dir(15)
    if bin_dir is None:
        sys.exit("PostgreSQL 15 with HypoPG is needed (apt install postgresql-15 postgresql-15-hypopg)")
    cluster = start_cluster(bin_dir, {"autovacuum": "off", "max_parallel_workers_per_gather": "0"})
    try:
        if not args.skip_throughput:
            throughput(cluster, args.statements)
        if not args.skip_tpch:
            tpch(cluster, args.sf)
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
