"""``migrate`` on ``direct`` (``DATABASE_DIRECT_URL``) unless told otherwise.

``direct`` is the schema's owner on the primary itself; the application's role cannot change
the schema. A migration may also run ``CREATE INDEX CONCURRENTLY`` (refused inside a
transaction block), ``SET`` a ``lock_timeout`` for the rest of the run, or hold locks across
statements: each needs a session of its own, which a pooler in transaction mode does not give.
"""

from django.core.management.commands import migrate

from config.aliases import DIRECT


class Command(migrate.Command):
    help = f"{migrate.Command.help} Runs on the {DIRECT!r} database by default."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        # set_defaults also reaches call_command("migrate"), which fills in parser defaults.
        parser.set_defaults(database=DIRECT)
