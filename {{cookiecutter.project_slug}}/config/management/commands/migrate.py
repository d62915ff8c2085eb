"""``migrate`` on ``direct`` (``DATABASE_DIRECT_URL``), waiting briefly for its locks.

``direct`` is the schema's owner on the primary itself; the application's role cannot change
the schema. A migration may also run ``CREATE INDEX CONCURRENTLY`` (refused inside a
transaction block) or ``SET`` a parameter for the rest of the run: each needs a session of its
own, which a pooler in transaction mode does not give.

``ALTER TABLE`` waits for its lock behind any transaction that touched the table, and every
query on that table then queues behind the ``ALTER``. PostgreSQL's ``lock_timeout`` ends that
wait; Django sets none and never retries, so this command sets it on its session and runs an
atomic migration again, after a pause, when its lock wait timed out (docs/migrations.md).
"""

import contextlib
import itertools
import time

from django.conf import settings
from django.core.management.base import CommandError
from django.core.management.commands import migrate
from django.db import DatabaseError, OperationalError, connections

from config.aliases import DIRECT

LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for a lock wait that timed out
LONGEST_PAUSE = 60.0  # seconds between two tries, at most

# Sessions of this database in a transaction that holds a lock and is older than the lock
# timeout: what a schema change waits behind. Named when a migration gives up.
LONG_TRANSACTIONS = """
SELECT pid, usename, application_name, state, now() - xact_start, left(query, 200)
FROM pg_stat_activity AS activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND xact_start < now() - make_interval(secs => %s)
  AND EXISTS (SELECT FROM pg_locks WHERE pg_locks.pid = activity.pid AND granted)
ORDER BY xact_start
"""


class Command(migrate.Command):
    help = (
        f"{migrate.Command.help} Runs on the {DIRECT!r} database by default, waiting at most "
        "DATABASE_MIGRATION_LOCK_TIMEOUT seconds for a lock before it tries again."
    )

    def add_arguments(self, parser):
        super().add_arguments(parser)
        # set_defaults also reaches call_command("migrate"), which fills in parser defaults.
        parser.set_defaults(database=DIRECT)

    def handle(self, *args, **options):
        connection = connections[options["database"]]
        # Inside a caller's transaction a migration cannot run again: it runs as Django's does.
        if not settings.MIGRATION_LOCK_TIMEOUT or connection.in_atomic_block:
            return super().handle(*args, **options)
        lock_timeout = f"SET lock_timeout = {round(settings.MIGRATION_LOCK_TIMEOUT * 1000)}"
        try:
            return self.handle_with_retries(connection, lock_timeout, *args, **options)
        finally:
            with contextlib.suppress(DatabaseError), connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")

    def handle_with_retries(self, connection, lock_timeout, *args, **options):
        timeout, retries = settings.MIGRATION_LOCK_TIMEOUT, settings.MIGRATION_LOCK_RETRIES
        for attempt in itertools.count():
            self.migrating = None  # the migration being applied or unapplied, if any
            try:
                with connection.cursor() as cursor:
                    cursor.execute(lock_timeout)
                with connection.execute_wrapper(WaitForConcurrently(lock_timeout)):
                    return super().handle(*args, **options)
            except OperationalError as error:
                if getattr(error.__cause__, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                    raise
                if attempt == retries or not getattr(self.migrating, "atomic", True):
                    raise CommandError(self.gave_up(connection, timeout, attempt)) from error
                pause = min(timeout * 2**attempt, LONGEST_PAUSE)
                self.stderr.write(
                    f"Lock wait timed out after {timeout:g}s{self.where()}; nothing was applied."
                    f" Retry {attempt + 1} of {retries} in {pause:g}s."
                )
                time.sleep(pause)

    def migration_progress_callback(self, action, migration=None, fake=False):
        # Django's executor reports each migration it starts and ends here.
        if action in ("apply_start", "unapply_start"):
            self.migrating = migration
        elif action in ("apply_success", "unapply_success"):
            self.migrating = None
        super().migration_progress_callback(action, migration, fake)

    def where(self):
        return f" in {self.migrating}" if self.migrating else ""

    def gave_up(self, connection, timeout, attempt):
        if getattr(self.migrating, "atomic", True):
            outcome = f"Gave up after {attempt + 1} tries; nothing of it was applied."
        else:
            outcome = (
                "It is not atomic: what ran before the wait stays applied, so it is not run "
                "again. Check it against `manage.py sqlmigrate`, and make it safe to run twice."
            )
        with connection.cursor() as cursor:
            cursor.execute(LONG_TRANSACTIONS, [timeout])
            sessions = [
                f"  pid {pid}, user {user}, application_name {name!r}, {state}, transaction "
                f"open for {age.total_seconds():.1f}s: {' '.join((query or '').split())}"
                for pid, user, name, state, age, query in cursor.fetchall()
            ]
        blockers = "\n".join(sessions) or "  none now (the blocking transaction has ended)"
        return (
            f"Lock wait timed out after {timeout:g}s{self.where()} "
            f"(DATABASE_MIGRATION_LOCK_TIMEOUT). {outcome}\n"
            f"Transactions holding locks for longer than that:\n{blockers}\n"
            "End one with SELECT pg_terminate_backend(pid), or wait for it, and migrate again."
        )


class WaitForConcurrently:
    """An execute wrapper that lifts the lock timeout around ``... CONCURRENTLY``.

    ``CREATE INDEX CONCURRENTLY`` waits for older transactions without blocking reads or
    writes; cut by ``lock_timeout`` it leaves an invalid index behind.
    """

    def __init__(self, lock_timeout):
        self.lock_timeout = lock_timeout

    def __call__(self, execute, sql, params, many, context):
        if "CONCURRENTLY" not in str(sql).upper():
            return execute(sql, params, many, context)
        cursor = context["cursor"]
        cursor.execute("SET lock_timeout = 0")
        try:
            return execute(sql, params, many, context)
        finally:
            cursor.execute(self.lock_timeout)
