"""Each request gets its own pin state; a client that wrote is pinned by a signed cookie."""

import math

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings

from config.replicas.pinning import begin_unit_of_work, end_unit_of_work, wrote

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
