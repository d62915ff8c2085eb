"""The ``DATABASES`` entries of the read replicas, from ``DATABASE_REPLICA_URLS``."""

import re

from config import env
from config.aliases import DEFAULT, REPLICA_PREFIX
from config.database_url import parse

ENGINE = "config.replicas.backend"  # reads a replica cannot serve go to the primary
# What sets a replica's entry apart from the primary's. A read whose rows all arrive with its
# statement can move to the primary when the replica fails; one fetched from a server-side
# cursor could not, halfway through.
REPLICA = {"ENGINE": ENGINE, "DISABLE_SERVER_SIDE_CURSORS": True}


def databases(*, sslmode, lifetime):
    """Return ``replica1``, ``replica2``, ... from ``DATABASE_REPLICA_URLS`` (may be none)."""
    # Replicas get short bounds: a dead or frozen one is skipped, not waited for.
    connect_timeout = env.integer("DATABASE_REPLICA_CONNECT_TIMEOUT", 2, minimum=1)
    query_timeout = env.seconds("DATABASE_REPLICA_QUERY_TIMEOUT", 3.0, minimum=0.1)
    urls = replica_urls(env.string("DATABASE_REPLICA_URLS", ""))
    options = lifetime["OPTIONS"]
    if "pool" in options:
        # A pool waits its whole timeout for a connection to a dead replica before the read
        # can move to the primary.
        pool = options["pool"]
        options = {**options, "pool": {**pool, "timeout": min(pool["timeout"], connect_timeout)}}
    return {
        f"{REPLICA_PREFIX}{number}": parse(
            f"DATABASE_REPLICA_URLS (item {number})",
            url,
            sslmode=sslmode,
            connect_timeout=connect_timeout,
            query_timeout=query_timeout,
            target_session_attrs="standby",
            **{**lifetime, **REPLICA, "OPTIONS": options},
        )
        for number, url in enumerate(urls, start=1)
    }


def mirrored(databases):
    """Return ``databases`` with one replica that reads the test database itself, through a
    connection of its own (Django's ``TEST["MIRROR"]``), for the test settings: no
    replication lag, while the router and the replicas' backend still run."""
    primaries = {name: db for name, db in databases.items() if not name.startswith(REPLICA_PREFIX)}
    mirror = databases[DEFAULT] | REPLICA | {"TEST": {"MIRROR": DEFAULT}}
    return primaries | {f"{REPLICA_PREFIX}1": mirror}


# Between two URLs: white space, or a comma that a scheme follows. A comma inside a URL
# separates the hosts of one multi-host URL.
_BETWEEN_URLS = re.compile(r"\s+|,\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)")


def replica_urls(value):
    """Split ``DATABASE_REPLICA_URLS`` into URLs: separated by commas or white space."""
    return [url.strip(",") for url in _BETWEEN_URLS.split(value) if url.strip(",")]
