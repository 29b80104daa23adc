"""N+1 from pg_stat_statements alone, from application capture (SQLAlchemy lazy loads), and
the pytest plugin failing a test; a batched workload reports none."""

import asyncio
import json
import os
import subprocess
import sys
import textwrap

import pytest

import n_plus_one_workload as wl
from conftest import run_cli
from helpers import validate_report
from queryaudit.capture import NPlusOneError, capture


def audit(db, tmp_path, *extra):
    out = tmp_path / "report.json"
    result = run_cli("audit", "--dsn", db.dsn, "--json", str(out), "--no-explain", *extra)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    validate_report(report)
    return report


def n_plus_one(report):
    return [f for f in report["findings"] if f["check"] == "n-plus-one"]


def queryid_of(db, text_start: str, toplevel: bool = True) -> str:
    if db.server.version_num < 140000:  # no toplevel column before 14: one entry per statement
        rows = db.execute("SELECT queryid::text FROM pg_stat_statements WHERE query LIKE %s", (text_start + "%",))
    else:
        rows = db.execute(
            "SELECT queryid::text FROM pg_stat_statements WHERE query LIKE %s AND toplevel = %s",
            (text_start + "%", toplevel),
        )
    assert rows, text_start
    return rows[0][0]


def test_loop_found_from_pg_stat_statements_alone(empty_db, tmp_path):
    with empty_db.connect() as conn:
        wl.load(conn)
        conn.execute("SELECT pg_stat_statements_reset()")
        wl.run_loop(conn)
        # pg_stat_statements.toplevel (14+) tells a function's statements from the application's.
        nested = empty_db.server.version_num >= 140000
        if nested:
            wl.run_function_loop(conn)
    findings = n_plus_one(audit(empty_db, tmp_path))
    app = [f for f in findings if f["evidence"]["child"]["toplevel"] is not False]
    assert len(app) == 1, findings
    f = app[0]
    assert f["table"] == "public.books" and f["columns"] == ["author_id"]
    child = queryid_of(empty_db, "SELECT id, title FROM books WHERE author_id")
    parent = queryid_of(empty_db, "SELECT id, name FROM authors ORDER BY id")
    assert f["queryids"] == [child, parent]  # child first, then parent
    ev = f["evidence"]
    assert ev["child"]["calls"] == 60 and ev["parent"]["calls"] == 3 and ev["parent"]["rows"] == 60
    assert ev["calls_per_parent_call"] == 20 and ev["key_kind"] == "foreign key"
    assert ev["linked_by"] == {"parent_column": "id", "child_column": "author_id"}
    assert ev["batched_query"] == "SELECT id, title, author_id FROM books WHERE author_id = ANY($1)"
    assert "LEFT JOIN public.books AS c ON c.author_id = p.id" in " ".join(ev["join_query"].split())
    # A scan per call: batching removes all but one scan per page, and the saving says so.
    assert f["predicted_saving"]["total_ms"] > 0.9 * ev["child"]["total_exec_time_ms"] * (1 - 3 / 60)
    # The PL/pgSQL loop: statements with toplevel = false (pg_stat_statements.track = all).
    if not nested:
        return
    inner = [f for f in findings if f["evidence"]["child"]["toplevel"] is False]
    assert len(inner) == 1 and inner[0]["table"] == "public.books", findings
    assert "function" in inner[0]["title"] and "set-based" in inner[0]["advice"]
    assert inner[0]["evidence"]["parent"]["query"].startswith("SELECT id FROM authors")


def test_batched_workload_reports_no_n_plus_one(empty_db, tmp_path):
    with empty_db.connect() as conn:
        wl.load(conn)
        conn.execute("SELECT pg_stat_statements_reset()")
        for _ in range(10):
            wl.run_batched(conn)
    assert n_plus_one(audit(empty_db, tmp_path)) == []


# -- application capture ---------------------------------------------------------------------


def _models():
    from sqlalchemy import ForeignKey
    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

    class Base(DeclarativeBase):
        pass

    class Author(Base):
        __tablename__ = "authors"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]

    class Book(Base):
        __tablename__ = "books"
        id: Mapped[int] = mapped_column(primary_key=True)
        author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"))
        title: Mapped[str]
        author: Mapped[Author] = relationship()

    return Author, Book


