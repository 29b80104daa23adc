"""A small library schema and workloads for the N+1 tests: a loop, and the same page batched."""

from __future__ import annotations

SCHEMA = """
CREATE TABLE authors (id int PRIMARY KEY, name text NOT NULL);
-- books.author_id has no index: each lookup scans, so a loop costs real time in the log.
CREATE TABLE books (id int PRIMARY KEY, author_id int NOT NULL REFERENCES authors (id), title text NOT NULL);
INSERT INTO authors SELECT g, 'author ' || g FROM generate_series(1, 8000) g;
INSERT INTO books SELECT g, 1 + g % 8000, 'title ' || g FROM generate_series(1, 60000) g;
ANALYZE authors; ANALYZE books;
CREATE FUNCTION titles_of_first_authors(n int) RETURNS int LANGUAGE plpgsql AS $$
DECLARE a record; total int := 0; n_books int;
BEGIN
  FOR a IN SELECT id FROM authors ORDER BY id LIMIT n LOOP
    SELECT count(*) INTO n_books FROM books WHERE author_id = a.id;
    total := total + n_books;
  END LOOP;
  RETURN total;
END $$;
"""

PAGE = "SELECT id, name FROM authors ORDER BY id LIMIT 20 OFFSET %s"
PAGE_IDS = "SELECT id FROM authors ORDER BY id LIMIT 20 OFFSET %s"
CHILD = "SELECT id, title FROM books WHERE author_id = %s"
BATCHED = "SELECT id, author_id, title FROM books WHERE author_id = ANY(%s)"


def load(conn) -> None:
    conn.execute(SCHEMA)


def run_loop(conn, pages: int = 3) -> None:
    """The N+1: one page of authors, then one query per author for their books."""
    for page in range(pages):
        for author_id, _name in conn.execute(PAGE, (page * 20,)).fetchall():
            conn.execute(CHILD, (author_id,)).fetchall()


def run_batched(conn, pages: int = 3) -> None:
    """The same pages, the books of each page in one statement."""
    for page in range(pages):
        ids = [a for (a,) in conn.execute(PAGE_IDS, (page * 20,)).fetchall()]
        conn.execute(BATCHED, (ids,)).fetchall()


def run_function_loop(conn, calls: int = 3) -> None:
    for _ in range(calls):
        conn.execute("SELECT titles_of_first_authors(20)").fetchone()
