"""Application capture on every driver and framework a Python web application uses, on a
real PostgreSQL: Django (psycopg 3 and psycopg2, middleware, pytest-django), psycopg2,
asyncpg, SQLAlchemy's async engine (asyncpg and psycopg 3), and query budgets.

Each case checks that the N+1 is reported at the application's own line (this file's or
the app script's), that the fix is the framework's own, and that the loop-free version of
the same code reports nothing."""

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from queryaudit.capture import NPlusOneError, QueryBudgetExceeded, capture, query_budget

APPS = Path(__file__).parent / "capture_apps"
ROOT = Path(__file__).resolve().parent.parent

SCHEMA = """
CREATE TABLE shelves (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE items (id int PRIMARY KEY, shelf_id int NOT NULL REFERENCES shelves, label text NOT NULL);
INSERT INTO shelves SELECT g, 'shelf ' || g FROM generate_series(1, 12) g;
INSERT INTO items SELECT g, 1 + g % 12, 'item ' || g FROM generate_series(1, 60) g;
"""


def _line_of(fragment: str, path: Path = Path(__file__)) -> int:
    lines = path.read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if fragment in line and "_line_of" not in line)


def _site(line_fragment: str) -> str:
    return f"{Path(__file__).name}:{_line_of(line_fragment)}"


@pytest.fixture
def shelf_db(empty_db):
    empty_db.execute(SCHEMA)
    return empty_db


# -- Django -----------------------------------------------------------------------------------


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_django_loops_name_the_application_line_and_the_django_fix(empty_db, driver):
    result = subprocess.run(
        [sys.executable, "django_app.py"],
        cwd=APPS,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "APP_DSN": empty_db.dsn, "APP_DRIVER": driver, "PYTHONPATH": f"{ROOT}{os.pathsep}{APPS}"},
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["driver"].startswith(driver)
    app = APPS / "django_app.py"

    [forward] = found["forward"]
    assert forward["call_site"] == f"django_app.py:{_line_of('# forward loop', app)}"
    assert forward["executions"] == 24 and forward["source"] == "django"  # once per book, not twice
    assert forward["hint"].startswith('Book.objects.select_related("author")')
    assert forward["batched"].endswith("WHERE shelf_author.id = ANY($1)")
    assert "django/db/backends/utils.py" in forward["stack"][0]  # the whole stack is kept as evidence

    [reverse] = found["reverse"]
    assert reverse["call_site"] == f"django_app.py:{_line_of('# reverse loop', app)}"
    assert reverse["hint"].startswith('Author.objects.prefetch_related("books")') and reverse["executions"] == 8

    [many] = found["many_to_many"]
    assert many["call_site"] == f"django_app.py:{_line_of('# many-to-many loop', app)}"
    assert many["hint"].startswith('Book.objects.prefetch_related("tags")')

    assert found["forward_fixed"] == [] and found["reverse_fixed"] == []
    assert found["middleware"] == [
        {"path": "GET /books", "call_sites": [f"django_app.py:{_line_of('# view loop', app)}"]}
    ]


def test_pytest_plugin_under_pytest_django(empty_db, tmp_path):
    (tmp_path / "settings.py").write_text(
        textwrap.dedent(f"""
        from urllib.parse import urlparse
        dsn = urlparse({empty_db.dsn!r})
        INSTALLED_APPS = ["shelf"]
        DATABASES = {{"default": {{"ENGINE": "django.db.backends.postgresql", "NAME": dsn.path.lstrip("/"),
                                   "USER": dsn.username, "HOST": dsn.hostname, "PORT": dsn.port}}}}
        DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
    """)
    )
    (tmp_path / "test_views.py").write_text(
        textwrap.dedent("""
        import pytest
        from shelf.models import Author, Book

        @pytest.fixture
        def books(db):
            for a in range(6):
                author = Author.objects.create(name=f"a{a}")
                Book.objects.create(title=f"b{a}", author=author)

        def test_loop(books, queryaudit_capture):
            assert len([b.author.name for b in Book.objects.all()]) == 6

        def test_no_loop(books, queryaudit_capture):
            assert len([b.author.name for b in Book.objects.select_related("author")]) == 6
    """)
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--ds=settings", "test_views.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{APPS}{os.pathsep}{tmp_path}"},
    )
    out = result.stdout
    assert "1 failed, 1 passed" in out, out + result.stderr
    line = _line_of("for b in Book.objects.all()", tmp_path / "test_views.py")
    assert f"N+1 at test_views.py:{line}: 6 executions" in out, out
    assert 'fix: Book.objects.select_related("author")' in out


