"""Each request gets its own pin state; a client that wrote carries its WAL position."""

import logging
import math

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.db import DatabaseError, connections

from config.aliases import DEFAULT
from config.replicas import wal
from config.replicas.lag import lag
from config.replicas.pinning import begin_unit_of_work, end_unit_of_work, restored, snapshot, wrote

PIN_COOKIE = "primary_pin"
PIN_SALT = "config.replicas.pin"
UNKNOWN = "unknown"  # a pin whose position the primary did not say

logger = logging.getLogger(__name__)


class ReadYourWritesMiddleware:
    """Give each request its own pin state, and clients that wrote their own writes.

    A response to a request that wrote sets a cookie holding the primary's WAL position
    after the write: signed, so a client can neither forge a pin nor stretch one, and
    valid for ``REPLICA_PIN_SECONDS`` at most. The client's later reads go to a replica
    that has replayed that position, and to the primary until one has. A request that
    wrote nothing (whatever its method, a 404, a CSRF failure) sets no cookie. Place it
    before ``SessionMiddleware``, so that writes saving the session are inside its scope.
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
        tokens = begin_unit_of_work(position=self.position(request))
        try:
            response = self.get_response(request)
            if wrote():
                self.pin(response, self.primary_position())
            self.keep_state(response)
        finally:
            end_unit_of_work(tokens)
        return response

    async def __acall__(self, request):
        tokens = begin_unit_of_work(position=self.position(request))
        try:
            response = await self.get_response(request)
            if wrote():
                self.pin(response, await sync_to_async(self.primary_position)())
            self.keep_state(response)
        finally:
            end_unit_of_work(tokens)
        return response

    def position(self, request):
        """Return the WAL position the request's pin cookie asks for, or None."""
        if PIN_COOKIE not in request.COOKIES:  # most requests: no signature to check
            return None
        seconds = settings.REPLICA_PIN_SECONDS
        # The signature's own timestamp bounds the pin: a client cannot extend it.
        value = request.get_signed_cookie(PIN_COOKIE, None, salt=PIN_SALT, max_age=seconds)
        if value == UNKNOWN:
            return math.inf  # past any replica: the primary serves until the pin expires
        try:
            position = wal.parse(value)
        except ValueError:
            return None
        lag.primary_positions.learn(position)
        return position

    def primary_position(self):
        """Return the primary's WAL position now, after the request's writes committed.

        ``None`` when the primary does not say: the request's work is done, and a failure
        here must not turn it into an error a client would retry. The pin then holds for its
        whole lifetime.
        """
        try:
            with connections[DEFAULT].cursor() as cursor:
                cursor.execute(wal.POSITION_SQL)
                position = wal.written(wal.parse(cursor.fetchone()[0]))
        except DatabaseError as error:
            logger.warning("The primary's WAL position is unknown; pinning by time: %s", error)
            return None
        lag.primary_positions.learn(position, from_primary=True)
        return position

    def pin(self, response, position):
        """Set the pin cookie to ``position`` (``None``: unknown)."""
        seconds = settings.REPLICA_PIN_SECONDS
        if seconds <= 0:
            return
        response.set_signed_cookie(
            PIN_COOKIE,
            UNKNOWN if position is None else wal.format(position),
            salt=PIN_SALT,
            max_age=math.ceil(seconds),
            domain=settings.SESSION_COOKIE_DOMAIN,
            secure=settings.SESSION_COOKIE_SECURE,
            httponly=True,
            samesite="Lax",
        )

    def keep_state(self, response):
        """Produce a streamed body with the pin state of the request that made it."""
        if not response.streaming:
            return
        state = snapshot()
        if response.is_async:
            response.streaming_content = _async_with_state(response.streaming_content, state)
        else:
            response.streaming_content = _with_state(response.streaming_content, state)


# The body is produced after the middleware has returned, by the server. Each chunk is
# made under the request's pin state, which is put back before the chunk is handed on.
def _with_state(iterable, state):
    iterator = iter(iterable)
    while True:
        with restored(state):
            chunk = next(iterator, _DONE)
        if chunk is _DONE:
            return
        yield chunk


async def _async_with_state(iterable, state):
    iterator = aiter(iterable)
    while True:
        with restored(state):
            chunk = await anext(iterator, _DONE)
        if chunk is _DONE:
            return
        yield chunk


_DONE = object()
