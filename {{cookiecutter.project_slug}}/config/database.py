"""Build Django's ``DATABASES`` setting from the environment.

Every settings module calls :func:`databases`; only the defaults differ between
environments. Credentials come from URLs in the environment, never from the repository.
"""

from django.core.exceptions import ImproperlyConfigured

from config import env
from config.aliases import DEFAULT, DIRECT
from config.database_url import SSLMODES, URL_EXPECTED, parse
{% if cookiecutter.use_pgbouncer %}
from config.pgbouncer.databases import transaction_pooling
{% endif %}
{% if cookiecutter.use_read_replica %}
from config.replicas import databases as replicas
{% endif %}

# What the server shows of the application's connections (pg_stat_activity, logs).
APPLICATION_NAME = "{{ cookiecutter.project_slug }}"


def databases(*, default_url=env.REQUIRED, sslmode=None):
    """Return the ``DATABASES`` setting.

    ``default_url`` is used when ``DATABASE_URL`` is unset (deployed settings leave
    it required). ``sslmode`` applies to every URL that names none of its own,
    unless ``DATABASE_SSLMODE`` overrides it; ``None`` keeps libpq's default.
    """
    sslmode = env.choice("DATABASE_SSLMODE", sslmode, SSLMODES)
    timeouts = {
        # Without bounds, a server that hangs holds a worker until something kills it.
        "connect_timeout": env.integer("DATABASE_CONNECT_TIMEOUT", 5, minimum=1),
        "query_timeout": env.seconds("DATABASE_QUERY_TIMEOUT", 20.0),
    }
    lifetime = connection_lifetime()
    url = env.string("DATABASE_URL", default_url, expected=URL_EXPECTED)
    # The schema's owner on the primary itself, for migrations and sessions; with a single
    # role, the same server and role as DATABASE_URL. It closes its connections after each use,
    # and its queries have no client-side bound: an index build or a backfill may rightly take
    # minutes, and migrate bounds its lock waits (config/management/commands/migrate.py).
    direct_url = env.string("DATABASE_DIRECT_URL", url, expected=URL_EXPECTED)
    databases = {
        DEFAULT: parse("DATABASE_URL", url, sslmode=sslmode, **timeouts, **lifetime),
        DIRECT: parse(
            "DATABASE_DIRECT_URL",
            direct_url,
            sslmode=sslmode,
            connect_timeout=timeouts["connect_timeout"],
            query_timeout=None,
        ),
    }
{% if cookiecutter.use_pgbouncer %}
    databases[DEFAULT] = transaction_pooling(databases[DEFAULT])
{% endif %}
{% if cookiecutter.use_read_replica %}
    databases |= replicas.databases(sslmode=sslmode, lifetime=lifetime)
{% endif %}
    return databases


def connection_lifetime():
    """Return how connections are kept: persistent with health checks, or a pool.

    Never both: Django's psycopg pool requires ``CONN_MAX_AGE = 0``.
    """
    options = {"application_name": APPLICATION_NAME}
    if not env.boolean("DATABASE_POOL", False):
        max_age = env.integer("DATABASE_CONN_MAX_AGE", 60)
        return {"CONN_MAX_AGE": max_age, "CONN_HEALTH_CHECKS": True, "OPTIONS": options}
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
    # Health checks make the pool test a connection before handing it out: after a server
    # restart, a dead pooled connection is replaced instead of failing a request.
    return {"CONN_MAX_AGE": 0, "CONN_HEALTH_CHECKS": True, "OPTIONS": options | {"pool": pool}}
