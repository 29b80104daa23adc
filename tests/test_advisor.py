"""The index advisor and the index hygiene checks on real PostgreSQL: PG15 has HypoPG
created in every test database (verification `hypothetical`), PG18 has none (`none`)."""

import json

import pytest

from conftest import run_cli
from helpers import set_up_outside_the_window
from queryaudit.advisor.stage import AdvisorOptions
from queryaudit.checks import run_checks
from queryaudit.connect import session
from queryaudit.pipeline import AuditOptions, collect_live
from queryaudit.plans.explain import explain_generic, plan_cost

HYGIENE = {"missing-index", "unused-index", "duplicate-index", "redundant-index", "fk-without-index", "invalid-index"}


def has_hypopg(db) -> bool:
    return bool(db.execute("SELECT 1 FROM pg_extension WHERE extname = 'hypopg'"))


def index_names(db) -> set[str]:
    return {r[0] for r in db.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}


def collect(db, **advisor):
    return collect_live(db.dsn, AuditOptions(top=20, explain=False, advisor=AdvisorOptions(**advisor)))


def test_advise_indexes_on_the_shop(shop_db, tmp_path):
    shop_db.run_workload("shop", rounds=1)
    before = index_names(shop_db)
    out = tmp_path / "advice.json"
    result = run_cli("advise-indexes", "--dsn", shop_db.dsn, "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert (
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_customer_id_idx ON public.orders (customer_id)" in result.stdout
    )
    data = json.loads(out.read_text())
    advice = data["advice"]
    proposed = {(p["table"], tuple(p["columns"])): p for p in advice["proposed"]}
    assert ("public.orders", ("customer_id",)) in proposed
    assert ("public.order_items", ("order_id",)) in proposed
    orders = proposed[("public.orders", ("customer_id",))]
    assert orders["saving_ms"] > 0 and orders["statements"]
    finding = next(f for f in data["findings"] if f["table"] == "public.orders")
    assert finding["check"] == "missing-index" and finding["queryids"]
    if has_hypopg(shop_db):
        assert advice["method"] == "hypothetical" and orders["size_source"] == "hypopg"
        # confidence follows the method
        assert finding["verification"]["method"] == "hypothetical" and finding["confidence"] == "medium"
        v = finding["verification"]
        assert v["after"]["cost"] <= 0.5 * v["before"]["cost"]
        assert advice["workload_cost_after"] < advice["workload_cost_before"]
    else:
        assert advice["method"] == "none" and finding["verification"]["method"] == "none"
        assert finding["confidence"] == "low"
        # the hint is the advisor's, said once (the report's method section), not in each fix
        assert "CREATE EXTENSION hypopg" in advice["install_hint"]
        assert (
            "install" not in (finding["advice"] or "") and "see the method section" in finding["verification"]["detail"]
        )
        assert "hint:" in result.stdout
    # the advisor never writes: no index, no hypothetical one left behind
    assert index_names(shop_db) == before


@pytest.fixture
def composite_db(empty_db):
    """Tenant events: looked up by tenant and a time range, newest first. Only
    (tenant_id, created_at) serves the lookup, the range and the order at once."""
    set_up_outside_the_window(
        empty_db,
        """
        CREATE TABLE tenant_events (id bigint PRIMARY KEY, tenant_id int NOT NULL, kind int NOT NULL,
                                    created_at timestamptz NOT NULL, payload text);
        INSERT INTO tenant_events SELECT g, g % 100, g % 7, timestamptz '2024-01-01' + g * interval '1 minute', 'x'
        FROM generate_series(1, 60000) g;
        CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL);
        INSERT INTO accounts SELECT g, 'User' || g || '@example.com' FROM generate_series(1, 20000) g;
        ANALYZE""",
    )
    with empty_db.connect() as conn:
        for n in range(15):
            conn.execute(
                "SELECT id, payload FROM tenant_events WHERE tenant_id = %s AND created_at >= %s "
                "ORDER BY created_at LIMIT 20",
                (n, "2024-01-20"),
            ).fetchall()
            conn.execute("SELECT id FROM accounts WHERE lower(email) = %s", (f"user{n}@example.com",)).fetchall()
    return empty_db


COMPOSITE = (
    "SELECT id, payload FROM tenant_events WHERE tenant_id = $1 AND created_at >= $2 ORDER BY created_at LIMIT 20"
)


def test_composite_order_serves_the_statement(composite_db):
    snap = collect(composite_db)
    proposed = {p.table: p for p in snap.index_advice.proposed}
    events = proposed["public.tenant_events"]
    assert events.columns == ["tenant_id", "created_at"]
    # an expression index for the function predicate
    assert proposed["public.accounts"].columns == ["lower(email)"]
    assert "((lower(email)))" in proposed["public.accounts"].create_sql
    with session(composite_db.dsn) as conn:
        if has_hypopg(composite_db):
            # HypoPG: the suggested order beats the reversed one and no index
            costs = {}
            for cols in ("tenant_id, created_at", "created_at, tenant_id"):
                conn.execute("SELECT hypopg_reset()")
                conn.execute("SELECT * FROM hypopg_create_index(%s)", (f"CREATE INDEX ON tenant_events ({cols})",))
                costs[cols] = plan_cost(explain_generic(conn, COMPOSITE))
            conn.execute("SELECT hypopg_reset()")
            none = plan_cost(explain_generic(conn, COMPOSITE))
            assert costs["tenant_id, created_at"] < costs["created_at, tenant_id"]
            assert costs["tenant_id, created_at"] <= 0.5 * none
    # for real: build the suggested index with its own fix SQL; the plan uses it for the
    # lookup, the range and the order (no Sort), and beats the reversed order
    real = (
        "SELECT id, payload FROM tenant_events WHERE tenant_id = 7 AND created_at >= '2024-01-20' "
        "ORDER BY created_at LIMIT 20"
    )
    with composite_db.connect() as conn:
        seq = conn.execute("EXPLAIN (FORMAT JSON) " + real).fetchone()[0][0]["Plan"]["Total Cost"]
        conn.execute(events.create_sql)
        plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + real).fetchone()[0][0]["Plan"]
        text = json.dumps(plan)
        assert events.name in text and '"Sort"' not in text and "tenant_id" in text
        good = plan["Total Cost"]
        conn.execute(f"DROP INDEX {events.name}")
        conn.execute("CREATE INDEX reversed_idx ON tenant_events (created_at, tenant_id)")
        reversed_cost = conn.execute("EXPLAIN (FORMAT JSON) " + real).fetchone()[0][0]["Plan"]["Total Cost"]
        assert good < reversed_cost and good < seq


