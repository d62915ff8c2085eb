"""Build Django's ``DATABASES`` setting from the environment.

Every settings module calls :func:`databases`; only the defaults differ between
environments. Credentials come from URLs in the environment, never from the repository.
"""

from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config import env
from config.aliases import DEFAULT
{% if cookiecutter.use_pgbouncer %}
from config.pgbouncer import databases as pgbouncer
{% endif %}
{% if cookiecutter.use_read_replica %}
from config.replicas import databases as replicas
{% endif %}

ENGINE = "config.postgresql"  # Django's backend with bounded waits
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
URL_EXPECTED = "a PostgreSQL URL such as postgres://USER:PASSWORD@HOST:5432/NAME"
POSTGRES_SCHEMES = ("postgres", "postgresql", "pgsql")


def databases(*, default_url=env.REQUIRED, sslmode=None):
    """Return the ``DATABASES`` setting.

    ``default_url`` is used when ``DATABASE_URL`` is unset (deployed settings leave
    it required). ``sslmode`` applies to every URL that names none of its own,
    unless ``DATABASE_SSLMODE`` overrides it; ``None`` keeps libpq's default.
    """
    sslmode = env.choice("DATABASE_SSLMODE", sslmode, SSLMODES)
    lifetime = connection_lifetime()
    url = env.string("DATABASE_URL", default_url, expected=URL_EXPECTED)
    primary = with_lifetime(parse_url("DATABASE_URL", url, sslmode=sslmode), lifetime)
    databases = {DEFAULT: primary}
{% if cookiecutter.use_pgbouncer %}
    databases |= pgbouncer.databases(primary, url, sslmode=sslmode)
{% endif %}
{% if cookiecutter.use_read_replica %}
    databases |= replicas.databases(sslmode=sslmode, lifetime=lifetime)
{% endif %}
    return databases


def parse_url(name, url, *, sslmode=None, connect_timeout=None, query_timeout=None):
    """Parse one database URL from variable ``name`` into a ``DATABASES`` entry.

    An ``sslmode`` written in the URL is kept exactly as written; ``sslmode`` fills
    in only when the URL names none. Errors never repeat the URL: it holds a password.
    ``connect_timeout`` and ``query_timeout`` default to ``DATABASE_CONNECT_TIMEOUT``
    and ``DATABASE_QUERY_TIMEOUT`` (see ``config.postgresql``).
    """
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme not in POSTGRES_SCHEMES:
        raise ImproperlyConfigured(
            f"{name} is not a PostgreSQL URL (scheme {scheme or 'missing'!r}): "
            f"expected {URL_EXPECTED}."
        )
    try:
        # A plain dict: the entry gains keys dj-database-url's TypedDict does not know.
        config: dict[str, Any] = dict(dj_database_url.parse(url, engine=ENGINE))
    except ValueError:
        raise ImproperlyConfigured(
            f"{name} is not a valid URL: expected {URL_EXPECTED}, with special "
            "characters in the user name and password percent-encoded."
        ) from None
    if not config.get("NAME"):
        raise ImproperlyConfigured(f"{name} names no database: expected {URL_EXPECTED}.")
    options = config.setdefault("OPTIONS", {})
    if "sslmode" in options:
        if options["sslmode"] not in SSLMODES:
            raise ImproperlyConfigured(
                f"{name} has sslmode={options['sslmode']!r}: expected one of "
                + ", ".join(SSLMODES)
                + "."
            )
    elif sslmode:
        options["sslmode"] = sslmode
    # Without bounds, a server that hangs holds a worker until something kills it.
    if connect_timeout is None:
        connect_timeout = env.integer("DATABASE_CONNECT_TIMEOUT", 5, minimum=1)
    options.setdefault("connect_timeout", connect_timeout)
    if query_timeout is None:
        query_timeout = env.seconds("DATABASE_QUERY_TIMEOUT", 20.0)
    config["QUERY_TIMEOUT"] = query_timeout
    return config


def with_lifetime(config, lifetime):
    """Return ``config`` with the connection ``lifetime`` settings merged in."""
    options = {**config.get("OPTIONS", {}), **lifetime.get("OPTIONS", {})}
    return {**config, **lifetime, "OPTIONS": options}


def connection_lifetime():
    """Return how connections are kept: persistent with health checks, or a pool.

    Never both: Django's psycopg pool requires ``CONN_MAX_AGE = 0``.
    """
    if not env.boolean("DATABASE_POOL", False):
        return {
            "CONN_MAX_AGE": env.integer("DATABASE_CONN_MAX_AGE", 60),
            "CONN_HEALTH_CHECKS": True,
            "HEALTH_CHECK": env.choice("DATABASE_HEALTH_CHECK", "socket", ("socket", "query")),
        }
    if env.string("DATABASE_CONN_MAX_AGE", None) is not None:
        raise ImproperlyConfigured(
            "DATABASE_CONN_MAX_AGE cannot be combined with DATABASE_POOL=true: "
            "Django's connection pool requires CONN_MAX_AGE=0; unset one of them."
        )
    pool = {
        "min_size": env.integer("DATABASE_POOL_MIN_SIZE", 1),
        "max_size": env.integer("DATABASE_POOL_MAX_SIZE", 4, minimum=1),
        "timeout": env.seconds("DATABASE_POOL_TIMEOUT", 10.0, minimum=0.1),
    }
    if pool["min_size"] > pool["max_size"]:
        raise ImproperlyConfigured(
            f"DATABASE_POOL_MIN_SIZE={pool['min_size']} is larger than "
            f"DATABASE_POOL_MAX_SIZE={pool['max_size']}: expected min <= max."
        )
    return {"CONN_MAX_AGE": 0, "OPTIONS": {"pool": pool}}
