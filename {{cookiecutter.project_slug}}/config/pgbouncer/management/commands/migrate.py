"""``migrate`` on the primary itself unless told otherwise.

A migration may run ``CREATE INDEX CONCURRENTLY`` (refused inside a transaction block),
``SET`` a ``lock_timeout`` for the rest of the run, or hold locks across statements: each
needs a session, which PgBouncer in transaction pooling mode does not give.
"""

from django.core.management.commands import migrate

from config.aliases import DIRECT


class Command(migrate.Command):
    help = f"{migrate.Command.help} Runs on the {DIRECT!r} database by default."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        # set_defaults also reaches call_command("migrate"), which fills in parser defaults.
        parser.set_defaults(database=DIRECT)
