"""``DatabaseWrapper`` for the replica aliases: a read a replica cannot serve runs on the primary.

The router chooses a replica from what the process already knows, before anything is known of
the read's connection, and may not block (``config.replicas.router``). What is learnt only when
the read runs is handled here, where Django opens the cursor and runs the statement:

- the replica refuses or does not answer a connection: it cools down, and the read gets a
  cursor on the primary instead;
- its last look is stale: before the statement runs, the replica is looked at again (one query
  on the replica, once a window per process); if it now lags, is no longer a standby, or has
  not replayed the position the reader must see, the statement runs on the primary. A
  connection to a replica found promoted fails the next request's health check, so a URL
  naming several hosts may find a standby then;
- its connection breaks during a statement (the server died, or hung past ``QUERY_TIMEOUT``):
  it cools down and that statement runs again on the primary. A replica is read-only, so the
  statement changed nothing there: running it on the primary runs it once.

Django has no hook between a cursor and the statement run on it: a statement that moves has
its cursor pointed at the primary's connection, so the rows come from there. Server-side
cursors are off for replicas (``config.replicas.databases``): every row of a statement
arrives with it, so a replica that fails during a read fails the statement, which then moves.
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
        self.execute_wrappers.append(self.read_where_served)

    def cursor(self):
        """Return a cursor on this replica, or on the primary when it cannot be reached."""
        try:
            cursor = super().cursor()
        except DatabaseError as error:
            self.lost(error)
            return connections[DEFAULT].cursor()
        cooldown.end(self.alias)
        return cursor

    def is_usable(self):
        """Django's, and False once a look found the replica promoted: a new connection may
        find a standby."""
        return not lag.promoted(self.alias) and super().is_usable()

    def read_where_served(self, execute, sql, params, many, context):
        """Run the statement here if this replica serves the reader, else on the primary.

        A transaction opened on this alias keeps every statement on its connection: one
        cannot move to another server halfway.
        """
        if not self.autocommit:
            return execute(sql, params, many, context)
        try:
            if self.serves():
                return execute(sql, params, many, context)
        except OperationalError as error:
            if self.connection is not None and not self.connection.closed:
                raise  # the replica answered, with an error of the statement's own
            self.lost(error)
        cursor = context["cursor"]
        primary = connections[DEFAULT].cursor()
        cursor.db, cursor.cursor = primary.db, primary.cursor
        return execute(sql, params, many, context)

    def serves(self):
        """Return True when this replica may serve the reader, looking at it first when the
        last look is stale."""
        if lag.claim(self.alias):
            with self.wrap_database_errors:
                lag.look(self.alias, self.connection)
        return lag.serves(self.alias, required_position())

    def lost(self, error):
        """Drop the connection, whatever state it is in, and cool the replica down."""
        try:
            self.close()
        except DatabaseError:
            self.connection = None
        cooldown.start(self.alias, error)
