"""The index advisor on the schemas that used to trip it, on real PostgreSQL 15 (HypoPG:
`hypothetical`) and 18 (no HypoPG: `none`): tables never analyzed, ORDER BY position,
alias and mixed directions, quoted mixed-case names, partitioned tables. Every fix SQL
is applied as written, one statement at a time in autocommit (CONCURRENTLY needs it),
and the plan afterwards must use the new index."""

import json

import pytest

from helpers import set_up_outside_the_window
from queryaudit.advisor.stage import AdvisorOptions
from queryaudit.pipeline import AuditOptions, collect_live


def advise(db, setup: str, queries: list[tuple[str, tuple]], rounds: int = 5):
    set_up_outside_the_window(db, setup)
    with db.connect() as conn:
        for _ in range(rounds):
            for query, params in queries:
                conn.execute(query, params).fetchall()
    snap = collect_live(db.dsn, AuditOptions(top=20, explain=False, advisor=AdvisorOptions()))
    return snap.index_advice


def apply(db, fix_sql: str) -> None:
    with db.connect() as conn:
        for statement in filter(None, (s.strip() for s in fix_sql.split(";\n"))):
            conn.execute(statement)


def plan(db, query: str) -> str:
    with db.connect() as conn:
        return json.dumps(conn.execute("EXPLAIN (FORMAT JSON) " + query).fetchone()[0])


def only(advice, table: str):
    found = [p for p in advice.proposed if p.table == table]
    assert found, (table, [p.create_sql for p in advice.proposed], advice.notes)
    return found[0]


def test_tables_never_analyzed(empty_db):
    """A materialized view and a 2,000-row table with 100 columns, neither analyzed:
    reltuples is -1 (0 before PostgreSQL 14), which used to read as "empty"."""
    wide_cols = ", ".join(f"c{n} int" for n in range(100))
    wide_vals = ", ".join(f"g % {n + 2}" for n in range(100))
    advice = advise(
        empty_db,
        f"""
        CREATE TABLE src (id int, k int, v text);
        INSERT INTO src SELECT g, g % 5000, 'v' || g FROM generate_series(1, 50000) g;
        CREATE MATERIALIZED VIEW mv AS SELECT id, k, v FROM src;
        CREATE TABLE wide (id int, {wide_cols});
        INSERT INTO wide SELECT g, {wide_vals} FROM generate_series(1, 2000) g;
        """,
        [("SELECT id, v FROM mv WHERE k = %s", (7,)), ("SELECT id FROM wide WHERE id = %s", (42,))],
    )
    for table, query in (
        ("public.mv", "SELECT id, v FROM mv WHERE k = 7"),
        ("public.wide", "SELECT id FROM wide WHERE id = 42"),
    ):
        p = only(advice, table)
        assert p.analyze_due and p.create_sql.startswith(f"ANALYZE {table};\n")
        assert any(table in n and "ANALYZE is due" in n for n in advice.notes)
        apply(empty_db, p.create_sql)
        assert p.name in plan(empty_db, query)


def test_order_by_position_alias_and_mixed_directions(empty_db):
    advice = advise(
        empty_db,
        """
        CREATE TABLE items (id bigint PRIMARY KEY, owner_id int NOT NULL, created_at timestamptz NOT NULL,
                            rank int NOT NULL, score int NOT NULL, body text);
        INSERT INTO items SELECT g, g % 500, timestamptz '2024-01-01' + g * interval '1 minute', g % 1000,
                                 (g * 7) % 1013, repeat('x', 50)
        FROM generate_series(1, 100000) g;
        ANALYZE items;
        """,
        [
            ("SELECT id, created_at AS t FROM items WHERE owner_id = %s ORDER BY t LIMIT 10", (3,)),
            ("SELECT id, rank, score FROM items ORDER BY rank DESC, score LIMIT 10", ()),
        ],
        rounds=10,
    )
    by_cols = {tuple(p.columns): p for p in advice.proposed}
    assert ("owner_id", "created_at") in by_cols, list(by_cols)
    mixed = next(p for p in advice.proposed if p.columns[:2] == ["rank", "score"])
    assert mixed.descending == ["score"] and "(rank, score DESC" in mixed.create_sql
    for p in (by_cols[("owner_id", "created_at")], mixed):
        apply(empty_db, p.create_sql)
    text = plan(empty_db, "SELECT id, created_at AS t FROM items WHERE owner_id = 3 ORDER BY 2 LIMIT 10")
    assert by_cols[("owner_id", "created_at")].name in text and '"Sort"' not in text
    text = plan(empty_db, "SELECT id, rank, score FROM items ORDER BY rank DESC, score LIMIT 10")
    assert mixed.name in text and "Sort" not in text.replace('"Sort Key"', "")


