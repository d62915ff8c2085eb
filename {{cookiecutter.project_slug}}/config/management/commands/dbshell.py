"""``dbshell`` on ``direct`` (``DATABASE_DIRECT_URL``) unless told otherwise.

A shell is for the schema's owner, on the primary itself. Through a pooler in transaction
mode, a ``SET`` typed in psql would also stay on the server connection and leak into
whichever application transaction uses it next.
"""

from django.core.management.commands import dbshell

from config.aliases import DIRECT


class Command(dbshell.Command):
    help = f"{dbshell.Command.help} Runs on the {DIRECT!r} database by default."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.set_defaults(database=DIRECT)
