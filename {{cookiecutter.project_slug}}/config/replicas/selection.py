"""Choosing the replica a read goes to."""

import random

from django.db import DatabaseError, InterfaceError, OperationalError, connections

from config.replicas.health import health
from config.replicas.lag import lag


def choose_replica(aliases, position=None):
    """Return a replica alias among ``aliases`` fit to serve a read, or None.

    A replica is fit when it answers, is not lagging (see :mod:`~config.replicas.lag`)
    and, for a reader that must see WAL ``position``, has replayed that far.

    A replica this thread is already connected to is reused, so one request reads from
    one replica (one snapshot source, one connection). Otherwise a replica is picked at
    random: every worker process chooses independently, and a per-process round-robin
    counter would send the first connection of every worker to the same replica.
    Connecting happens here, before the query, so that a dead replica is skipped
    instead of failing the query.
    """
    fresh = []
    for alias in aliases:
        connection = connections[alias]
        if connection.connection is None:
            fresh.append((alias, connection))
        elif _fit(alias, connection, position):
            return alias
    if len(fresh) > 1:
        start = random.randrange(len(fresh))  # noqa: S311 (load spreading, not security)
        fresh = fresh[start:] + fresh[:start]
    for alias, connection in fresh:
        if _fit(alias, connection, position):
            return alias
    return None


def _fit(alias, connection, position):
    return health.available(alias) and _usable(alias, connection) and lag.serves(alias, position)


def _usable(alias, connection):
    """Make sure ``connection`` works; record the outcome for ``alias`` in ``health``."""
    try:
        if connection.connection is not None and (
            connection.errors_occurred
            or (connection.health_check_enabled and not connection.health_check_done)
        ):
            # What Django checks before the first query of a request anyway, done here so
            # a connection that died in the meantime is replaced or skipped.
            if connection.is_usable():
                connection.errors_occurred = False
                connection.health_check_done = True
            else:
                connection.close()
        connection.ensure_connection()
        if lag.due(alias):
            lag.look(alias, connection)
    except DatabaseError as error:
        _discard(connection)
        health.mark_down(alias, error)
        return False
    health.mark_up(alias)
    if fail_over not in connection.execute_wrappers:
        connection.execute_wrappers.insert(0, fail_over)  # outermost: sees the final error
    return True


class ReplicaUnavailable(OperationalError):
    """A replica's connection broke during a query: a read-only request may retry it."""


def fail_over(execute, sql, params, many, context):
    """Skip a replica whose connection broke mid-query (it died, or hung past its bound)."""
    try:
        return execute(sql, params, many, context)
    except (OperationalError, InterfaceError) as error:
        connection = context["connection"]
        if connection.connection is not None and not connection.connection.broken:
            raise  # the server answered with an error: the replica itself is fine
        health.mark_down(connection.alias, error)
        raise ReplicaUnavailable(str(error)) from error


def _discard(connection):
    try:
        connection.close()
    except DatabaseError:
        connection.connection = None  # already broken: drop it without ceremony