def test_quoted_mixed_case_names(empty_db):
    advice = advise(
        empty_db,
        """
        CREATE SCHEMA "Sales";
        CREATE TABLE "Sales"."OrderItems" ("Id" bigint PRIMARY KEY, "CustomerId" int NOT NULL, "order" int);
        INSERT INTO "Sales"."OrderItems" SELECT g, g % 2000, g FROM generate_series(1, 60000) g;
        ANALYZE "Sales"."OrderItems";
        """,
        [
            ('SELECT "Id" FROM "Sales"."OrderItems" WHERE "CustomerId" = %s', (5,)),
            ('SELECT "Id" FROM "Sales"."OrderItems" WHERE "order" = %s', (5,)),
        ],
    )
    assert advice.proposed, advice.notes
    sqls = [p.create_sql for p in advice.proposed]
    assert any('ON "Sales"."OrderItems" ("CustomerId"' in s for s in sqls), sqls
    assert any('ON "Sales"."OrderItems" ("order"' in s for s in sqls), sqls
    for p in advice.proposed:
        apply(empty_db, p.create_sql)
    assert "Index" in plan(empty_db, 'SELECT "Id" FROM "Sales"."OrderItems" WHERE "CustomerId" = 5')


def test_statements_the_two_parsers_read_apart(empty_db):
    """A queue's FOR UPDATE OF j (sqlglot's qualify took the alias for a second table) and
    a JOIN ... USING (its join key, and its bare column: the left table's) used to leave
    their statements with no candidate; a statement sqlglot cannot parse (ORDER BY ...
    USING <) is reported unresolved with its reason, not quietly given none."""
    advice = advise(
        empty_db,
        """
        CREATE TABLE jobs (id bigint PRIMARY KEY, owner_id int NOT NULL, body text);
        INSERT INTO jobs SELECT g, g % 3000, 'x' FROM generate_series(1, 60000) g;
        CREATE TABLE owners (owner_id int PRIMARY KEY, name text);
        INSERT INTO owners SELECT g, 'o' || g FROM generate_series(1, 3000) g;
        CREATE TABLE visits (id bigint PRIMARY KEY, owner_id int NOT NULL, at int NOT NULL);
        INSERT INTO visits SELECT g, g % 3000, g FROM generate_series(1, 60000) g;
        ANALYZE jobs, owners, visits;
        """,
        [
            ("SELECT j.id FROM jobs j WHERE j.owner_id = %s FOR UPDATE OF j SKIP LOCKED", (7,)),
            ("SELECT at, name FROM visits JOIN owners USING (owner_id) WHERE owner_id = %s", (9,)),
            ("SELECT id FROM jobs WHERE body = %s ORDER BY id USING <", ("y",)),
        ],
    )
    tables = {(p.table, tuple(p.columns[:1])) for p in advice.proposed}
    assert {("public.jobs", ("owner_id",)), ("public.visits", ("owner_id",))} <= tables, (tables, advice.notes)
    [(queryid, why)] = advice.unresolved.items()
    assert "sqlglot cannot parse" in why and any(
        n.startswith(f"{queryid}: names not all resolved") for n in advice.notes
    )
    for p in advice.proposed:
        apply(empty_db, p.create_sql)
    for table, query in (
        ("public.jobs", "SELECT j.id FROM jobs j WHERE j.owner_id = 7 FOR UPDATE OF j SKIP LOCKED"),
        ("public.visits", "SELECT at, name FROM visits JOIN owners USING (owner_id) WHERE owner_id = 9"),
    ):
        assert only(advice, table).name in plan(empty_db, query)


