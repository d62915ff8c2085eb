"""Read-your-writes state and replica health for ``config.routers.PrimaryReplicaRouter``.

Three pieces, each cheap enough to consult on every query:

* **Pin state** lives in :mod:`contextvars`, so it belongs to one thread or one asyncio
  task and is never shared with another. A context is *pinned* (its reads go to the
  primary) while ``use_primary()`` is active, for the rest of a request that wrote or
  used an unsafe method, and for requests carrying a valid pin cookie.
* **Replica health** is process-wide: a replica that refuses or times out a connection
  is skipped by every thread for ``REPLICA_COOLDOWN_SECONDS``.
* :class:`ReadYourWritesMiddleware` gives each request a fresh pin state and hands a
  client that wrote a short-lived signed cookie, so the GET after a POST-redirect-GET
  reads what the POST wrote even though the replica may not have replayed it yet.
"""

import logging
import math
import random
import threading
import time
from contextvars import ContextVar

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.db import DatabaseError, connections

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- pin state

# True while reads must go to the primary: use_primary(), an unsafe method, a pin cookie.
# Set with a token and reset with it, so nested scopes restore the outer value.
_reads_pinned = ContextVar("reads_pinned", default=False)
# True once the context wrote to the primary. Kept apart from _reads_pinned so that leaving
# a use_primary() block cannot unpin a context that wrote inside it.
_wrote = ContextVar("wrote", default=False)


def pinned():
    """Return True when reads in the current context must go to the primary."""
    return _reads_pinned.get() or _wrote.get()


def wrote():
    """Return True when the current context has written to the primary."""
    return _wrote.get()


def mark_written():
    """Record a write: the rest of the current context reads from the primary."""
    if not _wrote.get():  # setting only once keeps the write path free of churn
        _wrote.set(True)


def pin_reads():
    """Pin the current context's reads to the primary; return a token for unpin_reads."""
    return _reads_pinned.set(True)


def unpin_reads(token):
    """Restore the pin state that was current before the matching ``pin_reads()``."""
    _reads_pinned.reset(token)


def begin_unit_of_work(*, pinned=False):
    """Start a fresh pin state (a request, a task); return the token for end_unit_of_work.

    Threads are reused from one request to the next and a context outlives the request
    it served, so every unit of work must start unpinned and restore what it found.
    """
    return _reads_pinned.set(pinned), _wrote.set(False)


def end_unit_of_work(tokens):
    """Restore the pin state saved by :func:`begin_unit_of_work`."""
    pinned_token, wrote_token = tokens
    _wrote.reset(wrote_token)
    _reads_pinned.reset(pinned_token)


# --------------------------------------------------------------------------- health


class ReplicaHealth:
    """Process-wide record of the replicas that failed to connect, and until when.

    Only transitions take the lock and log: the first failure logs one warning, the
    first success afterwards logs one "back" message, and failures in between are quiet.
    """

    def __init__(self):
        self._down_until = {}  # alias -> time.monotonic() at which to try it again
        self._lock = threading.Lock()

    def available(self, alias):
        """Return True when ``alias`` may be tried now.

        Once a cool-down expires, exactly one caller gets True and the cool-down is
        extended for everyone else while that caller tries to connect: a dead replica
        costs one connect timeout per cool-down per process, not one per request.
        """
        if alias not in self._down_until:  # the fast path: a dict lookup, no lock
            return True
        with self._lock:
            until = self._down_until.get(alias)
            if until is None:
                return True
            now = time.monotonic()
            if now < until:
                return False
            self._down_until[alias] = now + settings.REPLICA_COOLDOWN_SECONDS
            return True

    def mark_down(self, alias, error):
        """Skip ``alias`` for the cool-down; warn if it was up until now."""
        cooldown = settings.REPLICA_COOLDOWN_SECONDS
        with self._lock:
            was_up = alias not in self._down_until
            self._down_until[alias] = time.monotonic() + cooldown
        if was_up:
            logger.warning(
                "Database replica %r is unreachable; reading from elsewhere for %gs: %s",
                alias,
                cooldown,
                error,
            )

    def mark_up(self, alias):
        """Use ``alias`` again; say so if it was down."""
        if alias not in self._down_until:
            return
        with self._lock:
            was_down = self._down_until.pop(alias, None) is not None
        if was_down:
            logger.warning("Database replica %r answers again; reading from it.", alias)

    def reset(self):
        """Forget every failure (for tests)."""
        with self._lock:
            self._down_until.clear()


health = ReplicaHealth()


# --------------------------------------------------------------------------- selection


def choose_replica(aliases):
    """Return a reachable replica alias among ``aliases``, or None when none answers.

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
        elif health.available(alias) and _usable(alias, connection):
            return alias
    if len(fresh) > 1:
        start = random.randrange(len(fresh))  # noqa: S311 (load spreading, not security)
        fresh = fresh[start:] + fresh[:start]
    for alias, connection in fresh:
        if health.available(alias) and _usable(alias, connection):
            return alias
    return None


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
    except DatabaseError as error:
        _discard(connection)
        health.mark_down(alias, error)
        return False
    health.mark_up(alias)
    return True


def _discard(connection):
    try:
        connection.close()
    except DatabaseError:
        connection.connection = None  # already broken: drop it without ceremony


# --------------------------------------------------------------------------- middleware

PIN_COOKIE = "primary_pin"
PIN_SALT = "config.replicas.pin"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class ReadYourWritesMiddleware:
    """Give each request its own pin state and pin clients that just wrote.

    A request is pinned from the start when it carries a valid pin cookie or uses an
    unsafe method (its form validation then sees the rows it is about to collide with).
    A response to a request that wrote or used an unsafe method sets the cookie: signed,
    so a client cannot pin itself at will, and valid for ``REPLICA_PIN_SECONDS``, which
    should exceed the replicas' usual lag. Place it before ``SessionMiddleware`` so that
    writes made while saving the session are inside its scope.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        tokens = begin_unit_of_work(pinned=self.starts_pinned(request))
        try:
            response = self.get_response(request)
            self.process_response(request, response)
        finally:
            end_unit_of_work(tokens)
        return response

    async def __acall__(self, request):
        tokens = begin_unit_of_work(pinned=self.starts_pinned(request))
        try:
            response = await self.get_response(request)
            self.process_response(request, response)
        finally:
            end_unit_of_work(tokens)
        return response

    def starts_pinned(self, request):
        """Return True when the request's reads must go to the primary from the start."""
        if request.method in UNSAFE_METHODS:
            return True
        if PIN_COOKIE not in request.COOKIES:  # most requests: no signature to check
            return False
        seconds = settings.REPLICA_PIN_SECONDS
        value = request.get_signed_cookie(PIN_COOKIE, None, salt=PIN_SALT, max_age=seconds)
        # The signature's own timestamp bounds the pin: a client cannot extend it.
        return value is not None

    def process_response(self, request, response):
        """Set the pin cookie when the request wrote or used an unsafe method."""
        seconds = settings.REPLICA_PIN_SECONDS
        if seconds <= 0 or not (wrote() or request.method in UNSAFE_METHODS):
            return
        response.set_signed_cookie(
            PIN_COOKIE,
            "1",
            salt=PIN_SALT,
            max_age=math.ceil(seconds),
            domain=settings.SESSION_COOKIE_DOMAIN,
            secure=settings.SESSION_COOKIE_SECURE,
            httponly=True,
            samesite="Lax",
        )
