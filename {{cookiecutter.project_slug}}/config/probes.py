"""Liveness and readiness probes for load balancers and orchestrators.

Probes come by IP and over plain HTTP, so :class:`ProbeMiddleware` answers them before
``SecurityMiddleware`` (HTTPS redirect) and ``CommonMiddleware`` (host validation) see the
request. Nothing else skips those checks. The readiness logic is in ``config.readiness``.
"""

import ipaddress

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpResponse, HttpResponseNotAllowed, JsonResponse

from config import readiness
from config.aliases import DEFAULT

# Headers a proxy adds: a request that carries one came from beyond it, whatever its address.
FORWARDED = ("HTTP_FORWARDED", "HTTP_X_FORWARDED_FOR", "HTTP_X_REAL_IP")


def healthz(request):
    """Liveness: the process serves requests. Touches no database."""
    return HttpResponse("ok\n", content_type="text/plain")


def readyz(request):
    """Readiness: 200 when the primary answers, 503 when it does not.

    Only ``default`` decides the status. Clients :func:`shows_details` accepts also get every
    alias with its latency or lag and the error class; anyone else gets ``{"ready": bool}``.
    """
    databases = readiness.databases()
    ready = databases[DEFAULT]["ok"]
    body = {"ready": ready, "databases": databases} if shows_details(request) else {"ready": ready}
    return JsonResponse(body, status=200 if ready else 503)


def shows_details(request):
    """Return True when ``request`` may see alias names, latencies, lag and errors.

    That is a client on loopback or on one of ``READYZ_DETAILS_NETWORKS``, judged by the
    address that connected (``REMOTE_ADDR``), never by "private" ranges: behind SNAT or a
    proxy, internet clients arrive from private addresses. A request carrying a forwarding
    header came through a proxy, so the address that connected is the proxy's, not the
    client's: it gets no details, whatever that address (a proxy on the same machine makes
    every client loopback). The header is not trusted for the client's own address either,
    as a client can write it; it can only ever take details away.
    """
    if any(header in request.META for header in FORWARDED):
        return False
    try:
        client = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    # A dual-stack socket reports an IPv4 client as ::ffff:a.b.c.d.
    client = getattr(client, "ipv4_mapped", None) or client
    return client.is_loopback or any(client in net for net in settings.READYZ_DETAILS_NETWORKS)


PROBES = {"/healthz/": healthz, "/readyz/": readyz}


class ProbeMiddleware:
    """Serve the probes ahead of the HTTPS redirect and ``ALLOWED_HOSTS`` checks.

    Keep it first in ``MIDDLEWARE``. It runs as the server does, sync or async, so an ASGI
    request that is not a probe pays no hand-off to a thread.
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
        probe = PROBES.get(request.path_info)
        if probe is None:
            return self.get_response(request)
        return self.answer(probe, request)

    async def __acall__(self, request):
        probe = PROBES.get(request.path_info)
        if probe is None:
            return await self.get_response(request)
        return await sync_to_async(self.answer)(probe, request)

    def answer(self, probe, request):
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        return probe(request)
