"""Each request gets its own pin state; a client that wrote is pinned by a signed cookie."""

import logging
import math

from asgiref.sync import async_to_sync, iscoroutinefunction, markcoroutinefunction
from django.conf import settings

from config.replicas.pinning import begin_unit_of_work, end_unit_of_work, use_primary, wrote
from config.replicas.selection import ReplicaUnavailable

logger = logging.getLogger(__name__)

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

    def process_exception(self, request, exception):
        """Serve a read-only request again from the primary when its replica broke mid-way.

        Only a request that has written nothing is run again, so nothing happens twice.
        """
        match = request.resolver_match
        if (
            not isinstance(exception, ReplicaUnavailable)
            or request.method in UNSAFE_METHODS
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
