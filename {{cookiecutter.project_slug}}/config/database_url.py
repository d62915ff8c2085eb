"""One database URL from the environment, parsed into a ``DATABASES`` entry."""

from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

ENGINE = "config.backends.postgresql"  # Django's backend with bounded waits
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
URL_EXPECTED = "a PostgreSQL URL such as postgres://USER:PASSWORD@HOST:5432/NAME"
SCHEMES = ("postgres", "postgresql", "pgsql")


def parse(name, url, *, sslmode=None, connect_timeout, query_timeout, **settings):
    """Return the ``DATABASES`` entry for ``url``, read from variable ``name``.

    An ``sslmode`` written in the URL is kept exactly as written; ``sslmode`` fills in only
    when the URL names none, as do ``connect_timeout`` (libpq's, whole seconds) and, for
    :mod:`config.backends.postgresql`, ``query_timeout``. ``settings`` (``ENGINE``,
    ``CONN_MAX_AGE``, ``OPTIONS``, ...) are merged in, ``OPTIONS`` under the URL's own.
    Errors never repeat the URL: it holds a password.
    """
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme not in SCHEMES:
        raise ImproperlyConfigured(
            f"{name} is not a PostgreSQL URL (scheme {scheme or 'missing'!r}): "
            f"expected {URL_EXPECTED}."
        )
    try:
        # A plain dict: the entry gains keys dj-database-url's TypedDict does not know.
        parsed: dict[str, Any] = dict(dj_database_url.parse(url, engine=ENGINE))
    except ValueError:
        raise ImproperlyConfigured(
            f"{name} is not a valid URL: expected {URL_EXPECTED}, with special "
            "characters in the user name and password percent-encoded."
        ) from None
    if not parsed.get("NAME"):
        raise ImproperlyConfigured(f"{name} names no database: expected {URL_EXPECTED}.")
    options = {
        "connect_timeout": connect_timeout,
        **({"sslmode": sslmode} if sslmode else {}),
        **settings.pop("OPTIONS", {}),
        **parsed.get("OPTIONS", {}),
    }
    if options.get("sslmode", "prefer") not in SSLMODES:
        raise ImproperlyConfigured(
            f"{name} has sslmode={options['sslmode']!r}: expected one of "
            + ", ".join(SSLMODES)
            + "."
        )
    return {**parsed, "QUERY_TIMEOUT": query_timeout, **settings, "OPTIONS": options}
