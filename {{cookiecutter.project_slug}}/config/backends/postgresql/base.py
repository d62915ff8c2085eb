"""``DatabaseWrapper`` for ``ENGINE = "config.backends.postgresql"``: Django's, with two changes.

**Every wait on an open connection is bounded.** ``QUERY_TIMEOUT`` in a ``DATABASES`` entry is
the longest any wait for the server may last once connected: a query, a fetch from a
server-side cursor, ``COMMIT``, ``ROLLBACK``, the set-up queries of a new connection (``None``
or ``0``: no limit). Past it the connection is closed and the call raises ``OperationalError``;
the next request connects afresh. PostgreSQL's ``statement_timeout`` ends a statement the
server is running, and libpq's ``connect_timeout`` a connection attempt, but nothing below the
application ends a wait on a server that accepted and then hangs (a stopped process, a stalled
disk): its kernel acknowledges every packet. psycopg bounds a wait only when its caller passes
a timeout, and Django never does, so :class:`BoundedConnection` supplies one. A ``COMMIT`` that
fails so inside ``atomic()`` fails within that bound: no reconnect follows it just to restore
autocommit (:meth:`DatabaseWrapper.set_autocommit`).

**The health check costs no round trip.** With ``CONN_HEALTH_CHECKS``, Django asks
:meth:`DatabaseWrapper.is_usable` once per request, before its first statement, and replaces a
connection that is not. A server that ended the session (a restart, ``pg_terminate_backend()``,
an idle timeout, a pooler restart) leaves its goodbye on the socket, so a quiet socket answers
without the ``SELECT 1`` Django's check sends. A connection whose server refused a write as
read-only is not usable either: after a failover, a connection through a pooler outlives the
demoted primary behind it, and only a new connection lets libpq's ``target_session_attrs`` find
the new one. A statement that was sent is never sent again, whatever happened to it.
"""

import select

import psycopg
from django.db import utils
from django.db.backends.postgresql import base
from django.utils.functional import cached_property
from psycopg.pq import TransactionStatus

# The states in which a connection can take a statement; libpq reports others (ACTIVE,
# INERROR, UNKNOWN) while one runs, after an error, or on a broken connection.
READY = (TransactionStatus.IDLE, TransactionStatus.INTRANS)


class BoundedConnection(psycopg.Connection):
    """A psycopg connection on which no wait for the server outlasts ``timeout`` seconds.

    Every operation of a psycopg connection waits through :meth:`wait`, which bounds a wait
    only when its caller passes a timeout; a caller's own timeout (``notifies(timeout=...)``)
    is passed on untouched. Otherwise, past ``timeout`` with a statement still in flight, the
    connection is closed without a cancel request (a hung server would not answer it, and
    some connection poolers crash on one), and the operation raises ``OperationalError``.
    """

    timeout: float | None = None

    def wait(self, gen, interval=0.1, timeout=None):
        if timeout is not None or not self.timeout:
            return super().wait(gen, interval, timeout)
        try:
            return super().wait(gen, interval, self.timeout)
        except psycopg.OperationalError:
            # The server's own errors and a broken link leave no statement in flight.
            if self.pgconn.transaction_status != TransactionStatus.ACTIVE:
                raise
        self.close()
        raise psycopg.OperationalError(
            f"the server did not answer within {self.timeout:g}s; the connection was closed"
        )

    def notifies(self, *, timeout=None, stop_after=None):
        """psycopg's: how long to wait for notifications is the caller's ``timeout`` alone."""
        bound, self.timeout = self.timeout, None  # psycopg holds the connection's lock meanwhile
        try:
            yield from super().notifies(timeout=timeout, stop_after=stop_after)
        finally:
            self.timeout = bound


class DatabaseErrorWrapper(utils.DatabaseErrorWrapper):
    """Django's, noting on the connection a write refused by a read-only server."""

    def __exit__(self, exc_type, exc_value, traceback):
        if exc_type is not None and issubclass(exc_type, psycopg.errors.ReadOnlySqlTransaction):
            self.wrapper.refused_as_read_only = True  # type: ignore[attr-defined]  # not in stubs
        return super().__exit__(exc_type, exc_value, traceback)


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.query_timeout = self.settings_dict.get("QUERY_TIMEOUT") or None
        self.refused_as_read_only = False

    @cached_property
    def wrap_database_errors(self):
        return DatabaseErrorWrapper(self)

    def _configure_connection(self, connection):
        # Django's hook for every new connection, pooled or not, before its first query.
        # psycopg.connect(), which Django calls, takes no connection class, and Django's pool
        # takes one only through OPTIONS, which settings cannot fill without importing this
        # module: the new connection becomes a bounded one here, for both.
        connection.__class__ = BoundedConnection
        connection.timeout = self.query_timeout
        return super()._configure_connection(connection)  # type: ignore[misc]  # not in stubs

    def set_autocommit(self, autocommit, *args, **kwargs):
        # After a failed COMMIT, atomic() drops the connection and then reconnects only to
        # turn autocommit back on, which a new connection has anyway: against a server that
        # hangs, that would add a connect_timeout to the COMMIT's own bound.
        if self.connection is None and autocommit == self.settings_dict["AUTOCOMMIT"]:
            self.validate_no_atomic_block()
            self.autocommit = autocommit
            return
        super().set_autocommit(autocommit, *args, **kwargs)

    def _close(self):
        if self.refused_as_read_only and self.connection is not None:
            self.connection.close()  # so that a pool discards it rather than hand it out again
        self.refused_as_read_only = False  # the next connection has not been refused
        return super()._close()  # type: ignore[misc]  # not in stubs

    def is_usable(self):
        """Return True when the connection works, as Django's ``is_usable()`` does.

        Django's sends ``SELECT 1``. A quiet socket on a connection ready for a statement
        (idle, or in a transaction) answers True without it: a server that ended the session
        leaves an error message or end-of-file to read. When the socket holds something
        (that goodbye, or a notification, a parameter change), Django's ``SELECT 1`` decides,
        so the session and what it holds (``LISTEN``, ``SET``, temporary tables) are kept.
        A quiet socket proves nothing about a silent network: ``QUERY_TIMEOUT`` covers that.
        """
        if self.connection is None or self.refused_as_read_only:
            return False
        pgconn = self.connection.pgconn
        if pgconn.transaction_status in READY:
            poller = select.poll()  # select.select() fails on descriptors past 1023
            poller.register(pgconn.socket, select.POLLIN)
            if not poller.poll(0):
                return True
        return super().is_usable()
