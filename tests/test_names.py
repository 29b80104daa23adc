"""queryaudit.names without a database: which table and column each name means, the way
PostgreSQL resolves it (case folding, quoting, search_path, aliases, CTEs, subqueries,
views), and the one quoting rule for what queryaudit writes."""

import pytest

from queryaudit import names
from queryaudit.advisor import candidates as cand
from queryaudit.advisor.select import create_sql, index_name
from queryaudit.snapshot import Column, ServerInfo, Snapshot, Table, View
from queryaudit.sql import quote_ident, quote_qualified, quote_table, resolve_tables


def table(schema, name, *columns, rows=100_000):
    return Table(schema, name, reltuples=rows, columns=[Column(c, "text") for c in columns])


TABLES = [
    table("public", "User", "id", "email", "order", "user"),
    table("public", "Post", "id", "authorId", "title", "published"),
    table("public", "orders", "id", "customer_id", "created_at", "status"),
    table("Sales", "Orders", "id", "CustomerId", "Total"),
    table("app", "orders", "id", "tenant_id"),
    table("public", "Audit Log", "id", "user id", "event kind"),
]
VIEWS = [
    View(
        "public",
        "PublishedPost",
        'SELECT id, "authorId" AS "writerId", title FROM "Post" WHERE published',
        [Column("id", "bigint"), Column("writerId", "bigint"), Column("title", "text")],
    )
]


def snapshot(search_path: str | None = None) -> Snapshot:
    settings = {"search_path": search_path} if search_path else {}
    return Snapshot(
        server=ServerInfo(150000, "15", "app", user="alice", settings=settings),
        collected_at="now",
        tables=TABLES,
        views=VIEWS,
    )


def meaning(query: str, written: str, snap: Snapshot | None = None):
    """(table, column) of the first reference spelled `written` in the text."""
    return names.resolve(query, snap or snapshot()).column_at(query.index(written))


def test_quoted_names_keep_their_case_and_unquoted_names_fold():
    q = 'SELECT "Post".title FROM "Post" WHERE "Post"."authorId" = $1'
    assert meaning(q, '"Post"."authorId"') == ("public.Post", "authorId")
    assert names.resolve(q, snapshot()).tables == ["public.Post"]
    # Unquoted Post is post, which does not exist: nothing is guessed.
    r = names.resolve("SELECT title FROM Post WHERE authorId = $1", snapshot())
    assert r.tables == [] and r.column_at(r.columns[0].at) is None
    # ORDERS folds to orders (public, first on the search_path), not "Sales"."Orders".
    assert names.resolve("SELECT 1 FROM ORDERS", snapshot()).tables == ["public.orders"]


def test_aliases_and_reserved_word_columns():
    q = 'SELECT u.email FROM "User" AS u JOIN "Post" p ON p."authorId" = u.id WHERE u."order" = $1 AND "user" = $2'
    assert meaning(q, 'p."authorId"') == ("public.Post", "authorId")
    assert meaning(q, "u.id") == ("public.User", "id")
    assert meaning(q, 'u."order"') == ("public.User", "order")
    assert meaning(q, '"user" =') == ("public.User", "user")
    r = names.resolve(q, snapshot())
    assert r.aliases["u"] == "public.User" and r.aliases["p"] == "public.Post"


def test_bare_columns_belong_to_the_one_source_that_has_them():
    q = 'SELECT title FROM "Post" JOIN "User" ON "User".id = "authorId" WHERE id = $1'
    assert meaning(q, "title") == ("public.Post", "title")
    assert meaning(q, '"authorId"') == ("public.Post", "authorId")
    assert meaning(q, "id = $1") is None  # both tables have id: PostgreSQL calls it ambiguous


def test_search_path_decides_unqualified_tables():
    q = "SELECT id FROM orders WHERE tenant_id = $1"
    assert names.resolve(q, snapshot()).tables == ["public.orders"]
    assert meaning(q, "tenant_id") is None  # public.orders has no tenant_id
    app_first = snapshot('"$user", app, public')
    assert names.resolve(q, app_first).tables == ["app.orders"]
    assert meaning(q, "tenant_id", app_first) == ("app.orders", "tenant_id")
    assert names.search_path_of(app_first) == ("alice", "app", "public")


def test_mixed_case_schema_and_names_with_spaces():
    q = 'SELECT o."Total" FROM "Sales"."Orders" o WHERE o."CustomerId" = $1'
    assert meaning(q, 'o."CustomerId"') == ("Sales.Orders", "CustomerId")
    q = 'SELECT "event kind" FROM "Audit Log" WHERE "user id" = $1'
    assert meaning(q, '"user id"') == ("public.Audit Log", "user id")
    assert resolve_tables(q, TABLES) == ["public.Audit Log"]


