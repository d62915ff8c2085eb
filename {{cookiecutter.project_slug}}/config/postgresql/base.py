"""``DatabaseWrapper`` for ``ENGINE = "config.postgresql"``: Django's, with bounded waits.

Each entry of ``DATABASES`` gives ``QUERY_TIMEOUT``, the longest a query may wait for the
server on an open connection (``None`` or ``0``: no limit). Past it the connection is
closed and the query fails with ``OperationalError``; Django opens a new connection for
the next one. Connecting is bounded by libpq's ``connect_timeout``, and the health check
by the same number of seconds: a server that cannot answer ``SELECT 1`` that fast is as
good as down.
"""

import contextlib

from django.db import DatabaseError, OperationalError
from django.db.backends.postgresql import base

from config.postgresql.deadlines import watchdog


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        settings_dict = self.settings_dict
        self.query_timeout = settings_dict.get("QUERY_TIMEOUT") or None
        self.health_check_timeout = settings_dict["OPTIONS"].get("connect_timeout")
        if self.query_timeout:
            self.execute_wrappers.append(self._bounded_execute)

    def _bounded_execute(self, execute, sql, params, many, context):
        with self.bounded(self.query_timeout):
            return execute(sql, params, many, context)

    def is_usable(self):
        if self.connection is None or self.connection.broken:
            return False
        if not self.health_check_timeout:
            return super().is_usable()
        with self.bounded(float(self.health_check_timeout)):
            return super().is_usable()  # False, not an error, once the watchdog cuts it

    @contextlib.contextmanager
    def bounded(self, seconds):
        """Bound the server waits inside the block to ``seconds`` on the open connection."""
        if self.connection.broken:  # it has no socket left; whatever runs fails at once
            yield
            return
        with watchdog.bound(self.connection.pgconn.socket, seconds) as wait:
            try:
                yield
            except DatabaseError:
                if not wait.expired:
                    raise
                raise OperationalError(
                    f"Database {self.alias!r} did not answer within {seconds:g}s; "
                    "its connection was closed."
                ) from None
