"""Liveness and readiness probes for load balancers and orchestrators.

Probes come by IP and over plain HTTP, so :class:`ProbeMiddleware` answers them
before ``SecurityMiddleware`` (HTTPS redirect) and ``CommonMiddleware`` (host
validation) see the request. Nothing else skips those checks.
"""

from django.http import HttpResponse, HttpResponseNotAllowed, JsonResponse

from config.aliases import DEFAULT
from config.readiness import readiness


def healthz(request):
    """Liveness: the process serves requests. Touches no database."""
    return HttpResponse("ok\n", content_type="text/plain")


def readyz(request):
    """Readiness: 200 when the primary answers, 503 when it does not.

    Every database alias is reported with ``ok`` and its latency; only ``default``
    decides the status, so another alias that is down is reported without failing
    the probe. The body holds no host names or credentials, only error class names;
    details go to the log. See ``config.readiness`` for the deadline and the rate.
    """
    results = readiness.results()
    ready = results[DEFAULT]["ok"]
    return JsonResponse({"ready": ready, "databases": results}, status=200 if ready else 503)


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
