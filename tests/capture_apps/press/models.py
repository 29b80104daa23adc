"""Every relation kind Django has, for the lazy-load cases of tests/capture_apps/press_app.py."""

from django.contrib.contenttypes.fields import GenericForeignKey, GenericRelation
from django.contrib.contenttypes.models import ContentType
from django.db import models


class Author(models.Model):
    name = models.TextField()

    class Meta:
        app_label = "press"


class Profile(models.Model):  # one-to-one, both ways
    author = models.OneToOneField(Author, related_name="profile", on_delete=models.CASCADE)
    bio = models.TextField()

    class Meta:
        app_label = "press"


class Tag(models.Model):
    label = models.TextField()

    class Meta:
        app_label = "press"


class Comment(models.Model):  # a generic foreign key
    text = models.TextField()
    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE)
    object_id = models.PositiveIntegerField()
    content_object = GenericForeignKey("content_type", "object_id")

    class Meta:
        app_label = "press"


class Book(models.Model):
    title = models.TextField()
    summary = models.TextField(default="")
    published = models.BooleanField(default=True)
    author = models.ForeignKey(Author, related_name="books", on_delete=models.CASCADE)
    tags = models.ManyToManyField(Tag, related_name="books")
    comments = GenericRelation(Comment)

    class Meta:
        app_label = "press"


class Person(models.Model):  # several relations to itself
    name = models.TextField()
    parent = models.ForeignKey("self", null=True, related_name="children", on_delete=models.CASCADE)
    friends = models.ManyToManyField("self")
    followers = models.ManyToManyField("self", symmetrical=False, related_name="following")

    class Meta:
        app_label = "press"
