"""Build Django's ``DATABASES`` setting from the environment.

Every settings module calls :func:`databases`; only the defaults differ between
environments. Credentials come from URLs in the environment, never from the repository.
"""

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

{% if cookiecutter.use_pgbouncer %}
from config import env, pgbouncer
{% else %}
from config import env
{% endif %}

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
{% if cookiecutter.use_pgbouncer %}
    # DATABASE_URL is PgBouncer in transaction pooling mode; DATABASE_DIRECT_URL is the
    # primary itself, for migrations and anything else that needs a whole session.
    direct_url = env.string("DATABASE_DIRECT_URL", url, expected=URL_EXPECTED)
    databases = {
        "default": with_lifetime(
            pgbouncer.transaction_pooling(parse_url("DATABASE_URL", url, sslmode=sslmode)),
            lifetime,
        ),
        "direct": parse_url("DATABASE_DIRECT_URL", direct_url, sslmode=sslmode),
    }
{% else %}
    primary = parse_url("DATABASE_URL", url, sslmode=sslmode)
    databases = {"default": with_lifetime(primary, lifetime)}
{% endif %}
{% if cookiecutter.use_read_replica %}
    databases.update(replica_databases(sslmode, lifetime))
{% endif %}
    return databases


def parse_url(name, url, *, sslmode=None, connect_timeout=None):
    """Parse one database URL from variable ``name`` into a ``DATABASES`` entry.

    An ``sslmode`` written in the URL is kept exactly as written; ``sslmode`` fills
    in only when the URL names none. Errors never repeat the URL: it holds a password.
    """
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme not in POSTGRES_SCHEMES:
        raise ImproperlyConfigured(
            f"{name} is not a PostgreSQL URL (scheme {scheme or 'missing'!r}): "
            f"expected {URL_EXPECTED}."
        )
    try:
        config = dj_database_url.parse(url)
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
    # Without a bound, a server that drops packets hangs a worker for minutes.
    if connect_timeout is None:
        connect_timeout = env.integer("DATABASE_CONNECT_TIMEOUT", 5, minimum=1)
    options.setdefault("connect_timeout", connect_timeout)
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
{% if cookiecutter.use_read_replica %}


def replica_databases(sslmode, lifetime):
    """Return ``replica1``, ``replica2``, ... from ``DATABASE_REPLICA_URLS`` (may be none)."""
    # Replicas get a short connect timeout: a dead one is skipped, not waited for.
    replica_timeout = env.integer("DATABASE_REPLICA_CONNECT_TIMEOUT", 2, minimum=1)
    replica_urls = env.strings(
        "DATABASE_REPLICA_URLS", [], expected="comma-separated PostgreSQL replica URLs"
    )
    replicas = {}
    for number, replica_url in enumerate(replica_urls, start=1):
        replica = parse_url(
            f"DATABASE_REPLICA_URLS (item {number})",
            replica_url,
            sslmode=sslmode,
            connect_timeout=replica_timeout,
        )
        replica = with_lifetime(replica, lifetime)
        if "pool" in replica["OPTIONS"]:
            # A pool waits its whole timeout for a connection to a dead replica; the
            # router only falls back to another database once that wait is over.
            pool = replica["OPTIONS"]["pool"]
            timeout = min(pool["timeout"], replica_timeout)
            replica["OPTIONS"] = {**replica["OPTIONS"], "pool": {**pool, "timeout": timeout}}
        # In tests a replica is the test database itself, read through another alias.
        replicas[f"replica{number}"] = {**replica, "TEST": {"MIRROR": "default"}}
    return replicas
{% endif %}
