"""A Django application in one file, run as a script by tests/test_capture_frameworks.py:
APP_DSN names its database, APP_DRIVER=psycopg2 hides psycopg 3 so that Django takes
psycopg2. It prints what queryaudit.capture found, as JSON."""

import json
import os
import sys
from urllib.parse import urlparse

if os.environ.get("APP_DRIVER") == "psycopg2":
    sys.modules["psycopg"] = None  # Django's backend then falls back to psycopg2

import django
from django.conf import settings

dsn = urlparse(os.environ["APP_DSN"])
settings.configure(
    INSTALLED_APPS=["shelf"],
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
    MIDDLEWARE=["queryaudit.capture.django.QueryAuditMiddleware"],
    QUERYAUDIT_ON_N_PLUS_ONE=f"{__name__}.on_n_plus_one",
    ALLOWED_HOSTS=["testserver"],
    DEFAULT_AUTO_FIELD="django.db.models.AutoField",
)
django.setup()

from django.db import connection  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import path  # noqa: E402
from shelf.models import Author, Book, Tag  # noqa: E402

from queryaudit.capture import capture  # noqa: E402

requests_seen = []


def on_n_plus_one(request_path, loops):
    requests_seen.append({"path": request_path, "call_sites": [loop.call_site for loop in loops]})


def book_list(request):
    return HttpResponse(", ".join(f"{b.title} by {b.author.name}" for b in Book.objects.all()))  # view loop


urlpatterns = [path("books", book_list)]


def found(cap):
    return [
        {
            "call_site": loop.call_site,
            "executions": loop.executions,
            "hint": loop.orm_hint,
            "source": loop.source,
            "stack": loop.stack[:3],
            "batched": loop.batched_query,
        }
        for loop in cap.n_plus_one()
    ]


with connection.schema_editor() as editor:
    for model in (Author, Tag, Book):
        editor.create_model(model)
tags = [Tag.objects.create(label=f"t{i}") for i in range(3)]
for a in range(8):
    author = Author.objects.create(name=f"author {a}")
    for b in range(3):
        Book.objects.create(title=f"book {a}.{b}", author=author).tags.set(tags[:2])

out = {}
with capture() as cap:
    titles = [(b.title, b.author.name) for b in Book.objects.all()]  # forward loop
out["forward"] = found(cap)
with capture() as cap:
    titles = [(b.title, b.author.name) for b in Book.objects.select_related("author")]
out["forward_fixed"] = found(cap)
with capture() as cap:
    counts = [len(a.books.all()) for a in Author.objects.all()]  # reverse loop
out["reverse"] = found(cap)
with capture() as cap:
    counts = [len(a.books.all()) for a in Author.objects.prefetch_related("books")]
out["reverse_fixed"] = found(cap)
with capture() as cap:
    labels = [[t.label for t in b.tags.all()] for b in Book.objects.all()]  # many-to-many loop
out["many_to_many"] = found(cap)
with capture() as cap:
    statements = len(cap.statements)
Client().get("/books")
out["middleware"] = requests_seen
out["driver"] = type(connection.connection).__module__
print(json.dumps(out))
