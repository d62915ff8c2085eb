"""Each request gets its own pin state; a client that wrote carries its WAL position."""

import logging
import math

from asgiref.sync import (
    async_to_sync,
    iscoroutinefunction,
    markcoroutinefunction,
    sync_to_async,
)
from django.conf import settings
from django.db import connections

from config.aliases import DEFAULT
from config.replicas.lag import (
    POSITION_SQL,
    parse_position,
    primary_positions,
    written_position,
)
from config.replicas.pinning import (
    begin_unit_of_work,
    end_unit_of_work,
    restored,
    snapshot,
    use_primary,
    wrote,
)
from config.replicas.selection import ReplicaUnavailable

logger = logging.getLogger(__name__)

PIN_COOKIE = "primary_pin"
PIN_SALT = "config.replicas.pin"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


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
        try:
            position = parse_position(value)
        except ValueError:
            return None
        primary_positions.learn(position)
        return position

    def primary_position(self):
        """Return the primary's WAL position now, after the request's writes committed."""
        with connections[DEFAULT].cursor() as cursor:
            cursor.execute(POSITION_SQL)
            position = written_position(parse_position(cursor.fetchone()[0]))
        primary_positions.learn(position)
        return position

    def pin(self, response, position):
        """Set the pin cookie to ``position``."""
        seconds = settings.REPLICA_PIN_SECONDS
        if seconds <= 0:
            return
        response.set_signed_cookie(
            PIN_COOKIE,
            f"{position >> 32:X}/{position & 0xFFFFFFFF:X}",
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

    def process_exception(self, request, exception):
        """Serve a read-only request again from the primary when its replica broke mid-way.

        Only a request that has written nothing is run again, so nothing happens twice.
        """
        match = request.resolver_match
        if (
            not isinstance(exception, ReplicaUnavailable)
            or request.method not in SAFE_METHODS
            or wrote()
            or match is None
        ):
            return None
        logger.warning(
            "A replica failed during %s %s; serving it from the primary.",
            request.method,
            request.path,
        )
        view = async_to_sync(match.func) if iscoroutinefunction(match.func) else match.func
        with use_primary():
            response = view(request, *match.args, **match.kwargs)
            if callable(getattr(response, "render", None)):  # a TemplateResponse
                response = response.render()
        return response


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