def test_sqlalchemy_lazy_load_n_plus_one_is_captured(empty_db):
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session, joinedload

    with empty_db.connect() as conn:
        wl.load(conn)
    Author, Book = _models()
    engine = create_engine(empty_db.dsn.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with capture("book list") as cap, Session(engine) as session:
            books = session.scalars(select(Book).where(Book.id <= 12).order_by(Book.id)).all()
            names = [b.author.name for b in books]  # one lazy load per distinct author
        assert len(names) == 12
        loops = cap.n_plus_one()
        assert len(loops) == 1, [found.describe() for found in loops]
        loop = loops[0]
        assert loop.table == "authors" and loop.columns == ["id"] and loop.executions == 12
        assert loop.call_site.endswith(f"test_n_plus_one.py:{_line_of('names = [b.author.name')}")
        assert loop.parent_sql and "FROM books" in loop.parent_sql
        assert "joinedload(Book.author)" in loop.orm_hint
        assert loop.batched_query.endswith("WHERE authors.id = ANY(CAST($1 AS integer[]))")
        with pytest.raises(NPlusOneError, match="N\\+1 at .*test_n_plus_one.py"):
            cap.assert_no_n_plus_one()

        with capture("book list, eager") as cap, Session(engine) as session:
            books = session.scalars(select(Book).options(joinedload(Book.author)).where(Book.id <= 12)).all()
            assert len([b.author.name for b in books]) == 12
        assert cap.n_plus_one() == [] and len(cap.statements) == 1
    finally:
        engine.dispose()


def test_plain_psycopg_loop_is_captured_with_its_call_site(empty_db):
    with empty_db.connect() as conn:
        wl.load(conn)
        with capture() as cap:
            wl.run_loop(conn, pages=1)
        with capture() as batched:
            wl.run_batched(conn, pages=1)
    [loop] = cap.n_plus_one()
    assert loop.executions == 20 and loop.table == "books"
    source = open(wl.__file__).read().splitlines()
    child_line = next(n for n, line in enumerate(source, 1) if "conn.execute(CHILD" in line)
    assert loop.call_site.endswith(f"n_plus_one_workload.py:{child_line}")
    assert loop.parent_call_site.endswith(f"n_plus_one_workload.py:{child_line - 1}")
    assert batched.n_plus_one() == []


def _line_of(fragment: str) -> int:
    lines = open(__file__).read().splitlines()
    return next(n for n, line in enumerate(lines, 1) if fragment in line and "_line_of" not in line)


def test_pytest_plugin_fails_a_test_with_an_n_plus_one(empty_db, tmp_path):
    with empty_db.connect() as conn:
        wl.load(conn)
    (tmp_path / "test_app.py").write_text(
        textwrap.dedent("""
        import os, psycopg, pytest

        def test_loop(queryaudit_capture):
            with psycopg.connect(os.environ["APP_DSN"]) as conn:
                for (author_id,) in conn.execute("SELECT id FROM authors ORDER BY id LIMIT 8").fetchall():
                    conn.execute("SELECT name FROM authors WHERE id = %s", (author_id,)).fetchone()

        @pytest.mark.no_n_plus_one
        def test_loop_marker():
            with psycopg.connect(os.environ["APP_DSN"]) as conn:
                for author_id in range(1, 7):
                    conn.execute("SELECT title FROM books WHERE author_id = %s LIMIT 1", (author_id,)).fetchone()

        def test_batched(queryaudit_capture):
            with psycopg.connect(os.environ["APP_DSN"]) as conn:
                ids = [r[0] for r in conn.execute("SELECT id FROM authors ORDER BY id LIMIT 8")]
                conn.execute("SELECT name FROM authors WHERE id = ANY(%s)", (ids,)).fetchall()
                assert len(queryaudit_capture.statements) == 2

        @pytest.mark.no_n_plus_one(min_executions=10)
        def test_below_threshold():
            with psycopg.connect(os.environ["APP_DSN"]) as conn:
                for author_id in range(1, 7):
                    conn.execute("SELECT name FROM authors WHERE id = %s", (author_id,)).fetchone()
    """)
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", "test_app.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "APP_DSN": empty_db.dsn},
    )
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "2 failed, 2 passed" in out, out
    assert "FAILED test_app.py::test_loop - Failed: 1 N+1 loop(s) detected" in out
    assert "N+1 at test_app.py:7: 8 executions" in out
    assert "FAILED test_app.py::test_loop_marker" in out and "test_app.py:13" in out