@pytest.mark.parametrize("analyzed", [True, False])
def test_partitioned_table(empty_db, analyzed):
    """CREATE INDEX CONCURRENTLY is refused on a partitioned table: the fix is the
    parent's index ON ONLY, each partition's CONCURRENTLY, then ATTACH PARTITION."""
    advice = advise(
        empty_db,
        f"""
        CREATE TABLE events (id bigint NOT NULL, blog_id int NOT NULL, body text) PARTITION BY HASH (id);
        CREATE TABLE events_p0 PARTITION OF events FOR VALUES WITH (MODULUS 2, REMAINDER 0);
        CREATE TABLE events_p1 PARTITION OF events FOR VALUES WITH (MODULUS 2, REMAINDER 1)
            PARTITION BY RANGE (id);
        CREATE TABLE events_p1_low PARTITION OF events_p1 FOR VALUES FROM (MINVALUE) TO (50000);
        CREATE TABLE events_p1_high PARTITION OF events_p1 FOR VALUES FROM (50000) TO (MAXVALUE);
        INSERT INTO events SELECT g, g % 3000, 'x' FROM generate_series(1, 100000) g;
        {"ANALYZE events;" if analyzed else "ANALYZE events_p0, events_p1_low, events_p1_high;"}
        """,
        [("SELECT id FROM events WHERE blog_id = %s", (9,))],
    )
    p = only(advice, "public.events")
    lines = p.create_sql.splitlines()
    assert lines[0].startswith("CREATE INDEX IF NOT EXISTS") and " ON ONLY public.events (blog_id);" in lines[0]
    assert "CONCURRENTLY" not in lines[0]
    assert sum("CONCURRENTLY" in s for s in lines) == 3  # the three leaf partitions
    assert sum("ATTACH PARTITION" in s for s in lines) == 4  # three leaves and the sub-partitioned events_p1
    apply(empty_db, p.create_sql)
    valid = empty_db.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = %s::regclass", (p.name,))
    assert valid == [(True,)]
    assert "Index" in plan(empty_db, "SELECT id FROM events WHERE blog_id = 9")
    apply(empty_db, p.create_sql)  # IF NOT EXISTS throughout: running it twice is harmless


def test_budget_is_never_exceeded(empty_db):
    """Two lookups on two tables of different sizes; a budget between the two indexes'
    sizes keeps the one that fits, by HypoPG's own estimate (or the width x rows one)."""
    setup = """
        CREATE TABLE big (id bigint PRIMARY KEY, k int NOT NULL, v text);
        INSERT INTO big SELECT g, g % 5000, 'v' FROM generate_series(1, 200000) g;
        CREATE TABLE small (id bigint PRIMARY KEY, k int NOT NULL, v text);
        INSERT INTO small SELECT g, g % 500, 'v' FROM generate_series(1, 20000) g;
        ANALYZE big, small;"""
    queries = [("SELECT v FROM big WHERE k = %s", (1,)), ("SELECT v FROM small WHERE k = %s", (1,))]
    free = advise(empty_db, setup, queries)
    sizes = {p.table: p.size_bytes for p in free.proposed}
    assert set(sizes) == {"public.big", "public.small"} and sizes["public.small"] < sizes["public.big"]
    assert free.total_size_bytes == sum(sizes.values())
    budget = (sizes["public.small"] + sizes["public.big"]) // 2
    snap = collect_live(empty_db.dsn, AuditOptions(top=20, explain=False, advisor=AdvisorOptions(budget_bytes=budget)))
    capped = snap.index_advice
    assert [p.table for p in capped.proposed] == ["public.small"]
    assert capped.total_size_bytes <= budget and capped.budget_bytes == budget