def test_strict_mode_fails_at_the_lazy_load_and_the_allow_list_holds(empty_db, tmp_path):
    """--queryaudit-n-plus-one=error under pytest-django, at 2 rows: the loop fails its test at
    the second lazy load, with line and fix; the marker, the context manager and the ini
    allow-list accept theirs; two test-client requests are two units, not one loop."""
    (tmp_path / "settings.py").write_text(
        textwrap.dedent(f"""
        from urllib.parse import urlparse
        dsn = urlparse({empty_db.dsn!r})
        INSTALLED_APPS = ["shelf"]
        DATABASES = {{"default": {{"ENGINE": "django.db.backends.postgresql", "NAME": dsn.path.lstrip("/"),
                                   "USER": dsn.username, "HOST": dsn.hostname, "PORT": dsn.port}}}}
        DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
        ROOT_URLCONF = "urls"
        ALLOWED_HOSTS = ["testserver"]
    """)
    )
    (tmp_path / "urls.py").write_text(
        textwrap.dedent("""
        from django.http import HttpResponse
        from django.urls import path
        from shelf.models import Book

        def one_of_the_list(request, n):
            return HttpResponse(list(Book.objects.order_by("id"))[n].author.name)

        urlpatterns = [path("book/<int:n>", one_of_the_list)]
    """)
    )
    (tmp_path / "test_views.py").write_text(
        textwrap.dedent("""
        import pytest
        from shelf.models import Author, Book
        from queryaudit.capture import allow_n_plus_one

        seen = []

        @pytest.fixture
        def books(db):
            for a in range(2):
                Book.objects.create(title=f"b{a}", author=Author.objects.create(name=f"a{a}"))

        def test_loop(books):
            for book in Book.objects.order_by("id"):
                seen.append(book.author.name)

        def test_loop_stopped_at_the_second_load():
            assert seen == ["a0"]

        @pytest.mark.allow_n_plus_one("Book.author")
        def test_allowed_by_marker(books):
            assert len([b.author.name for b in Book.objects.all()]) == 2

        def test_allowed_by_context_manager(books):
            with allow_n_plus_one():
                assert len([b.author.name for b in Book.objects.all()]) == 2

        def test_allowed_by_config(books):
            assert len([len(a.books.all()) for a in Author.objects.all()]) == 2

        def test_two_requests_are_two_units(books, client):
            assert [client.get(f"/book/{n}").content for n in range(2)] == [b"a0", b"a1"]
    """)
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--ds=settings",
            "--queryaudit-n-plus-one=error",
            "-o",
            "queryaudit_n_plus_one_allow=Author.books",
            "test_views.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{APPS}{os.pathsep}{tmp_path}"},
    )
    out = result.stdout
    assert "1 failed, 5 passed" in out, out + result.stderr
    line = _line_of("seen.append(book.author.name)", tmp_path / "test_views.py")
    assert f"N+1 at test_views.py:{line}: 2 executions" in out, out
    assert 'fix: Book.objects.select_related("author"): loads each Book\'s author in the same query' in out
    assert f"test_views.py:{line}: NPlusOneError" in out, out  # raised at the application's line


def test_pytest_plugin_under_pytest_asyncio(shelf_db, tmp_path):
    (tmp_path / "test_async.py").write_text(
        textwrap.dedent("""
        import os, asyncpg, pytest

        @pytest.mark.asyncio
        async def test_loop(queryaudit_capture):
            conn = await asyncpg.connect(os.environ["APP_DSN"])
            for shelf_id in range(1, 7):
                await conn.fetch("SELECT label FROM items WHERE shelf_id = $1", shelf_id)
            await conn.close()

        @pytest.mark.asyncio
        async def test_no_loop(queryaudit_capture):
            conn = await asyncpg.connect(os.environ["APP_DSN"])
            await conn.fetch("SELECT label FROM items WHERE shelf_id = ANY($1::int[])", list(range(1, 7)))
            await conn.close()
            assert len(queryaudit_capture.statements) == 1
    """)
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:django", "test_async.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "APP_DSN": shelf_db.dsn, "PYTHONPATH": str(ROOT)},
    )
    out = result.stdout
    assert "1 failed, 1 passed" in out, out + result.stderr
    line = _line_of('await conn.fetch("SELECT label FROM items WHERE shelf_id = $1', tmp_path / "test_async.py")
    assert f"N+1 at test_async.py:{line}: 6 executions" in out, out


