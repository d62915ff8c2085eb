from django.apps import AppConfig

from config import budget
from config.aliases import DEFAULT


class PgBouncerConfig(AppConfig):
    """Transaction-pooling rules, their system checks and the session-bound commands."""

    name = "config.pgbouncer"
    label = "pgbouncer"

    def ready(self):
        from config.pgbouncer import checks  # noqa: F401  (registers the system checks)
        from config.pgbouncer.budget import pooler

        # default's connections end at PgBouncer, whose pool bounds what reaches the server.
        budget.poolers[DEFAULT] = pooler
