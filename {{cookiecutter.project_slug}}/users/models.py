"""The user model.

Django cannot swap the user model once the first migration has run, so the project
starts with its own: add fields here rather than in a profile table.
"""

from django.contrib.auth.models import AbstractUser


class User(AbstractUser):
    """A user of the site; Django's standard fields for now."""