# -- psycopg2 without a framework -------------------------------------------------------------


def test_psycopg2_loop_is_captured(shelf_db):
    import psycopg2
    import psycopg2.extras

    with capture() as cap:
        conn = psycopg2.connect(shelf_db.dsn)
        try:
            cur = conn.cursor()
            cur.execute("SELECT id FROM shelves ORDER BY id")
            for (shelf_id,) in cur.fetchall():
                dict_cursor = conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor)
                dict_cursor.execute("SELECT label FROM items WHERE shelf_id = %s", (shelf_id,))  # psycopg2 loop
        finally:
            conn.close()
    with capture() as loop_free, psycopg2.connect(shelf_db.dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT id FROM shelves ORDER BY id")
        cur.execute("SELECT label FROM items WHERE shelf_id = ANY(%s)", ([r[0] for r in cur.fetchall()],))
    assert loop_free.n_plus_one() == [] and len(loop_free.statements) == 2
    [loop] = cap.n_plus_one()
    assert loop.executions == 12 and loop.source == "psycopg2"
    assert loop.call_site.endswith(_site("# psycopg2 loop"))
    assert loop.batched_query.endswith("WHERE shelf_id = ANY($1)")
    assert loop.parent_sql.startswith("SELECT id FROM shelves")


# -- asyncpg ----------------------------------------------------------------------------------


def test_asyncpg_loop_is_captured(shelf_db):
    import asyncpg

    async def page(loop_free: bool):
        conn = await asyncpg.connect(shelf_db.dsn)
        try:
            shelves = await conn.fetch("SELECT id FROM shelves ORDER BY id")
            if loop_free:
                return await conn.fetch(
                    "SELECT label FROM items WHERE shelf_id = ANY($1::int[])", [r["id"] for r in shelves]
                )
            return [
                await conn.fetch("SELECT label FROM items WHERE shelf_id = $1", r["id"])  # asyncpg loop
                for r in shelves
            ]
        finally:
            await conn.close()

    with capture() as cap:
        asyncio.run(page(loop_free=False))
    [loop] = cap.n_plus_one()
    assert loop.call_site.endswith(_site("# asyncpg loop")) and loop.source == "asyncpg"
    assert loop.executions == 12 and loop.parent_sql == "SELECT id FROM shelves ORDER BY id"
    assert loop.batched_query.endswith("WHERE shelf_id = ANY($1)")

    with capture() as cap:
        asyncio.run(page(loop_free=True))
    assert cap.n_plus_one() == [] and len(cap.statements) == 2


def test_asyncpg_pool_and_prepared_statements_are_captured(shelf_db):
    import asyncpg

    async def page():
        async with asyncpg.create_pool(shelf_db.dsn, min_size=1, max_size=1) as pool:
            async with pool.acquire() as conn:
                stmt = await conn.prepare("SELECT label FROM items WHERE id = $1")
                for item_id in range(1, 9):
                    await stmt.fetchrow(item_id)  # prepared loop

    with capture() as cap:
        asyncio.run(page())
    [loop] = cap.n_plus_one()
    assert loop.call_site.endswith(_site("# prepared loop")) and loop.executions == 8


# -- SQLAlchemy, async engine -----------------------------------------------------------------


@pytest.mark.parametrize("driver", ["asyncpg", "psycopg"])
def test_sqlalchemy_async_lazy_load_is_captured(shelf_db, driver):
    from sqlalchemy import ForeignKey, select
    from sqlalchemy.ext.asyncio import AsyncAttrs, AsyncSession, create_async_engine
    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, selectinload

    class Base(AsyncAttrs, DeclarativeBase):
        pass

    class Shelf(Base):
        __tablename__ = "shelves"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]
        items: Mapped[list["Item"]] = relationship()

    class Item(Base):
        __tablename__ = "items"
        id: Mapped[int] = mapped_column(primary_key=True)
        shelf_id: Mapped[int] = mapped_column(ForeignKey("shelves.id"))
        label: Mapped[str]

    engine = create_async_engine(shelf_db.dsn.replace("postgresql://", f"postgresql+{driver}://"))

    async def page(eager: bool):
        async with AsyncSession(engine) as session:
            query = select(Shelf).order_by(Shelf.id)
            if eager:
                query = query.options(selectinload(Shelf.items))
            shelves = (await session.scalars(query)).all()
            return [len(await shelf.awaitable_attrs.items) for shelf in shelves]  # async lazy loop

    async def run(eager: bool):
        try:
            return await page(eager)
        finally:
            await engine.dispose()

    with capture() as cap:
        assert sum(asyncio.run(run(eager=False))) == 60
    [loop] = cap.n_plus_one()
    assert loop.call_site.endswith(_site("# async lazy loop"))
    assert loop.executions == 12 and loop.source == "sqlalchemy"  # recorded once, not again by the driver hook
    assert "selectinload(Shelf.items)" in loop.orm_hint

    with capture() as cap:
        assert sum(asyncio.run(run(eager=True))) == 60
    assert cap.n_plus_one() == []


