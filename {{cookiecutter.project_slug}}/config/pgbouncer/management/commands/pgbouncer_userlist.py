"""Write PgBouncer's ``userlist.txt`` from the environment; no password lives in the repo.

The secret is computed for the user and password of ``DATABASE_URL``, which is what the
application presents to PgBouncer. PgBouncer then logs in to PostgreSQL with the keys the
client proved, which works only when PostgreSQL stores the very same secret (same salt,
not merely the same password): ``--set-role-password`` stores it on the role through
``direct``. The password does not change, and a role may always set its own.
"""

import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connections
from psycopg import sql

from config.aliases import DEFAULT, DIRECT
from config.pgbouncer.userlist import scram_secret, userlist_line


class Command(BaseCommand):
    help = (
        "Print PgBouncer's userlist.txt line for the DATABASE_URL role, with a fresh "
        "SCRAM-SHA-256 secret."
    )
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--output",
            help="Write the file here (created readable by its owner only) instead of stdout.",
        )
        parser.add_argument(
            "--set-role-password",
            action="store_true",
            help="Also store the same secret as the role's password on PostgreSQL, through "
            f"the {DIRECT!r} database, so PgBouncer can log in with it.",
        )

    def handle(self, *args, output=None, set_role_password=False, **options):
        settings_dict = settings.DATABASES[DEFAULT]
        user, password = settings_dict.get("USER"), settings_dict.get("PASSWORD")
        if not user or not password:
            raise CommandError(
                "DATABASE_URL names no user and password: PgBouncer's SCRAM authentication "
                "needs both, e.g. postgres://USER:PASSWORD@HOST:6432/NAME."
            )
        connection = connections[DIRECT]
        try:
            connection.ensure_connection()
        except DatabaseError as error:
            raise CommandError(
                f"Cannot reach the primary through DATABASE_DIRECT_URL: {error}"
            ) from None
        secret = scram_secret(connection.connection.pgconn, user, password)
        if set_role_password:
            self.set_role_password(connection, user, secret)
        else:
            self.stderr.write(
                "PgBouncer can log in to PostgreSQL with this secret only once the role "
                "stores it too: run again with --set-role-password, or ALTER ROLE ... "
                "PASSWORD '<the secret>' yourself."
            )
        line = userlist_line(user, secret) + "\n"
        if output is None:
            self.stdout.write(line, ending="")
        else:
            # The secret is as good as a password for logging in through PgBouncer.
            descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as file:
                file.write(line)

    def set_role_password(self, connection, user, secret):
        # ALTER ROLE takes no bind parameters: quote both parts with psycopg instead.
        statement = sql.SQL("ALTER ROLE {} PASSWORD {}").format(
            sql.Identifier(user), sql.Literal(secret)
        )
        with connection.cursor() as cursor:
            cursor.execute(statement.as_string(connection.connection))
        self.stderr.write(f"Stored the new secret as the password of role {user!r}.")