# -- SQLAlchemy 2, sync and async: lazy loads at 2 rows -------------------------------------------

SA_SCHEMA = """
CREATE TABLE authors (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE profiles (id int PRIMARY KEY, author_id int NOT NULL UNIQUE REFERENCES authors, bio text NOT NULL);
CREATE TABLE books (id int PRIMARY KEY, author_id int NOT NULL REFERENCES authors, title text NOT NULL);
INSERT INTO authors VALUES (1, 'a1'), (2, 'a2');
INSERT INTO profiles VALUES (1, 1, 'bio 1'), (2, 2, 'bio 2');
INSERT INTO books VALUES (1, 1, 'b1'), (2, 2, 'b2');
"""
SA_HINTS = {
    "many_to_one": (
        "Book.author",
        "select(Book).options(joinedload(Book.author)): loads them with the Book rows "
        "(raiseload(Book.author) then makes any lazy load of it fail in tests)",
    ),
    "one_to_many": (
        "Author.books",
        "select(Author).options(selectinload(Author.books)): loads them with the Author "
        "rows (raiseload(Author.books) then makes any lazy load of it fail in tests)",
    ),
    "chain": (
        "Author.profile",
        "select(Book).options(joinedload(Book.author).joinedload(Author.profile)): loads them "
        "with the Book rows (raiseload(Book.author) then makes any lazy load of it fail in tests)",
    ),
}


def _sa_models(asynchronous: bool):
    from sqlalchemy import ForeignKey
    from sqlalchemy.ext.asyncio import AsyncAttrs
    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

    class Base(*((AsyncAttrs,) if asynchronous else ()), DeclarativeBase):
        pass

    class Author(Base):
        __tablename__ = "authors"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str]
        books: Mapped[list["Book"]] = relationship(back_populates="author")
        profile: Mapped["Profile"] = relationship(uselist=False)

    class Profile(Base):
        __tablename__ = "profiles"
        id: Mapped[int] = mapped_column(primary_key=True)
        author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"))
        bio: Mapped[str]

    class Book(Base):
        __tablename__ = "books"
        id: Mapped[int] = mapped_column(primary_key=True)
        author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"))
        title: Mapped[str]
        author: Mapped[Author] = relationship(back_populates="books")

    Author.profile_class = Profile  # the registry holds classes weakly: keep this one alive
    return Author, Book


def _sa_sync_cases(engine) -> dict:
    from sqlalchemy import select
    from sqlalchemy.orm import Session, joinedload

    Author, Book = _sa_models(asynchronous=False)
    cases = {}

    def run(name, body):
        with capture(name) as cap, Session(engine) as session:
            body(session)
        cases[name] = cap

    def books(session):
        return session.scalars(select(Book).order_by(Book.id)).all()

    run("many_to_one", lambda s: [b.author.name for b in books(s)])  # sa loop: many_to_one
    run("one_to_many", lambda s: [len(a.books) for a in s.scalars(select(Author)).all()])  # sa loop: one_to_many
    run("chain", lambda s: [b.author.profile.bio for b in books(s)])  # sa loop: chain
    run("fixed", lambda s: [b.author.name for b in s.scalars(select(Book).options(joinedload(Book.author)))])
    run("get", lambda s: [s.get(Book, pk).author.name for pk in (1, 2)])  # sa silent: get
    run("first", lambda s: [s.scalars(select(Book).where(Book.id == pk)).first().author.name for pk in (1, 2)])

    def two_lines(session):
        first, second = books(session)
        a = first.author.name  # sa silent: first line
        b = second.author.name  # sa silent: second line
        return a, b

    run("two_lines", two_lines)
    return cases