# -- call sites and budgets -------------------------------------------------------------------


def test_call_site_rule_include_and_exclude(shelf_db):
    import psycopg

    def lookup(conn, shelf_id):  # the application's own data-access helper
        return conn.execute("SELECT name FROM shelves WHERE id = %s", (shelf_id,)).fetchone()

    with psycopg.connect(shelf_db.dsn) as conn:
        with capture() as plain:
            for shelf_id in range(1, 7):
                lookup(conn, shelf_id)  # caller of the helper
        with capture(exclude=(__name__,)) as excluded:
            for shelf_id in range(1, 7):
                lookup(conn, shelf_id)
    [loop] = plain.n_plus_one()
    assert loop.call_site.endswith(_site('return conn.execute("SELECT name FROM shelves'))
    # With this module excluded, no frame is the application's: the call site is unknown rather than wrong.
    assert excluded.n_plus_one()[0].call_site == "?"
    assert any(_site("# caller of the helper") in frame for frame in loop.stack)


def test_one_statement_from_different_lines_is_no_loop(shelf_db):
    """Raw statements are counted by line: six lines sending the same lookup once each are
    six single lookups, not a loop of six; the same lookup from one line is."""
    import psycopg

    sql = "SELECT name FROM shelves WHERE id = %s"
    with psycopg.connect(shelf_db.dsn) as conn:
        with capture() as cap:
            conn.execute(sql, (1,))
            conn.execute(sql, (2,))
            conn.execute(sql, (3,))
            conn.execute(sql, (4,))
            conn.execute(sql, (5,))
            conn.execute(sql, (6,))
            for shelf_id in range(1, 7):
                conn.execute(sql, (shelf_id,))  # one line's loop
    [loop] = cap.n_plus_one()
    assert loop.call_site.endswith(_site("# one line's loop")) and loop.executions == 6
    assert len(cap.statements) == 12


def test_query_budget_reports_the_loop(shelf_db):
    import psycopg

    with psycopg.connect(shelf_db.dsn) as conn:
        with pytest.raises(QueryBudgetExceeded) as failure:
            with query_budget(3):
                for shelf_id in range(1, 9):
                    conn.execute("SELECT label FROM items WHERE shelf_id = %s", (shelf_id,))  # over budget
        with query_budget(3) as cap:
            conn.execute("SELECT label FROM items WHERE shelf_id = ANY(%s)", ([1, 2],))
    message = str(failure.value)
    assert message.startswith("8 statements run, budget 3")
    assert f"N+1 at tests/{_site('# over budget')}: 8 executions" in message
    assert len(cap.statements) == 1
    with pytest.raises(NPlusOneError):
        failure.value.capture.assert_no_n_plus_one()


# -- ASGI / WSGI middleware -------------------------------------------------------------------


