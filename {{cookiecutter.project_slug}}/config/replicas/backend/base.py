"""``DatabaseWrapper`` for the replica aliases: a read a replica cannot serve runs on the primary.

The router chooses a replica from what the process already knows, before anything is known of
the read's connection, and may not block (``config.replicas.router``). What is learnt only when
the read runs is handled here, where Django opens the cursor and runs the statement:

- the replica refuses or does not answer a connection: it cools down, and the read gets a
  cursor on the primary instead;
- its last look is stale: it is looked at again (one query on the replica, once a window per
  process); if it now lags, or has not replayed the position the reader must see, the read
  gets a cursor on the primary; if it was promoted, its connection is dropped as well;
- its connection breaks during a read (the server died, or hung past ``QUERY_TIMEOUT``): it
  cools down and that statement runs again on the primary. A replica is read-only, so the
  statement changed nothing there: running it on the primary runs it once.

Django has no hook between a cursor and the statement run on it: a read that moves to the
primary has its cursor pointed at the primary's connection, so the rows come from there.
A read from a server-side cursor (``.iterator()``) that moves gets a plain cursor: the rows
come at once instead of in chunks. Rows already fetched from a replica that then breaks
cannot be read again; that fetch fails.
"""

from django.db import DatabaseError, OperationalError, connections

from config.aliases import DEFAULT
from config.backends.postgresql import base
from config.replicas.cooldown import cooldown
from config.replicas.lag import lag
from config.replicas.pinning import required_position


class DatabaseWrapper(base.DatabaseWrapper):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.execute_wrappers.append(self.read_on_primary_if_lost)

    def cursor(self):
        return self.serving(super().cursor)

    def chunked_cursor(self):
        return self.serving(super().chunked_cursor)

    def serving(self, make_cursor):
        """Return ``make_cursor()`` when this replica can serve the read, else a primary cursor."""
        try:
            cursor = make_cursor()
            if lag.claim(self.alias):
                with self.wrap_database_errors:
                    lag.look(self.alias, self.connection)
        except DatabaseError as error:
            self.discard()
            cooldown.start(self.alias, error)
            return connections[DEFAULT].cursor()
        cooldown.end(self.alias)
        if not lag.serves(self.alias, required_position()):
            cursor.close()
            if lag.promoted(self.alias):
                self.discard()  # a URL naming several hosts may find a standby next time
            return connections[DEFAULT].cursor()
        return cursor

    def read_on_primary_if_lost(self, execute, sql, params, many, context):
        """Run a statement whose replica connection broke again, on the primary."""
        try:
            return execute(sql, params, many, context)
        except OperationalError as error:
            if self.connection is not None and not self.connection.closed:
                raise  # the replica answered, with an error of the statement's own
            self.discard()
            cooldown.start(self.alias, error)
        cursor = context["cursor"]
        primary = connections[DEFAULT].cursor()
        cursor.db, cursor.cursor = primary.db, primary.cursor
        return execute(sql, params, many, context)

    def discard(self):
        """Drop the connection, whatever state it is in."""
        try:
            self.close()
        except DatabaseError:
            self.connection = None
