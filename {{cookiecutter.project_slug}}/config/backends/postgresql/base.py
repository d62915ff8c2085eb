"""``DatabaseWrapper`` for ``ENGINE = "config.backends.postgresql"``: Django's, with two changes.

**Every wait on an open connection is bounded.** ``QUERY_TIMEOUT`` in a ``DATABASES`` entry is
the longest any wait for the server may last once connected: a query, a fetch from a
server-side cursor, ``COMMIT``, ``ROLLBACK``, the set-up queries of a new connection (``None``
or ``0``: no limit). Past it the connection is closed and the call raises ``OperationalError``;
the next request connects afresh. PostgreSQL's ``statement_timeout`` ends a statement the
server is running, and libpq's ``connect_timeout`` a connection attempt, but nothing below the
application ends a wait on a server that accepted and then hangs (a stopped process, a stalled
disk): its kernel acknowledges every packet. psycopg can bound a wait, but Django never asks it
to, so :class:`BoundedConnection` does on every wait of the connection. A ``COMMIT`` that fails
so inside ``atomic()`` fails within that bound: no reconnect follows it just to restore
autocommit (:meth:`DatabaseWrapper.set_autocommit`).

**A connection the server has ended is replaced before a statement is sent into it.** A
restart, ``pg_terminate_backend()``, an idle timeout or a pooler restart leaves the server's
goodbye (an error message, end of file) on the idle socket. Django's health check is a
``SELECT 1`` round trip, once per request; :meth:`DatabaseWrapper.is_usable` looks at the socket
instead, at no round trip, so it runs before every cursor outside a transaction. Nothing is
ever sent twice: a statement that was sent is never repeated, whatever happened to it. A
connection that was refused a write because its server is read-only is replaced too: after a
failover, a connection through a pooler outlives the demoted primary behind it, and only a
new connection lets libpq's ``target_session_attrs`` find the new one.
"""

import select

import psycopg
from django.db import utils
from django.db.backends.postgresql import base
from django.utils.functional import cached_property
from psycopg.errors import _WaitTimeout  # what Connection.wait() raises once its timeout passes
from psycopg.pq import TransactionStatus


class BoundedConnection(psycopg.Connection):
    """A psycopg connection on which no wait for the server outlasts ``timeout`` seconds.

    Every operation of a psycopg connection waits through :meth:`wait`. Past ``timeout`` the
    connection is closed, without a cancel request (a hung server would not answer it, and
    some connection poolers crash on one), and the operation raises ``OperationalError``.
    """

    timeout: float | None = None

    def wait(self, gen, interval=0.1, timeout=None):
        try:
            return super().wait(gen, interval, timeout or self.timeout)
        except _WaitTimeout:
            self.close()
            raise psycopg.OperationalError(
                f"the server did not answer within {timeout or self.timeout:g}s; "
                "the connection was closed"
            ) from None


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
        # Django makes connections with psycopg.connect() or psycopg's pool, neither of which
        # it lets us give a connection class: the new connection becomes a bounded one here.
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

    def close_if_health_check_failed(self):
        """Close the connection if the server has ended it since its last statement.

        With ``CONN_HEALTH_CHECKS``, Django checks once per request; this check costs no round
        trip, so it runs before every cursor, outside transactions (which must fail rather
        than move to a new connection halfway).
        """
        if (
            self.connection is not None
            and self.settings_dict["CONN_HEALTH_CHECKS"]
            and self.autocommit
            and not self.in_atomic_block
            and not self.is_usable()
        ):
            self.close()

    def _close(self):
        if self.refused_as_read_only and self.connection is not None:
            self.connection.close()  # so that a pool discards it rather than hand it out again
        self.refused_as_read_only = False  # the next connection has not been refused
        return super()._close()  # type: ignore[misc]  # not in stubs

    def is_usable(self):
        """Return True when the connection is idle and the server has sent nothing since.

        A server that ended the session leaves an error message or end-of-file to read. A
        quiet socket proves nothing about a silent network: ``QUERY_TIMEOUT`` covers that.
        A connection whose server refused a write as read-only is not usable either.
        """
        if self.connection is None or self.refused_as_read_only:
            return False
        pgconn = self.connection.pgconn
        if pgconn.transaction_status != TransactionStatus.IDLE:  # also when closed or broken
            return False
        poller = select.poll()  # select.select() fails on descriptors past 1023
        poller.register(pgconn.socket, select.POLLIN)
        return not poller.poll(0)