def test_asgi_middleware_reports_an_asyncpg_loop_per_request(shelf_db):
    import asyncpg

    from queryaudit.capture.middleware import QueryAuditASGI

    async def app(scope, receive, send):  # an ASGI endpoint, as FastAPI or Starlette would call it
        conn = await asyncpg.connect(shelf_db.dsn)
        try:
            shelves = await conn.fetch("SELECT id FROM shelves ORDER BY id")
            if scope["path"] == "/loop":
                for shelf in shelves:
                    await conn.fetch("SELECT label FROM items WHERE shelf_id = $1", shelf["id"])  # endpoint loop
        finally:
            await conn.close()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    reports = []
    wrapped = QueryAuditASGI(app, on_n_plus_one=lambda path, loops: reports.append((path, loops)))
    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    for path in ("/loop", "/batched"):
        asyncio.run(wrapped({"type": "http", "method": "GET", "path": path}, receive, send))
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [200, 200]
    [(path, [loop])] = reports
    assert path == "GET /loop" and loop.executions == 12
    assert loop.call_site.endswith(_site("# endpoint loop"))


def test_wsgi_middleware_reports_a_psycopg2_loop(shelf_db):
    import psycopg2

    from queryaudit.capture.middleware import QueryAuditWSGI

    def app(environ, start_response):
        conn = psycopg2.connect(shelf_db.dsn)
        try:
            cur = conn.cursor()
            for shelf_id in range(1, 7):
                cur.execute("SELECT name FROM shelves WHERE id = %s", (shelf_id,))  # wsgi loop
        finally:
            conn.close()
        start_response("200 OK", [])
        return [b"ok"]

    reports = []
    wrapped = QueryAuditWSGI(app, on_n_plus_one=lambda path, loops: reports.append((path, loops)))
    assert wrapped({"REQUEST_METHOD": "GET", "PATH_INFO": "/shelves"}, lambda status, headers: None) == [b"ok"]
    [(path, [loop])] = reports
    assert path == "GET /shelves" and loop.call_site.endswith(_site("# wsgi loop"))


# -- Django: every relation kind at 2 rows, on the installed Django and on 4.2 -------------------

DJANGO_42 = Path(tempfile.gettempdir()) / "queryaudit-django-4.2"
SELECT = "loads each {0}'s {1} in the same query"
PREFETCH = "loads the {1} of all {0} rows in one more query instead of one per {2}"
# case: (relation, fix hint) of the one loop it has; None: no loop.
PRESS_CASES = {
    "forward": ("Book.author", 'Book.objects.select_related("author"): ' + SELECT.format("Book", "author")),
    "reverse": (
        "Author.books",
        'Author.objects.prefetch_related("books"): ' + PREFETCH.format("Author", "books", "Author"),
    ),
    "many_to_many": ("Book.tags", 'Book.objects.prefetch_related("tags"): ' + PREFETCH.format("Book", "tags", "Book")),
    "many_to_many_reverse": (
        "Tag.books",
        'Tag.objects.prefetch_related("books"): ' + PREFETCH.format("Tag", "books", "Tag"),
    ),
    "one_to_one_reverse": (
        "Author.profile",
        'Author.objects.select_related("profile"): ' + SELECT.format("Author", "profile"),
    ),
    "one_to_one_forward": (
        "Profile.author",
        'Profile.objects.select_related("author"): ' + SELECT.format("Profile", "author"),
    ),
    "chain": (
        "Author.profile",
        'Book.objects.select_related("author__profile"): ' + SELECT.format("Book", "author__profile"),
    ),
    "chain_after_select_related": (
        "Author.profile",
        'Book.objects.select_related("author__profile"): ' + SELECT.format("Book", "author__profile"),
    ),
    "prefetch_chain": (
        "Book.tags",
        'Author.objects.prefetch_related("books__tags"): ' + PREFETCH.format("Author", "tags", "Book"),
    ),
    "filtered_set": (
        "Author.books",
        'Author.objects.prefetch_related(Prefetch("books", queryset=Book.objects.filter('
        'published=True), to_attr="filtered_books")), then read author.filtered_books instead of '
        "author.books.filter(...)",
    ),
    "self_parent": ("Person.parent", 'Person.objects.select_related("parent"): ' + SELECT.format("Person", "parent")),
    "self_followers": (
        "Person.followers",
        'Person.objects.prefetch_related("followers"): ' + PREFETCH.format("Person", "followers", "Person"),
    ),
    "self_following": (
        "Person.following",
        'Person.objects.prefetch_related("following"): ' + PREFETCH.format("Person", "following", "Person"),
    ),
    "self_friends": (
        "Person.friends",
        'Person.objects.prefetch_related("friends"): ' + PREFETCH.format("Person", "friends", "Person"),
    ),
    "generic_foreign_key": (
        "Comment.content_object",
        "Comment.objects.prefetch_related({}): loads the content_object "
        "of all Comment rows in one query per content type instead of one per row",
    ),
    "generic_relation": (
        "Book.comments",
        'Book.objects.prefetch_related("comments"): ' + PREFETCH.format("Book", "comments", "Book"),
    ),
    "deferred_only": (
        "Book.summary",
        'Book.objects.only("summary", "title"): add "summary" to the only() list; '
        "without it each Book reloads summary with one query",
    ),
    "deferred_defer": (
        "Book.summary",
        'Book.objects.defer("published"): take "summary" out of the defer() list; '
        "deferred, each Book reloads it with one query",
    ),
    "prefetch_per_row": (
        "Author.books",
        'prefetch_related_objects(<all the Author rows>, "books") once, before the '
        'loop (or Author.objects.prefetch_related("books")): one query for all rows instead of one '
        "per Author",
    ),
    "requests": ("Book.author", 'Book.objects.select_related("author"): ' + SELECT.format("Book", "author")),
    "helper_twice": ("Book.author", 'Book.objects.select_related("author"): ' + SELECT.format("Book", "author")),
}
PRESS_SILENT = [
    "forward_fixed",
    "reverse_fixed",
    "chain_fixed",
    "first",
    "index",
    "get",
    "different_lines",
    "allowed",
    "budget_units",
    "unused_select_related",
    "unused_prefetch",
]


