from django.apps import AppConfig


class UsersConfig(AppConfig):
    """The project's user model, ``users.User`` (``AUTH_USER_MODEL``)."""

    name = "users"
