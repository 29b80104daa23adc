"""Lazy-load cases of every Django relation kind at 2 rows each, run as a script by
tests/test_capture_frameworks.py (on the installed Django and on 4.2, put first on
PYTHONPATH). APP_DSN names an empty database. Each case runs in its own capture; the
script prints what queryaudit.capture found per case, as JSON. The line of each lazy
load carries a `# loop: <case>` or `# silent: <case>` comment the test looks up."""

import json
import os
import sys
from urllib.parse import urlparse

import django
from django.conf import settings

dsn = urlparse(os.environ["APP_DSN"])
settings.configure(
    INSTALLED_APPS=["django.contrib.contenttypes", "press"],
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": dsn.path.lstrip("/"),
            "USER": dsn.username,
            "HOST": dsn.hostname,
            "PORT": dsn.port,
        }
    },
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["testserver"],
    DEFAULT_AUTO_FIELD="django.db.models.AutoField",
)
django.setup()

from django.contrib.contenttypes.models import ContentType  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import prefetch_related_objects  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import path  # noqa: E402
from press.models import Author, Book, Comment, Person, Profile, Tag  # noqa: E402

from queryaudit.capture import allow_n_plus_one, capture, query_budget  # noqa: E402


def one_book_of_the_list(request, n):  # each request reads the author of one row of a 2-row list
    books = list(Book.objects.order_by("id"))
    return HttpResponse(books[n].author.name)  # silent: per-request


def every_book(request):
    return HttpResponse(", ".join(b.author.name for b in Book.objects.all()))  # loop: in-request


urlpatterns = [path("book/<int:n>", one_book_of_the_list), path("books", every_book)]

CASES = {}


def case(function):
    CASES[function.__name__] = function
    return function


@case
def forward():
    return [b.author.name for b in Book.objects.all()]  # loop: forward


@case
def forward_fixed():
    return [b.author.name for b in Book.objects.select_related("author")]


@case
def reverse():
    return [len(a.books.all()) for a in Author.objects.all()]  # loop: reverse


@case
def reverse_fixed():
    return [len(a.books.all()) for a in Author.objects.prefetch_related("books")]


@case
def many_to_many():
    return [[t.label for t in b.tags.all()] for b in Book.objects.all()]  # loop: many_to_many


@case
def many_to_many_reverse():
    return [[b.title for b in t.books.all()] for t in Tag.objects.all()]  # loop: many_to_many_reverse


@case
def one_to_one_reverse():
    return [a.profile.bio for a in Author.objects.all()]  # loop: one_to_one_reverse


@case
def one_to_one_forward():
    return [p.author.name for p in Profile.objects.all()]  # loop: one_to_one_forward


@case
def chain():
    return [b.author.profile.bio for b in Book.objects.all()]  # loop: chain


@case
def chain_after_select_related():
    return [b.author.profile.bio for b in Book.objects.select_related("author")]  # loop: chain_after_select_related


@case
def chain_fixed():
    return [b.author.profile.bio for b in Book.objects.select_related("author__profile")]


@case
def prefetch_chain():  # the books are prefetched, their tags are not
    authors = Author.objects.prefetch_related("books")
    return [[t.label for t in b.tags.all()] for a in authors for b in a.books.all()]  # loop: prefetch_chain


@case
def filtered_set():
    return [len(a.books.filter(published=True)) for a in Author.objects.all()]  # loop: filtered_set


@case
def self_parent():
    return [p.parent.name for p in Person.objects.filter(parent__isnull=False)]  # loop: self_parent


@case
def self_followers():
    return [len(p.followers.all()) for p in Person.objects.filter(parent__isnull=False)]  # loop: self_followers


@case
def self_following():
    return [len(p.following.all()) for p in Person.objects.filter(parent__isnull=False)]  # loop: self_following


@case
def self_friends():
    return [len(p.friends.all()) for p in Person.objects.filter(parent__isnull=False)]  # loop: self_friends


@case
def generic_foreign_key():
    return [c.content_object.title for c in Comment.objects.all()]  # loop: generic_foreign_key


@case
def generic_relation():
    return [len(b.comments.all()) for b in Book.objects.all()]  # loop: generic_relation


@case
def deferred_only():
    return [b.summary for b in Book.objects.only("title")]  # loop: deferred_only


@case
def deferred_defer():
    return [b.summary for b in Book.objects.defer("summary", "published")]  # loop: deferred_defer


@case
def prefetch_per_row():
    for a in Author.objects.all():
        prefetch_related_objects([a], "books")  # loop: prefetch_per_row


@case
def first():
    return [Book.objects.order_by("id").first().author.name for _ in range(2)]  # silent: first


@case
def index():
    return [Book.objects.order_by("id")[n].author.name for n in range(2)]  # silent: index


@case
def get():
    return [Book.objects.get(pk=pk).author.name for pk in Book.objects.values_list("pk", flat=True)]  # silent: get


@case
def different_lines():
    books = list(Book.objects.order_by("id"))
    first = books[0].author.name  # silent: different_lines
    second = books[1].author.name  # silent: different_lines (second line)
    return first, second


@case
def allowed():
    with allow_n_plus_one("Book.author"):
        return [b.author.name for b in Book.objects.all()]  # silent: allowed


def author_of(book):
    return book.author.name  # loop: helper_twice (and silent: budget_units, one load per unit)


@case
def helper_twice():
    return [author_of(book) for book in Book.objects.order_by("id")]


@case
def budget_units():  # a query_budget() block is a unit of its own: its load and the next one are no loop
    books = list(Book.objects.order_by("id"))
    with query_budget(5):
        author_of(books[0])
    return author_of(books[1])


@case
def requests():
    client = Client()
    return [client.get(f"/book/{n}").status_code for n in range(2)] + [client.get("/books").status_code]


@case
def unused_select_related():
    return [b.title for b in Book.objects.select_related("author")]


@case
def unused_prefetch():
    return [a.name for a in Author.objects.prefetch_related("books")]


def load():
    with connection.schema_editor() as editor:
        for model in (ContentType, Author, Profile, Tag, Book, Comment, Person):
            editor.create_model(model)
    tags = [Tag.objects.create(label=f"t{i}") for i in range(2)]
    for n in range(2):  # 2 rows of everything
        author = Author.objects.create(name=f"author {n}")
        Profile.objects.create(author=author, bio=f"bio {n}")
        book = Book.objects.create(title=f"book {n}", summary=f"summary {n}", author=author)
        book.tags.set(tags)
        Comment.objects.create(text=f"comment {n}", content_object=book)
    parents = [Person.objects.create(name=f"parent {n}") for n in range(2)]
    children = [Person.objects.create(name=f"child {n}", parent=parents[n]) for n in range(2)]
    for n, child in enumerate(children):  # the children are the 2 rows of the self-referential cases
        child.followers.set([parents[n]])
    children[0].friends.set([children[1]])


if __name__ == "__main__":
    load()
    out = {"django": django.get_version()}
    for name, function in CASES.items():
        if len(sys.argv) > 1 and name not in sys.argv[1:]:
            continue
        with capture(name) as cap:
            function()
        out[name] = {
            "loops": [
                {
                    "call_site": loop.call_site,
                    "executions": loop.executions,
                    "hint": loop.orm_hint,
                    "relation": loop.relation,
                    "source": loop.source,
                }
                for loop in cap.n_plus_one()
            ],
            "unused": cap.unused_eager_loads(),
            "statements": len(cap.statements),
        }
    print(json.dumps(out))