def _django_42() -> Path:
    """Django 4.2 installed once into a directory of its own (reused by later runs), to put
    first on the application's PYTHONPATH; skipped with pip's reason when it cannot be had."""
    if (DJANGO_42 / "django" / "__init__.py").exists():
        return DJANGO_42
    staging = Path(tempfile.mkdtemp(prefix="queryaudit-django-4.2-"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--target",
            str(staging),
            "Django>=4.2,<4.3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        pytest.skip(f"Django 4.2 could not be installed: {result.stderr.strip()[-300:]}")
    try:
        staging.rename(DJANGO_42)  # atomic: a concurrent run either wins or finds it there
    except OSError:
        pass
    return DJANGO_42


@pytest.mark.parametrize("django_version", ["installed", "4.2"])
def test_django_lazy_loads_of_every_relation_kind_at_two_rows(empty_db, django_version):
    first = [str(_django_42())] if django_version == "4.2" else []
    result = subprocess.run(
        [sys.executable, "press_app.py"],
        cwd=APPS,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "APP_DSN": empty_db.dsn, "PYTHONPATH": os.pathsep.join([*first, str(ROOT), str(APPS)])},
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["django"].startswith("4.2.") == (django_version == "4.2"), found["django"]
    app = APPS / "press_app.py"
    generic = (
        'GenericPrefetch("content_object", [Book.objects.all()])'
        if not found["django"].startswith("4.")
        else '"content_object"'
    )
    for name, (relation, hint) in PRESS_CASES.items():
        [loop] = found[name]["loops"]
        marker = "# loop: in-request" if name == "requests" else f"# loop: {name}"
        assert loop["call_site"] == f"press_app.py:{_line_of(marker, app)}", (name, loop)
        assert (loop["relation"], loop["hint"]) == (relation, hint.format(generic)), name
        assert loop["executions"] == 2 and loop["source"] == "django", (name, loop)
    for name in PRESS_SILENT:
        assert found[name]["loops"] == [], (name, found[name])
    assert found["first"]["statements"] == 4 and found["different_lines"]["statements"] == 3  # they ran
    assert found["budget_units"]["statements"] == 3
    assert found["unused_select_related"]["unused"] == [
        f"unused eager load at press_app.py:{_line_of('def unused_select_related', app) + 1}: "
        'Book.objects.select_related("author") is never read; drop it'
    ]
    assert found["unused_prefetch"]["unused"] == [
        f"unused eager load at press_app.py:{_line_of('def unused_prefetch', app) + 1}: "
        'Author.objects.prefetch_related("books") is never read; drop it'
    ]
    assert all(found[name]["unused"] == [] for name in ("forward_fixed", "reverse_fixed", "chain_fixed"))
