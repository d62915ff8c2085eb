"""``migrate`` that runs on the primary itself unless told otherwise.

Migrations need a session of their own: Django takes no advisory lock, but a migration
may run ``CREATE INDEX CONCURRENTLY`` (which refuses to run in a transaction block),
``SET`` a ``lock_timeout`` for the rest of the run, or hold locks across statements.
Through PgBouncer in transaction pooling mode each of those can land on another server
connection, so ``migrate`` defaults to the ``direct`` alias (``DATABASE_DIRECT_URL``).
Code of your own that needs a session should use ``connections["direct"]`` too.
"""

from django.core.management.commands import migrate

from config.pgbouncer import DIRECT_ALIAS


class Command(migrate.Command):
    help = f"{migrate.Command.help} Runs on the {DIRECT_ALIAS!r} database by default."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        # set_defaults also reaches call_command("migrate"), which fills in parser defaults.
        parser.set_defaults(database=DIRECT_ALIAS)
