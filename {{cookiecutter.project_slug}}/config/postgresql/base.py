"""``DatabaseWrapper`` for ``ENGINE = "config.postgresql"``: Django's, with bounded waits
and a health check that costs no round trip.

Each entry of ``DATABASES`` gives:

``QUERY_TIMEOUT``
    The longest a query, or a fetch from a server-side cursor (``.iterator()``), may wait
    for the server on an open connection (``None`` or ``0``: no limit). Past it the
    connection is closed and the query fails with ``OperationalError``; Django opens a new
    connection for the next one.
``HEALTH_CHECK``
    How ``CONN_HEALTH_CHECKS`` tests a reused connection: ``"socket"`` (the default) looks
    at the socket without a round trip; ``"query"`` is Django's own ``SELECT 1``.

A ``SELECT`` outside a transaction that finds its connection ended by the server (a
restart, ``pg_terminate_backend``, a pooler restart, between the health check and the
query) runs once more on a new connection: a read is safe to repeat. Nothing else is
repeated, and nothing that timed out.

Connecting is bounded by libpq's ``connect_timeout``, and a ``SELECT 1`` health check by
the same number of seconds: a server that cannot answer that fast is as good as down.
"""

import select

import psycopg
from django.db import DatabaseError, OperationalError
from django.db.backends.postgresql import base
from psycopg.pq import TransactionStatus

from config.postgresql.deadlines import watchdog


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.query_timeout = self.settings_dict.get("QUERY_TIMEOUT") or None
        self.health_check = self.settings_dict.get("HEALTH_CHECK", "socket")
        self.health_check_timeout = self.settings_dict["OPTIONS"].get("connect_timeout")
        self.execute_wrappers.append(self._execute)

    def create_cursor(self, name=None):
        cursor = super().create_cursor(name)
        if name and self.query_timeout:
            return BoundedFetches(cursor, self.bounded)
        return cursor

    def _execute(self, execute, sql, params, many, context):
        try:
            return self.bounded(execute, sql, params, many, context)
        except DatabaseError as error:
            if not self.may_repeat(sql, many, context, error):
                raise
        self.close()
        self.ensure_connection()
        context["cursor"].cursor = self.create_cursor()
        return self.bounded(execute, sql, params, many, context)

    def bounded(self, call, *args):
        """Return ``call(*args)``, a wait on the server cut after ``QUERY_TIMEOUT``."""
        if not self.query_timeout or self.connection.broken:  # a broken one fails at once
            return call(*args)
        wait = watchdog.start(self.connection.pgconn.socket, self.query_timeout)
        try:
            return call(*args)
        except (DatabaseError, psycopg.Error):  # a fetch raises psycopg's own errors
            if wait.expired:
                raise QueryTimeout(
                    f"Database {self.alias!r} did not answer within {self.query_timeout:g}s; "
                    "its connection was closed."
                ) from None
            raise
        finally:
            watchdog.stop(wait)

    def may_repeat(self, sql, many, context, error):
        """Return True when a failed query is a read whose session the server ended."""
        return (
            not isinstance(error, QueryTimeout)
            and self.connection is not None
            and self.connection.broken
            and self.get_autocommit()
            and not self.in_atomic_block
            and not many
            and not isinstance(context["cursor"].cursor, (psycopg.ServerCursor, BoundedFetches))
            and sql.lstrip()[:6].upper() == "SELECT"
        )

    def is_usable(self):
        if self.connection is None or self.connection.broken:
            return False
        if self.health_check == "socket" and self.idle_and_silent():
            return True
        if not self.health_check_timeout:
            return super().is_usable()
        wait = watchdog.start(self.connection.pgconn.socket, float(self.health_check_timeout))
        try:
            return super().is_usable()  # False, not an error, once the watchdog cuts it
        finally:
            watchdog.stop(wait)

    def idle_and_silent(self):
        """Return True when the connection is idle and the server has sent nothing since.

        A server that ended the session (restart, ``pg_terminate_backend``, an idle
        timeout, a pooler restart) leaves an error message or end-of-file to read. A quiet
        socket proves nothing about a silent network, which the query bound covers.
        """
        if self.connection.pgconn.transaction_status != TransactionStatus.IDLE:
            return False
        readable, _, _ = select.select([self.connection.pgconn.socket], [], [], 0)
        return not readable


class BoundedFetches:
    """A server-side cursor whose fetches, each a wait on the server, are bounded too."""

    def __init__(self, cursor, bounded):
        self._cursor = cursor
        self._bounded = bounded

    def __getattr__(self, name):
        return getattr(self._cursor, name)

    def __iter__(self):
        while rows := self.fetchmany(self._cursor.itersize):
            yield from rows

    def fetchone(self):
        return self._bounded(self._cursor.fetchone)

    def fetchmany(self, size=0):
        return self._bounded(self._cursor.fetchmany, size)

    def fetchall(self):
        return self._bounded(self._cursor.fetchall)


class QueryTimeout(OperationalError):
    """A server did not answer on an open connection within its bound."""
