"""A real PostgreSQL 15 stderr log, and a big one replayed from it, for bench/log_bench.py.

    .venv/bin/python bench/pg15_log.py record bench/pg15_seed.log    # needs PostgreSQL 15 installed
    .venv/bin/python bench/pg15_log.py replay bench/pg15_seed.log /tmp/pg15.log --size-mb 50

`record` starts a throwaway PostgreSQL 15 cluster (queryaudit.demo.cluster) with
`log_line_prefix = '%m [%p] %q%u@%d %c %x '`, `log_min_duration_statement = 0` and
`log_lock_waits = on`, and runs a small shop workload from 4 threads: psycopg 3's
extended protocol with bind parameters (parse / bind / execute lines with `DETAIL:
parameters:`, named `_pg3_N` statements once psycopg prepares them), multi-line
statements, client-side literals (`statement:` lines), unique violations, row-lock waits
behind another session's transaction and one deadlock. The server's own log is the seed
(committed: bench/pg15_seed.log), so every line in it was written by PostgreSQL.

`replay` copies the seed until the output reaches the size asked for, each copy with its
times shifted past the previous copy's, new pids (also in the lock messages), new session
ids (`%c`: start time and pid in hex, as PostgreSQL writes them), xids shifted (`%x` and
`transaction N` in lock messages), durations and literals drawn from a seeded generator,
so the same seed and arguments give the same file byte for byte.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

PREFIX = "%m [%p] %q%u@%d %c %x "
SEED_LOG = Path(__file__).resolve().parent / "pg15_seed.log"

SETTINGS = {
    "log_line_prefix": f"'{PREFIX}'",
    "log_min_duration_statement": "0",
    "log_lock_waits": "on",
    "deadlock_timeout": "'100ms'",
    "log_min_messages": "warning",
    "log_checkpoints": "on",
    "log_connections": "on",
    "log_disconnections": "on",
    "log_timezone": "'UTC'",
    "autovacuum": "off",
}

SCHEMA = """
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, city text NOT NULL, balance numeric NOT NULL,
                        last_seen timestamptz);
CREATE TABLE products (id int PRIMARY KEY, name text NOT NULL, price numeric NOT NULL);
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers, status text NOT NULL,
                     total numeric NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE order_items (order_id int NOT NULL REFERENCES orders, product_id int NOT NULL REFERENCES products,
                          qty int NOT NULL);
