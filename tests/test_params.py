"""Values for $n placeholders: the column each one meets (aliases resolved), values drawn
from pg_stats, and the placeholders no value can be inferred for."""

from queryaudit.plans.params import find_slots, infer_parameters
from queryaudit.plans.samples import sample_requests
from queryaudit.plans.stage import render_query
from queryaudit.snapshot import Column, ColumnStats, ServerInfo, Snapshot, Statement, Table


def shop() -> Snapshot:
    tables = [
        Table(
            "public",
            "orders",
            columns=[
                Column("id", "bigint"),
                Column("customer_id", "bigint"),
                Column("status", "text"),
                Column("created_at", "timestamptz"),
            ],
        ),
        Table("public", "customers", columns=[Column("id", "bigint"), Column("city", "text")]),
    ]
    stats = [
        ColumnStats("public.orders", "status", most_common_vals=["paid", "new"], most_common_freqs=[0.6, 0.4]),
        ColumnStats("public.orders", "customer_id", histogram_bounds=[str(i) for i in range(0, 101, 10)]),
        ColumnStats("public.orders", "created_at", histogram_bounds=["2024-01-01", "2024-06-01", "2025-01-01"]),
        ColumnStats("public.customers", "city", most_common_vals=["paris", "lyon", "nice"]),
        ColumnStats("public.customers", "id", most_common_vals=["3", "1", "2"]),
    ]
    return Snapshot(server=ServerInfo(150000, "15", "shop"), collected_at="now", tables=tables, column_stats=stats)


def test_columns_are_found_through_aliases_and_unqualified_names():
    query = (
        "SELECT o.id FROM orders o JOIN customers c ON c.id = o.customer_id "
        "WHERE c.city IN ($1, $2) AND status = $3 AND o.created_at >= $4 ORDER BY o.id LIMIT $5 OFFSET $6"
    )
    slots = find_slots(query, shop().tables, 6)
    assert [(s.table, s.column, s.operator) for s in slots[:4]] == [
        ("public.customers", "city", "in"),
        ("public.customers", "city", "in"),
        ("public.orders", "status", "="),
        ("public.orders", "created_at", ">="),
    ]
    assert (slots[4].operator, slots[5].operator) == ("limit", "offset")


def test_values_come_from_pg_stats_and_rows_per_call():
    query = "SELECT id FROM orders WHERE customer_id = $1 AND status = $2 AND created_at > $3 LIMIT $4"
    statement = Statement("1", query, calls=10, total_exec_time_ms=1.0, mean_exec_time_ms=0.1, rows=200)
    binding = infer_parameters(query, shop(), ["bigint", "text", "timestamp with time zone", "bigint"], statement)
    assert binding.complete
    assert binding.values == ["50", "paid", "2025-01-01", "20"]
    assert "$2 public.orders.status from most_common_vals" in binding.describe()
    assert render_query(query, binding) == (
        "SELECT id FROM orders WHERE customer_id = '50'::bigint AND status = "
        "'paid'::text AND created_at > '2025-01-01'::timestamp with time zone "
        "LIMIT '20'::bigint"
    )


def test_in_lists_take_different_common_values():
    binding = infer_parameters("SELECT 1 FROM customers WHERE city IN ($1, $2, $3)", shop(), ["text"] * 3)
    assert binding.values == ["paris", "lyon", "nice"]


def test_ranges_on_a_column_with_only_common_values_use_them_in_order():
    binding = infer_parameters("SELECT 1 FROM customers WHERE id < $1", shop(), ["bigint"])
    assert binding.values == ["1"]


def test_placeholders_without_a_value_are_named():
    binding = infer_parameters("SELECT id FROM orders ORDER BY id LIMIT 10 OFFSET $1", shop(), ["bigint"])
    assert binding.values == ["0"] and "OFFSET 0" in binding.describe()
    binding = infer_parameters("SELECT id FROM orders WHERE status = lower($1) AND nope = $2", shop(), ["text", "text"])
    assert [s.problem for s in binding.slots] == ["not compared with a column", "column nope not found in the catalog"]
    binding = infer_parameters("SELECT 1 FROM orders WHERE id = $1", shop(), ["bigint"])
    assert binding.slots[0].problem.startswith("no pg_stats")


def test_a_placeholder_only_in_the_select_list_takes_any_value():
    query = (
        "SELECT sum(CASE WHEN nation = $1 THEN v ELSE $2 END) FROM (SELECT city AS nation, id AS v "
        "FROM customers WHERE city = $3) AS x"
    )
    binding = infer_parameters(query, shop(), ["text", "bigint", "text"])
    assert binding.values[:2] == ["", "1"] and "chooses no rows" in binding.describe()
    # names resolves `nation` to customers.city: $1 must still not take the first common
    # value (or a sampled row) away from $3, the placeholder that filters on that column.
    assert binding.values[2] == "paris"
    assert [[s.number for s in group] for r in sample_requests(binding) for group in r.slots] == [[3]]
    # The same placeholder in a subquery of the select list filters that subquery: no free value.
    binding = infer_parameters(
        "SELECT (SELECT count(*) FROM orders WHERE status = lower($1)) FROM customers", shop(), ["text"]
    )
    assert not binding.complete


def test_a_select_list_only_placeholder_of_a_char_column_takes_any_value():
    query = "SELECT sum(CASE WHEN n = $1 THEN 1 ELSE 0 END) FROM (SELECT city AS n FROM customers) AS x"
    assert infer_parameters(query, shop(), ["bpchar"]).values == [""]
