"""The ``DATABASES`` entries of the read replicas, from ``DATABASE_REPLICA_URLS``."""

from config import database, env
from config.aliases import DEFAULT, REPLICA_PREFIX


def databases(*, sslmode, lifetime):
    """Return ``replica1``, ``replica2``, ... from ``DATABASE_REPLICA_URLS`` (may be none)."""
    # Replicas get short bounds: a dead or frozen one is skipped, not waited for.
    timeout = env.integer("DATABASE_REPLICA_CONNECT_TIMEOUT", 2, minimum=1)
    query_timeout = env.seconds("DATABASE_REPLICA_QUERY_TIMEOUT", 3.0, minimum=0.1)
    urls = env.strings(
        "DATABASE_REPLICA_URLS", [], expected="comma-separated PostgreSQL replica URLs"
    )
    replicas = {}
    for number, url in enumerate(urls, start=1):
        name = f"DATABASE_REPLICA_URLS (item {number})"
        replica = database.parse_url(
            name, url, sslmode=sslmode, connect_timeout=timeout, query_timeout=query_timeout
        )
        replica = database.with_lifetime(replica, lifetime)
        if "pool" in replica["OPTIONS"]:
            # A pool waits its whole timeout for a connection to a dead replica; the
            # router only falls back to another database once that wait is over.
            pool = replica["OPTIONS"]["pool"]
            pool = {**pool, "timeout": min(pool["timeout"], timeout)}
            replica["OPTIONS"] = {**replica["OPTIONS"], "pool": pool}
        replicas[f"{REPLICA_PREFIX}{number}"] = replica
    return replicas


def mirror_default(databases):
    """Return ``databases`` with one replica that is ``default`` itself, for the test suite.

    A real replica would serve the test database with replication lag, and no replica at
    all would leave the router untested: ``replica1`` reads the test database through a
    second connection instead.
    """
    primaries = {
        alias: config for alias, config in databases.items() if not alias.startswith(REPLICA_PREFIX)
    }
    mirror = {**databases[DEFAULT], "TEST": {"MIRROR": DEFAULT}}
    return {**primaries, f"{REPLICA_PREFIX}1": mirror}