CREATE TABLE events (id int PRIMARY KEY, kind text NOT NULL, payload jsonb, created_at timestamptz NOT NULL);
INSERT INTO customers SELECT g, 'customer ' || g, 'city' || (g % 40), 100, NULL FROM generate_series(1, 2000) g;
INSERT INTO products SELECT g, 'product ' || g, (g % 97) + 0.99 FROM generate_series(1, 500) g;
INSERT INTO orders (customer_id, status, total) SELECT 1 + g % 2000, 'paid', g % 300 FROM generate_series(1, 8000) g;
INSERT INTO order_items SELECT 1 + g % 8000, 1 + g % 500, 1 + g % 3 FROM generate_series(1, 24000) g;
CREATE INDEX ON order_items (order_id);
ANALYZE;
"""
ORDERS = """SELECT o.id, o.status, o.total,
       o.created_at
  FROM orders o
 WHERE o.customer_id = %s
 ORDER BY o.id DESC
 LIMIT 20"""
ITEMS = "SELECT product_id, qty FROM order_items WHERE order_id = %s"
PRODUCT = "SELECT id, name, price FROM products WHERE id = %s"
REPORT = """SELECT c.city,
       count(o.id) AS orders,
       sum(o.total) AS revenue
  FROM customers c
  JOIN orders o ON o.customer_id = c.id
 WHERE c.city = '{city}'
   AND o.total > {floor}
 GROUP BY c.city"""


def _request(conn, rng: random.Random) -> None:
    """One page of the shop: its orders, each order's items, each item's product (the N+1),
    a touch of the customer, sometimes an order or an event."""
    customer = rng.randrange(1, 2001)
    with conn.transaction():
        orders = conn.execute(ORDERS, (customer,)).fetchall()
        for order in orders[: rng.randrange(1, 6)]:
            for product_id, _qty in conn.execute(ITEMS, (order[0],)).fetchall():
                conn.execute(PRODUCT, (product_id,)).fetchone()
        conn.execute("UPDATE customers SET last_seen = now() WHERE id = %s", (customer,))
        if rng.random() < 0.2:
            conn.execute(
                "INSERT INTO orders (customer_id, status, total) VALUES (%s, %s, %s)",
                (customer, "new", rng.randrange(1, 300)),
            )
    if rng.random() < 0.1:
        try:
            with conn.transaction():  # a retried event id: a unique violation (ERROR, DETAIL, STATEMENT)
                conn.execute(
                    "INSERT INTO events (id, kind, payload, created_at) VALUES (%s, %s, %s, now())",
                    (rng.randrange(1, 6), "view", f'{{"page": {rng.randrange(100)}}}'),
                )
        except Exception:  # noqa: BLE001 - the violation is what the log is for
            pass
    if rng.random() < 0.05:
        from psycopg import ClientCursor  # literals in the text: `statement:` lines, multi-line

        with ClientCursor(conn) as cur:
            cur.execute(REPORT.format(city=f"city{rng.randrange(40)}", floor=rng.randrange(200)))
            cur.fetchall()
        conn.commit()


def _lock_wait(dsn: str, rng: random.Random) -> None:
    """A session holds a customer's row while another updates it: `still waiting` then
    `acquired` (with DETAIL, CONTEXT and STATEMENT) after deadlock_timeout."""
    import psycopg

    customer = rng.randrange(1, 2001)
    with psycopg.connect(dsn) as holder, psycopg.connect(dsn) as waiter:
        holder.execute("UPDATE customers SET balance = balance - %s WHERE id = %s", (1, customer))
        t = threading.Thread(
            target=lambda: (
                waiter.execute("UPDATE customers\n   SET balance = balance + %s\n WHERE id = %s", (1, customer)),
                waiter.commit(),
            )
        )
        t.start()
        time.sleep(0.15 + rng.random() * 0.2)
        holder.commit()
        t.join()


def _deadlock(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn) as a, psycopg.connect(dsn) as b:
        a.execute("UPDATE customers SET balance = balance - 1 WHERE id = %s", (7,))
        b.execute("UPDATE customers SET balance = balance - 1 WHERE id = %s", (8,))
        errors = []

        def other():
            try:
                b.execute("UPDATE customers SET balance = balance + 1 WHERE id = %s", (7,))
                b.commit()
            except psycopg.Error as exc:
                errors.append(exc)
                b.rollback()

        t = threading.Thread(target=other)
        t.start()
        time.sleep(0.05)
        try:
            a.execute("UPDATE customers SET balance = balance + 1 WHERE id = %s", (8,))
            a.commit()
        except psycopg.Error:
            a.rollback()
        t.join()


def record(out: Path, requests: int = 15) -> None:
    """Run the workload on a throwaway PostgreSQL 15 and copy its log to `out`."""
    import psycopg

    from queryaudit.demo.cluster import start_cluster, system_bin_dir

    bin_dir = system_bin_dir(15)
    if bin_dir is None:
        raise SystemExit("PostgreSQL 15 is not installed (/usr/lib/postgresql/15/bin)")
    cluster = start_cluster(bin_dir, SETTINGS)
    try:
        dsn = cluster.dsn("postgres")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE DATABASE shop")
        dsn = cluster.dsn("shop")
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(SCHEMA)

        def worker(k: int) -> None:
            rng = random.Random(k)
            with psycopg.connect(dsn) as conn:
                for _ in range(requests):
                    _request(conn, rng)
                    time.sleep(rng.random() * 0.25)  # spread over the lock waits' time

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        rng = random.Random(99)
        for _ in range(6):
            _lock_wait(dsn, rng)
        _deadlock(dsn)
        for t in threads:
            t.join()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
        time.sleep(0.5)
        cluster.stop()
        shutil.copyfile(cluster.log_file, out)
    finally:
        cluster.destroy()


# -- replay ------------------------------------------------------------------------------
_HEAD = re.compile(
    r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) UTC \[(\d+)\] (?:(\S*@\S*) ([0-9a-f]+)\.([0-9a-f]+) "
    r"(\d+) )?"
)
_DURATION = re.compile(r"duration: \d+\.\d+ ms")
_NUMBER_PARAM = re.compile(r"(\$\d+ = )'(\d+)'")
_PIDS_IN_TEXT = re.compile(r"(?<=process )(\d+)|(?<=Process )(\d+)|(?<=Wait queue: )(\d+)|(?<=holding the lock: )(\d+)")
_XID_IN_TEXT = re.compile(r"(?<=transaction )(\d+)")
_LITERAL = re.compile(r"(?<=city)(\d+)|(?<=o\.total > )(\d+)")


def _ts(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)


class _Copy:
    """One copy of the seed: its pids, its time and xid shifts, its random values."""

    def __init__(self, number: int, span: timedelta, rng: random.Random):
        self.number, self.rng = number, rng
        self.shift = span * number
        self.xid_shift = number * 5000
        self.pids: dict[str, str] = {}

    def pid(self, old: str) -> str:
        new = self.pids.get(old)
        if new is None:  # distinct within a copy; the next copies' pids follow
            new = self.pids[old] = str(1000 + (int(old) + self.number * 1009) % 4_000_000)
        return new

    def _literal(self, m: re.Match) -> str:
        return str(self.rng.randrange(40) if m.group(1) else self.rng.randrange(200))

    def body(self, text: str) -> str:
        """The message after the prefix: durations and literals drawn again, pids and xids mapped."""
        rng = self.rng
        text = _DURATION.sub(lambda _m: f"duration: {rng.random() * rng.random() * 5:.3f} ms", text)
        if "$" in text:
            text = _NUMBER_PARAM.sub(lambda p: f"{p.group(1)}'{rng.randrange(1, 2001)}'", text)
        if "rocess" in text or "queue" in text or "lock" in text:
            text = _PIDS_IN_TEXT.sub(lambda p: self.pid(p.group(0)), text)
            text = _XID_IN_TEXT.sub(lambda x: str(int(x.group(0)) + self.xid_shift), text)
        if "city" in text:
            text = _LITERAL.sub(self._literal, text)
        return text

    def line(self, line: str, m: re.Match | None) -> str:
        if m is None:  # a continuation line: the statement's next lines
            return self.body(line)
        when = _ts(m.group(1)) + self.shift
        new_pid = self.pid(m.group(2))
        head = f"{when:%Y-%m-%d %H:%M:%S}.{when.microsecond // 1000:03d} UTC [{new_pid}] "
        if m.group(3) is not None:  # a session's line: %u@%d %c %x
            started = int(m.group(4), 16) + int(self.shift.total_seconds())
            xid = int(m.group(6))
            head += f"{m.group(3)} {started:x}.{int(new_pid):x} {xid + self.xid_shift if xid else 0} "
        return head + self.body(line[m.end() :])


def replay(seed: Path, out: Path, size_mb: float, rng_seed: int = 1) -> int:
    """Write about size_mb MiB replayed from `seed`; returns the number of lines."""
    rng = random.Random(rng_seed)
    lines = seed.read_text().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    heads = [_HEAD.match(line) for line in lines]
    stamps = [_ts(m.group(1)) for m in heads if m]
    span = stamps[-1] - stamps[0] + timedelta(seconds=1)
    target = size_mb * 2**20
    written = count = number = 0
    with open(out, "w") as f:
        while written < target:
            copy = _Copy(number, span, rng)
            text = "\n".join(copy.line(line, m) for line, m in zip(lines, heads, strict=True)) + "\n"
            f.write(text)
            written += len(text)
            count += len(lines)
            number += 1
    return count


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("out", type=Path)
    rep = sub.add_parser("replay")
    rep.add_argument("seed", type=Path)
    rep.add_argument("out", type=Path)
    rep.add_argument("--size-mb", type=float, default=50)
    rep.add_argument("--rng-seed", type=int, default=1)
    args = ap.parse_args()
    if args.command == "record":
        record(args.out)
        print(f"recorded {args.out} ({args.out.stat().st_size / 1024:.0f} KB)")
    else:
        n = replay(args.seed, args.out, args.size_mb, args.rng_seed)
        print(f"replayed {args.out} ({args.out.stat().st_size / 2**20:.0f} MB, {n:,} lines)")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
