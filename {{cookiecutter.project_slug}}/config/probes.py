"""Liveness and readiness probes for load balancers and orchestrators.

Probes come by IP and over plain HTTP, so :class:`ProbeMiddleware` answers them
before ``SecurityMiddleware`` (HTTPS redirect) and ``CommonMiddleware`` (host
validation) see the request. Nothing else skips those checks.
"""

import asyncio
import logging
import time

import psycopg
from django.db import connections
from django.http import HttpResponse, HttpResponseNotAllowed, JsonResponse

logger = logging.getLogger(__name__)

# All databases are probed at once and the whole answer must come within the
# 3 s a load balancer or kubelet usually waits, even from a server that hangs.
READY_TIMEOUT = 2.5


def healthz(request):
    """Liveness: the process serves requests. Touches no database."""
    return HttpResponse("ok\n", content_type="text/plain")


def readyz(request):
    """Readiness: 200 when the primary answers, 503 when it does not.

    Every database alias is reported with ``ok`` and its latency; only ``default``
    decides the status, so another alias that is down is reported without failing
    the probe. The body holds no host names or credentials, only error class names;
    details go to the log.
    """
    results = asyncio.run(probe_databases(list(connections)))
    ready = results["default"]["ok"]
    return JsonResponse({"ready": ready, "databases": results}, status=200 if ready else 503)


async def probe_databases(aliases):
    """Return ``{alias: {"ok": bool, "latency_ms": float, ...}}`` for ``aliases``."""
    probes = [probe_database(alias) for alias in aliases]
    return dict(zip(aliases, await asyncio.gather(*probes), strict=True))


async def probe_database(alias):
    """Open a fresh connection to ``alias`` and run ``SELECT 1``, within the deadline."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            connection = await psycopg.AsyncConnection.connect(
                **connection_params(alias), autocommit=True
            )
            async with connection:
                await connection.execute("SELECT 1")
    except (OSError, psycopg.Error, TimeoutError) as error:
        logger.warning("Readiness probe of database %r failed: %s", alias, error)
        result = {"ok": False, "error": type(error).__name__}
    else:
        result = {"ok": True}
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def connection_params(alias):
    """Return the psycopg connection parameters Django itself would use for ``alias``."""
    params = connections[alias].get_connection_params()
    params.pop("cursor_factory")  # Django's is a sync cursor; the probe connects async
    return {**params, "application_name": "readyz"}


PROBES = {"/healthz/": healthz, "/readyz/": readyz}


class ProbeMiddleware:
    """Serve the probes ahead of the HTTPS redirect and ``ALLOWED_HOSTS`` checks.

    Keep it first in ``MIDDLEWARE``.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        probe = PROBES.get(request.path_info)
        if probe is None:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        return probe(request)