def _sa_async_cases(engine) -> dict:
    from sqlalchemy import select
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import selectinload

    Author, Book = _sa_models(asynchronous=True)

    async def many_to_one(s):
        return [(await b.awaitable_attrs.author).name for b in await books(s)]  # sa async loop: many_to_one

    async def one_to_many(s):
        authors = (await s.scalars(select(Author))).all()
        return [len(await a.awaitable_attrs.books) for a in authors]  # sa async loop: one_to_many

    async def chain(s):
        async def bio(book):  # the innermost line of the application is the call site
            return (await (await book.awaitable_attrs.author).awaitable_attrs.profile).bio  # sa async loop: chain

        return [await bio(b) for b in await books(s)]

    async def fixed(s):
        return [len(a.books) for a in await s.scalars(select(Author).options(selectinload(Author.books)))]

    async def get(s):
        return [(await (await s.get(Book, pk)).awaitable_attrs.author).name for pk in (1, 2)]

    async def books(s):
        return (await s.scalars(select(Book).order_by(Book.id))).all()

    async def main():
        cases = {}
        try:
            for body in (many_to_one, one_to_many, chain, fixed, get):
                with capture(body.__name__) as cap:
                    async with AsyncSession(engine) as session:
                        await body(session)
                cases[body.__name__] = cap
        finally:
            await engine.dispose()
        return cases

    return asyncio.run(main())


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_sqlalchemy_lazy_loads_at_two_rows(empty_db, flavour):
    from sqlalchemy import create_engine
    from sqlalchemy.ext.asyncio import create_async_engine

    empty_db.execute(SA_SCHEMA)
    url = empty_db.dsn.replace("postgresql://", "postgresql+psycopg://")
    if flavour == "sync":
        engine = create_engine(url)
        try:
            cases = _sa_sync_cases(engine)
        finally:
            engine.dispose()
        marker = "# sa loop: "
    else:
        cases = _sa_async_cases(create_async_engine(url.replace("+psycopg", "+asyncpg")))
        marker = "# sa async loop: "
    for name, (relation, hint) in SA_HINTS.items():
        [loop] = cases[name].n_plus_one()
        assert loop.call_site.endswith(f"test_n_plus_one.py:{_line_of(marker + name)}"), (name, loop.call_site)
        assert (loop.relation, loop.orm_hint, loop.executions) == (relation, hint, 2), name
        assert loop.source == "sqlalchemy" and loop.parent_sql.startswith("SELECT")
    for name in ("fixed", "get", "first", "two_lines"):
        if name in cases:
            assert cases[name].n_plus_one() == [], (name, [x.describe() for x in cases[name].n_plus_one()])
            assert cases[name].statements, name  # the case ran its statements
    assert sum(1 for s in cases["get"].statements if s.lazy) == 2  # lazy loads, on single-row results


def _of_tables(cap) -> list:
    return [s for s in cap.statements if "FROM books" in s.sql or "FROM authors" in s.sql]


def test_sqlalchemy_strict_capture_fails_at_the_second_lazy_load(empty_db):
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from queryaudit.capture import allow_n_plus_one

    empty_db.execute(SA_SCHEMA)
    Author, Book = _sa_models(asynchronous=False)
    engine = create_engine(empty_db.dsn.replace("postgresql://", "postgresql+psycopg://"))
    try:
        seen = []
        with pytest.raises(NPlusOneError) as failure:
            with capture(strict=True) as cap, Session(engine) as session:
                for book in session.scalars(select(Book).order_by(Book.id)):
                    seen.append(book.author.name)  # strict loop
        assert seen == ["a1"]  # raised at the second book, before its lazy load ran
        message = str(failure.value)
        assert f"N+1 at tests/test_n_plus_one.py:{_line_of('# strict loop')}" in message
        assert "fix: select(Book).options(joinedload(Book.author))" in message
        assert len(_of_tables(cap)) == 2  # the list and the first lazy load (the engine's own queries aside)
        with capture(strict=True) as cap, Session(engine) as session, allow_n_plus_one("Book.author"):
            assert [b.author.name for b in session.scalars(select(Book))] == ["a1", "a2"]
        assert cap.n_plus_one() == [] and len(_of_tables(cap)) == 3
    finally:
        engine.dispose()