def test_ctes_hide_tables_and_trace_to_their_source():
    q = (
        'WITH orders AS (SELECT id, "CustomerId" AS customer FROM "Sales"."Orders" WHERE "Total" > $1) '
        "SELECT id FROM orders WHERE customer = $2"
    )
    r = names.resolve(q, snapshot())
    assert r.tables == ["Sales.Orders"]  # the CTE named orders hides public.orders
    assert meaning(q, "customer = $2") == ("Sales.Orders", "CustomerId")
    assert resolve_tables(q, TABLES) == ["Sales.Orders"]


def test_subqueries_derived_tables_and_correlation():
    q = 'SELECT x.a FROM (SELECT "authorId" AS a FROM "Post") x WHERE x.a = $1'
    assert meaning(q, "x.a =") == ("public.Post", "authorId")
    q = 'SELECT email FROM "User" u WHERE EXISTS (SELECT 1 FROM "Post" WHERE "authorId" = u.id AND title = $1)'
    assert meaning(q, '"authorId"') == ("public.Post", "authorId")
    assert meaning(q, "u.id") == ("public.User", "id")  # the outer query's alias, seen from inside
    assert meaning(q, "title") == ("public.Post", "title")


def test_views_are_relations_whose_columns_trace_to_the_base_table():
    q = 'SELECT p.title FROM "PublishedPost" p WHERE p."writerId" = $1'
    r = names.resolve(q, snapshot())
    assert r.tables == ["public.PublishedPost"] and r.base_tables == ["public.Post"]
    assert meaning(q, 'p."writerId"') == ("public.Post", "authorId")


def test_dml_targets_set_and_upsert():
    q = 'UPDATE "Post" SET title = $1 WHERE "authorId" = $2'
    assert meaning(q, "title") == ("public.Post", "title")
    assert meaning(q, '"authorId"') == ("public.Post", "authorId")
    q = 'DELETE FROM "Post" p USING "User" u WHERE p."authorId" = u.id AND u."order" = $1'
    assert names.resolve(q, snapshot()).tables[0] == "public.Post"
    assert meaning(q, 'u."order"') == ("public.User", "order")
    q = 'INSERT INTO "Post" (id, title) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET title = excluded.title'
    assert meaning(q, "excluded.title") == ("public.Post", "title")


def test_row_locks_using_joins_stars_and_ctes_by_offset():
    q = 'SELECT p.title FROM "Post" p JOIN "User" u ON u.id = p."authorId" WHERE u.email = $1 FOR UPDATE OF p'
    assert names.resolve(q, snapshot()).unresolved is None  # OF p is an alias, not a second table
    assert meaning(q, "u.email") == ("public.User", "email")
    # A bare USING column is the left table's for an inner or left join; a FULL join's is neither.
    q = 'SELECT id, title FROM "Post" JOIN "User" USING (id) WHERE id = $1'
    assert meaning(q, "id = $1") == ("public.Post", "id") and meaning(q, "id,") == ("public.Post", "id")
    assert names.resolve(q, snapshot()).using == {q.index('"User"'): [(("public.Post", "id"), ("public.User", "id"))]}
    q = 'SELECT title FROM "Post" FULL JOIN "User" USING (id) WHERE id = $1'
    r = names.resolve(q, snapshot())
    assert r.reference_at(q.index("id = $1")) is not None and meaning(q, "id = $1") is None  # answered: no one column
    q = 'WITH orders AS (SELECT * FROM "Post") SELECT o.*, u.* FROM orders o, "User" u'
    r = names.resolve(q, snapshot())
    assert r.stars == {q.index("*"): ["public.Post"], q.index("o.*"): [], q.index("u.*"): ["public.User"]}
    assert r.relations[q.index("orders o")] is None and r.relations[q.index('"User" u')] == "public.User"
    assert r.reference_at(q.index("SELECT o.*")) is None  # nothing there: no answer, not a guess


def test_placeholders_and_typed_literals_are_tolerated():
    q = "SELECT count(*) FROM orders WHERE created_at > date $1 - interval $2 day AND status = $3"
    r = names.resolve(q, snapshot())  # PostgreSQL's grammar rejects `date $1`; the names still resolve
    assert r.unresolved is None
    assert meaning(q, "created_at") == ("public.orders", "created_at")
    assert meaning(q, "status") == ("public.orders", "status")


def test_text_that_cannot_be_read_is_unresolved_with_a_reason():
    truncated = 'SELECT id FROM "Post" WHERE id IN (SELECT id FROM '
    r = names.resolve(truncated, snapshot())
    assert r.unresolved and "cannot parse" in r.unresolved and r.columns == []
    utility = names.resolve('VACUUM "Post"', snapshot())
    assert utility.unresolved and utility.tables == ["public.Post"]  # tables still come from pglast


