"""System checks for the read-replica router and its middleware."""

from django.conf import settings
from django.core.checks import Error, Warning, register

from config.aliases import PRIMARIES
from config.replicas.lag import WINDOW

ROUTER = "config.replicas.router.PrimaryReplicaRouter"
MIDDLEWARE = "config.replicas.middleware.ReadYourWritesMiddleware"
SESSION_MIDDLEWARE = "django.contrib.sessions.middleware.SessionMiddleware"
# They read settings only; Django runs checks tagged "database" only for named aliases.
TAG = "replicas"


@register(TAG)
def check_router_and_middleware(app_configs, **kwargs):
    """Error when the router runs without the middleware that resets its state per request."""
    return wiring_errors(settings.DATABASE_ROUTERS, settings.MIDDLEWARE)


def wiring_errors(routers, middleware):
    """Return an error for each way ``routers`` and ``middleware`` miss each other."""
    if ROUTER not in routers:
        return [
            Error(
                "config.replicas is installed but its router is not in DATABASE_ROUTERS.",
                hint=f"Add {ROUTER!r} to DATABASE_ROUTERS.",
                id="replicas.E001",
            )
        ]
    if MIDDLEWARE not in middleware:
        return [
            Error(
                "The replica router runs without ReadYourWritesMiddleware: a pin set by one "
                "request would send the next request on the same thread to the primary.",
                hint=f"Add {MIDDLEWARE!r} to MIDDLEWARE, before SessionMiddleware.",
                id="replicas.E002",
            )
        ]
    sessions = middleware.index(SESSION_MIDDLEWARE) if SESSION_MIDDLEWARE in middleware else None
    if sessions is not None and sessions < middleware.index(MIDDLEWARE):
        return [
            Error(
                "ReadYourWritesMiddleware comes after SessionMiddleware: a session saved at "
                "the end of a request would escape its pin state.",
                hint="Move it before SessionMiddleware.",
                id="replicas.E003",
            )
        ]
    return []


@register(TAG)
def check_pin_lifetime(app_configs, **kwargs):
    """Error when a pin cookie could expire before a lagging replica is skipped."""
    return pin_lifetime_errors(settings.REPLICA_PIN_SECONDS, settings.REPLICA_MAX_LAG_SECONDS)


def pin_lifetime_errors(pin_seconds, max_lag_seconds):
    """Return an error when ``pin_seconds`` does not outlive the lag limit and one look."""
    shortest = max_lag_seconds + WINDOW
    if pin_seconds <= 0 or pin_seconds > shortest:
        return []
    return [
        Error(
            f"REPLICA_PIN_SECONDS ({pin_seconds:g}) must exceed REPLICA_MAX_LAG_SECONDS plus "
            f"the {WINDOW:g}s between looks at a replica ({shortest:g}): a client whose pin "
            "expired could read a replica that has not replayed its write yet.",
            hint="Raise DATABASE_REPLICA_PIN_SECONDS or lower DATABASE_REPLICA_MAX_LAG_SECONDS.",
            id="replicas.E004",
        )
    ]


@register(TAG)
def check_atomic_requests(app_configs, **kwargs):
    """Warn when ATOMIC_REQUESTS would send every read of every request to the primary."""
    return atomic_requests_warnings(settings.DATABASES)


def atomic_requests_warnings(databases):
    """Return a warning for each primary alias of ``databases`` with ATOMIC_REQUESTS on."""
    return [
        Warning(
            f"Database {alias!r} has ATOMIC_REQUESTS on: every view runs in a transaction "
            "on the primary, so every read goes to the primary and the replicas idle.",
            hint="Turn it off and wrap the views that write in transaction.atomic().",
            obj=alias,
            id="replicas.W001",
        )
        for alias in PRIMARIES
        if databases.get(alias, {}).get("ATOMIC_REQUESTS")
    ]
