"""Hostile input: generated and garbled SQL, truncated texts, huge statements and
garbage snapshots go through every SQL-handling path and every check without a crash."""

import random
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from queryaudit import sql
from queryaudit.checks import all_checks
from queryaudit.snapshot import Column, Index, PlanCapture, ServerInfo, Snapshot, Statement, Table

SQL_WORDS = [
    "SELECT",
    "FROM",
    "WHERE",
    "JOIN",
    "ON",
    "AND",
    "OR",
    "(",
    ")",
    "'",
    "$1",
    "$2",
    ",",
    "=",
    "<",
    "IN",
    "orders",
    "o.id",
    "customer_id",
    "GROUP BY",
    "ORDER BY",
    "LIMIT",
    "WITH",
    "AS",
    "UPDATE",
    "SET",
    "DELETE",
    "INSERT INTO",
    "VALUES",
    ";",
    "--",
    "/*",
    "*/",
    "::int",
    "NULL",
    "IS",
    "NOT",
    "ANY",
    "é",
    "\x00",
]
sql_like = st.lists(st.sampled_from(SQL_WORDS), max_size=40).map(" ".join)
any_text = st.one_of(st.text(max_size=300), sql_like)


@given(any_text)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_sql_helpers_never_raise(text):
    assert sql.statement_kind(text) in ("read", "dml", "other", "invalid")
    assert isinstance(sql.referenced_relations(text), list)
    assert isinstance(sql.prettify(text), str)
    sql.fingerprint(text)


def test_truncated_statements_are_invalid_not_errors():
    full = "SELECT o.id, c.email FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.status = $1"
    for cut in range(1, len(full)):
        kind = sql.statement_kind(full[:cut])
        assert kind in ("read", "invalid", "other")
    assert sql.statement_kind(full) == "read"


def test_one_megabyte_statement():
    big = "SELECT " + ", ".join(f"c{i}" for i in range(150_000)) + " FROM t WHERE a = $1"
    assert len(big) > 1_000_000
    assert sql.statement_kind(big) == "read"
    assert sql.referenced_relations(big) == [(None, "t")]


def _garbage_plan(rng: random.Random, depth: int = 0):
    """Plans with missing, mistyped and absurd fields, as a malformed JSON would give."""
    node = {}
    for key in (
        "Node Type",
        "Relation Name",
        "Actual Total Time",
        "Actual Rows",
        "Plan Rows",
        "Actual Loops",
        "Total Cost",
        "Filter",
        "Rows Removed by Filter",
        "Sort Method",
        "Hash Batches",
        "Heap Fetches",
        "Workers Planned",
        "Workers Launched",
        "Index Name",
        "Sort Space Type",
        "Lossy Heap Blocks",
    ):
        if rng.random() < 0.6:
            node[key] = rng.choice([None, -1, 0, 1e308, "x", "", [], {}, 3.5, True, "Seq Scan", "Sort", "Disk"])
    if depth < 3 and rng.random() < 0.5:
        node["Plans"] = [_garbage_plan(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return node


def test_every_check_survives_garbage_snapshots():
    rng = random.Random(1234)
    for round_ in range(60):
        words = ["".join(rng.choices(string.printable, k=rng.randint(0, 80))) for _ in range(5)]
        statements = [
            Statement(
                queryid=str(i),
                query=text,
                calls=rng.choice([0, 1, 10**9]),
                total_exec_time_ms=rng.choice([0.0, 1e-9, 1e12]),
                mean_exec_time_ms=0.0,
                rows=rng.choice([0, 5, 10**12]),
            )
            for i, text in enumerate(words + ["SELECT * FROM orders WHERE id = $1", "SELECT * FROM ord"])
        ]
        plans = [
            PlanCapture(
                queryid=str(i),
                method="analyze",
                plan=rng.choice([{"Plan": _garbage_plan(rng)}, {"Plan": None}, {}, {"Plan": "x"}]),
            )
            for i in range(len(statements))
        ]
        snap = Snapshot(
            server=ServerInfo(
                version_num=rng.choice([130000, 150000, 180000]),
                version="",
                database="x",
                settings={"work_mem": rng.choice(["4096 kB", "garbage", ""])},
            ),
            collected_at="now",
            statements=statements,
            plans=plans,
            total_exec_time_ms=rng.choice([0.0, 1.0, 1e12]),
            total_calls=1,
            statement_count=len(statements),
            tables=[
                Table(
                    schema="public",
                    name="orders",
                    reltuples=rng.choice([-1.0, 0.0, 1e9]),
                    columns=[Column("id", "bigint")],
                )
            ],
            indexes=[
                Index(
                    schema="public",
                    name="i",
                    table="public.orders",
                    definition="CREATE INDEX",
                    columns=rng.choice([[], ["id"], ["(lower(x))"]]),
                )
            ],
        )
        for check in all_checks():
            try:
                findings = check.run(snap)
            except Exception as exc:  # noqa: BLE001 - the assertion names the check and the input
                raise AssertionError(f"check {check.id} crashed on garbage round {round_}: {exc!r}") from exc
            assert isinstance(findings, list)
