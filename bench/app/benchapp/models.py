from django.db import models


class Item(models.Model):
    """A small row looked up by primary key."""

    name = models.CharField(max_length=40)
    value = models.IntegerField()