def test_verify_real_measures_and_leaves_nothing(composite_db):
    before = index_names(composite_db)
    snap = collect(composite_db, verify_real=True)
    advice = snap.index_advice
    assert advice.method == "real"
    events = next(p for p in advice.proposed if p.table == "public.tenant_events")
    assert events.verification == "real"
    effect = events.statements[0]
    assert effect.ms_before is not None and effect.ms_after < effect.ms_before
    assert index_names(composite_db) == before


def test_verify_real_refuses_without_asking_and_on_standby(shop_db):
    # the default session is read-only: nothing can be built unless --verify-real is given
    snap = collect(shop_db)
    assert all(p.verification != "real" for p in snap.index_advice.proposed)
    snap.server.in_recovery = True
    from queryaudit.advisor.stage import run_stage
    from queryaudit.connect import SessionLimits
    from queryaudit.errors import AuditError

    with pytest.raises(AuditError, match="hot standby"):
        run_stage(shop_db.dsn, SessionLimits(), AdvisorOptions(verify_real=True), snap)


def test_no_index_suggested_for_the_clean_fixture(clean_db):
    clean_db.run_workload("clean", rounds=1)
    snap = collect(clean_db)
    assert snap.index_advice.statements_considered >= 3
    assert snap.index_advice.proposed == []
    findings = [f for f in run_checks(snap) if f.check in HYGIENE]
    assert findings == [], [f.title for f in findings]


def test_unique_and_primary_key_indexes_never_proposed_for_removal(empty_db):
    set_up_outside_the_window(
        empty_db,
        """
        CREATE TABLE t (id bigint PRIMARY KEY, code text UNIQUE, a int, b int, c int);
        INSERT INTO t SELECT g, 'c' || g, g % 1000, g % 10, g FROM generate_series(1, 60000) g;
        CREATE UNIQUE INDEX t_id_dup ON t (id);            -- duplicates the primary key
        CREATE UNIQUE INDEX t_code_dup ON t (code);        -- duplicates the unique constraint
        CREATE UNIQUE INDEX t_a_c_key ON t (a, c);
        CREATE UNIQUE INDEX t_a_uniq ON t (a, b, c);       -- (a, b, c) covers nothing unique-prefixed
        CREATE INDEX t_a_idx ON t (a);                     -- redundant: left prefix of t_a_c_key
        CREATE INDEX t_b_idx ON t (b);
        CREATE INDEX t_b_idx2 ON t (b);                    -- duplicate
        CREATE INDEX t_code_c_idx ON t (code, c);          -- unused, above MIN_BYTES
        ANALYZE""",
    )
    snap = collect(empty_db, enabled=False)
    snap.extras["unused_index_min_days"] = 0  # a test cluster has no week of statistics
    findings = [f for f in run_checks(snap) if f.check in HYGIENE]
    flagged = {f.index for f in findings if f.check in ("unused-index", "duplicate-index", "redundant-index")}
    unique = {i.qualified_name for i in snap.indexes if i.is_unique or i.is_primary}
    assert flagged and not flagged & unique
    assert {f.index for f in findings if f.check == "redundant-index"} == {"public.t_a_idx"}
    dup = [f for f in findings if f.check == "duplicate-index"]
    assert [f.index for f in dup] == ["public.t_b_idx2"] and dup[0].evidence["duplicate_of"] == "public.t_b_idx"
    unused = [f for f in findings if f.check == "unused-index"]
    assert [f.index for f in unused] == ["public.t_code_c_idx"]
    assert unused[0].evidence["statistics_since"] and "since" in unused[0].title


def test_fix_sql_of_every_index_finding_executes(shop_db, tmp_path):
    shop_db.run_workload("shop", rounds=1)
    snap = collect(shop_db)
    snap.extras["unused_index_min_days"] = 0  # a test cluster has no week of statistics
    findings = [f for f in run_checks(snap) if f.check in HYGIENE and f.fix_sql]
    assert {f.check for f in findings} == HYGIENE, {f.check for f in findings}
    with shop_db.connect() as conn:
        # invalid-index's fix rebuilds a unique index: its "How to fix" removes the duplicates first
        conn.execute("UPDATE customers SET email = 'user' || id || '@example.com' WHERE email = 'dup@example.com'")
        for f in findings:
            for statement in filter(None, (s.strip() for s in f.fix_sql.split(";\n"))):
                conn.execute(statement)  # CONCURRENTLY: one statement at a time, autocommit
    again = [
        f for f in run_checks(collect(shop_db, enabled=False)) if f.check in HYGIENE - {"unused-index", "missing-index"}
    ]
    assert again == [], [f.title for f in again]
