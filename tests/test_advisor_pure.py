"""The advisor's pure parts: candidates from SQL and plans, column order, selection."""
from queryaudit.advisor import candidates as cand
from queryaudit.advisor import select
from queryaudit.snapshot import Column, ColumnStats, Index, Snapshot, ServerInfo, Statement, Table


def snapshot() -> Snapshot:
    def table(name, cols, rows=100_000):
        return Table("public", name, reltuples=rows, columns=[Column(c, "bigint") for c in cols])

    return Snapshot(
        server=ServerInfo(150000, "15", "db"), collected_at="2024-01-01T00:00:00+00:00",
        tables=[table("orders", ["id", "customer_id", "status", "created_at", "total", "archived_at", "paid"]),
                table("customers", ["id", "email", "city"]),
                table("tiny", ["id", "x"], rows=10)],
        column_stats=[ColumnStats("public.orders", "status", n_distinct=5.0),
                      ColumnStats("public.orders", "customer_id", n_distinct=-0.2),
                      ColumnStats("public.orders", "archived_at", null_frac=0.99),
                      ColumnStats("public.orders", "paid", n_distinct=2, most_common_vals=["false", "true"],
                                  most_common_freqs=[0.97, 0.03])],
        indexes=[Index("public", "orders_pkey", "public.orders", "", columns=["id"], is_unique=True, is_primary=True)],
    )


def cands(query, snap=None):
    snap = snap or snapshot()
    out = []
    for use in cand.statement_uses(query, snap):
        out += cand.candidates_for_use(use, snap, "q1")
    return out


def test_equality_first_then_range_and_sort():
    found = {c.columns for c in cands("SELECT id FROM orders WHERE created_at > $1 AND status = $2 AND customer_id = $3")}
    # the most selective equality first, the range column last
    assert ("customer_id", "status", "created_at") in found
    assert ("customer_id", "status") in found
    found = {c.columns for c in cands("SELECT id FROM orders WHERE status = $1 ORDER BY created_at LIMIT 10")}
    assert ("status", "created_at") in found
    # IN breaks the order a following sort column would give: no (status, created_at) for the sort
    found = [c for c in cands("SELECT id FROM orders WHERE status IN ($1, $2) ORDER BY created_at LIMIT 10")
             if "sort" in c.reasons]
    assert not found


def test_join_keys_correlated_subqueries_and_dml():
    found = {(c.table, c.columns) for c in cands(
        "SELECT c.email FROM customers c JOIN orders o ON o.customer_id = c.id WHERE o.status = $1")}
    assert ("public.orders", ("customer_id",)) in found
    found = {(c.table, c.columns) for c in cands(
        "SELECT email FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id AND o.total > $1)")}
    assert ("public.orders", ("customer_id", "total")) in found
    found = {(c.table, c.columns) for c in cands("DELETE FROM orders WHERE customer_id = $1")}
    assert ("public.orders", ("customer_id",)) in found
    assert cands("SELECT * FROM tiny WHERE x = $1") == []  # a small table needs no index


def test_expression_partial_and_include():
    found = {c.columns: c for c in cands("SELECT id FROM customers WHERE lower(email) = $1")}
    assert ("lower(email)",) in found and "expression" in found[("lower(email)",)].reasons
    assert cand.key_sql("lower(email)", expression=True) == "(lower(email))"
    partial = [c for c in cands("SELECT id FROM orders WHERE archived_at IS NULL AND paid ORDER BY created_at LIMIT 5")
               if c.predicate]
    assert any(c.predicate == "paid" and c.columns == ("created_at",) for c in partial), partial
    # archived_at IS NULL keeps 99 % of the rows: no partial index on it
    assert not any(c.predicate == "archived_at IS NULL" for c in partial)
    included = [c for c in cands("SELECT total FROM orders WHERE customer_id = $1") if c.include]
    assert included and included[0].include == ("total",)


def test_existing_index_covers_candidate():
    c = cand.Candidate("public.orders", ("status", "customer_id"), equality_prefix=2)
    assert cand.covered_by(c, Index("public", "i", "public.orders", "", columns=["customer_id", "status", "total"]))
    assert not cand.covered_by(c, Index("public", "i", "public.orders", "", columns=["customer_id", "total"]))
    assert not cand.covered_by(c, Index("public", "i", "public.orders", "", columns=["customer_id", "status"],
                                        is_valid=False))


def test_plan_derived_candidates():
    plan = {"Plan": {"Node Type": "Sort", "Sort Key": ["o.created_at"], "Plans": [
        {"Node Type": "Seq Scan", "Relation Name": "orders", "Alias": "o", "Filter": "(o.customer_id = 42)",
         "Actual Rows": 5, "Actual Loops": 1, "Rows Removed by Filter": 99995}]}}
    uses = cand.plan_uses(plan, snapshot())
    assert uses and uses[0].table == "public.orders"
    assert [p.column for p in uses[0].predicates] == ["customer_id"] and uses[0].sort == ["created_at"]


def _evaluated(cols, fractions, size=1000, eq=None):
    c = cand.Candidate("public.orders", tuple(cols), equality_prefix=len(cols) if eq is None else eq)
    return select.Evaluated(c, fractions=fractions, size_bytes=size)


def test_one_composite_serving_three_beats_three_singles():
    weights = {"a": 100.0, "b": 100.0, "c": 100.0}
    composite = _evaluated(["status", "customer_id"], {"a": 0.9, "b": 0.9, "c": 0.9}, size=3000)
    singles = [_evaluated(["status"], {"a": 0.95}, 1000), _evaluated(["customer_id"], {"b": 0.95}, 1000),
               _evaluated(["total"], {"c": 0.95}, 1000)]
    chosen = select.choose([composite, *singles], weights, budget_bytes=None, max_indexes=10)
    assert chosen[0] is composite
    # the others add under MIN_MARGINAL_SHARE of their saving: never two where one covers both
    assert chosen == [composite]


def test_prefix_dropped_when_wider_chosen_and_budget_respected():
    weights = {"a": 100.0, "b": 50.0}
    narrow = _evaluated(["customer_id"], {"a": 0.9}, 1000)
    wide = _evaluated(["customer_id", "created_at"], {"a": 0.9, "b": 0.9}, 2000, eq=1)
    assert select.choose([narrow, wide], weights, None, 10) == [wide]
    assert select.choose([narrow, wide], weights, budget_bytes=1500, max_indexes=10) == [narrow]
    assert select.choose([narrow, wide], weights, None, max_indexes=1) == [wide]


def test_index_names_are_readable_and_unique():
    taken = {"orders_customer_id_idx"}
    c = cand.Candidate("public.orders", ("customer_id",))
    assert select.index_name(c, taken) == "orders_customer_id_idx2"
    c = cand.Candidate("public.orders", ("lower(email)", "x" * 80), predicate="paid")
    name = select.index_name(c, set())
    assert len(name) <= 63 and name.startswith("orders_lower_email_") and name.endswith("_partial_idx")
