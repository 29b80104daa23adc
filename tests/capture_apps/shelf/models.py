from django.db import models


class Author(models.Model):
    name = models.TextField()

    class Meta:
        app_label = "shelf"


class Tag(models.Model):
    label = models.TextField()

    class Meta:
        app_label = "shelf"


class Book(models.Model):
    title = models.TextField()
    author = models.ForeignKey(Author, related_name="books", on_delete=models.CASCADE)
    tags = models.ManyToManyField(Tag, related_name="books")

    class Meta:
        app_label = "shelf"
