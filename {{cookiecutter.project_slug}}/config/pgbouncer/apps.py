from django.apps import AppConfig


class PgBouncerConfig(AppConfig):
    """Transaction-pooling rules, their system checks and the session-bound commands."""

    name = "config.pgbouncer"
    label = "pgbouncer"

    def ready(self):
        from config.pgbouncer import checks  # noqa: F401  (registers the system checks)