def test_resolutions_are_cached_per_text():
    snap = snapshot()
    q = 'SELECT 1 FROM "Post"'
    assert names.resolve(q, snap) is names.resolve(q, snap)


def test_plan_sort_keys_name_their_column():
    assert names.column_name('p."createdAt"') == "createdAt"
    assert names.column_name("Total") == "total"
    assert names.column_name("created_at DESC") is None and names.column_name("lower(email)") is None


@pytest.mark.parametrize(
    "name, quoted",
    [
        ("orders", "orders"),
        ("Post", '"Post"'),
        ("authorId", '"authorId"'),
        ("order", '"order"'),
        ("user", '"user"'),
        ("user id", '"user id"'),
        ('say "hi"', '"say ""hi"""'),
        ("name", "name"),
    ],
)
def test_one_quoting_rule(name, quoted):
    assert quote_ident(name) == quoted


def test_qualified_names_and_generated_index_sql():
    assert quote_qualified("Sales", "Orders") == '"Sales"."Orders"'
    assert quote_table("public.Audit Log") == 'public."Audit Log"'
    c = cand.Candidate(
        "public.Post",
        ("authorId", "lower(title)"),
        include=("order",),
        equality_prefix=2,
        expressions=("lower(title)",),
    )
    name = index_name(c, set())
    assert name == "post_authorid_lower_title_incl_idx"
    assert create_sql(c, name) == (
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS post_authorid_lower_title_incl_idx "
        'ON public."Post" ("authorId", (lower(title))) INCLUDE ("order");'
    )


def test_index_candidates_on_quoted_names():
    snap = snapshot()
    found = {
        c.columns: c
        for use in cand.statement_uses(
            'SELECT p.title FROM "Post" p WHERE p."authorId" = $1 AND lower(p.title) = $2', snap
        ).tables
        for c in cand.candidates_for_use(use, snap, "q1")
    }
    assert ("authorId", "lower(title)") in found
    expression = found[("authorId", "lower(title)")]
    assert "expression" in expression.reasons and expression.expressions == ("lower(title)",)
    assert "(lower(title))" in create_sql(expression, "x")
    # A CTE named like a table is not that table.
    uses = cand.statement_uses(
        "WITH orders AS (SELECT 1 AS customer_id) SELECT * FROM orders WHERE customer_id = $1", snap
    ).tables
    assert not [u for u in uses if u.table == "public.orders"]


def test_verify_real_values_come_from_the_resolved_column():
    from queryaudit.advisor.costing import sample_parameters
    from queryaudit.snapshot import ColumnStats

    snap = snapshot()
    snap.column_stats = [
        ColumnStats("public.Audit Log", "user id", most_common_vals=["42"]),
        ColumnStats("public.Audit Log", "id", most_common_vals=["7"]),
        ColumnStats("public.User", "order", histogram_bounds=["1", "5", "9"]),
    ]
    q = 'SELECT 1 FROM "Audit Log" a JOIN "User" u ON u.id = a."user id" WHERE a."user id" = $1 AND u."order" > $2'
    assert sample_parameters(q, snap, {"public.Audit Log"}, ["bigint", "text"]) == ["42", "5"]


def test_index_hygiene_fixes_quote_index_names():
    from queryaudit.checks import invalid_index
    from queryaudit.checks._indexes import drop_sql
    from queryaudit.snapshot import Index

    broken = Index(
        "Sales",
        "Orders by Customer",
        "Sales.Orders",
        'CREATE INDEX "Orders by Customer" ON "Sales"."Orders" USING btree ("CustomerId")',
        columns=['"CustomerId"'],
        is_valid=False,
    )
    assert drop_sql(broken) == 'DROP INDEX CONCURRENTLY IF EXISTS "Sales"."Orders by Customer";'
    snap = snapshot()
    snap.indexes = [broken]
    [finding] = invalid_index.run(snap)
    assert finding.fix_sql == (
        'DROP INDEX CONCURRENTLY IF EXISTS "Sales"."Orders by Customer";\n'
        'CREATE INDEX CONCURRENTLY IF NOT EXISTS "Orders by Customer" ON "Sales"."Orders" '
        'USING btree ("CustomerId");'
    )


def test_n_plus_one_join_rewrite_quotes_the_child():
    import pglast

    from queryaudit.n_plus_one.shape import join_rewrite, lookup_shape

    child = 'SELECT "title", "order" FROM "Post" WHERE "authorId" = $1'
    shape = lookup_shape(child)
    joined = join_rewrite('SELECT id FROM "User" ORDER BY id LIMIT 20', "id", shape, "public.Post", "authorId")
    assert 'LEFT JOIN public."Post" AS c ON c."authorId" = p.id' in " ".join(joined.split())
    assert 'c."order"' in joined
    pglast.parse_sql(joined)
