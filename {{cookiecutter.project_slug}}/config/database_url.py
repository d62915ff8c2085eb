"""One database URL from the environment, parsed into a ``DATABASES`` entry."""

from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from psycopg import ProgrammingError
from psycopg.conninfo import conninfo_to_dict

ENGINE = "config.backends.postgresql"  # Django's backend with bounded waits
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
URL_EXPECTED = "a PostgreSQL URL such as postgres://USER:PASSWORD@HOST:5432/NAME"
HOSTS_EXPECTED = (
    "HOST[:PORT] items separated by commas, IPv6 addresses in brackets, such as "
    "postgres://USER:PASSWORD@db1:5432,db2:5432/NAME"
)
SCHEMES = ("postgres", "postgresql", "pgsql")
SESSION_ATTRS = ("any", "read-write", "read-only", "primary", "standby", "prefer-standby")
WRITABLE_SESSION_ATTRS = ("any", "read-write", "primary")
LOAD_BALANCE_HOSTS = ("disable", "random")

# libpq's own detection of a peer that vanished (a crashed host, a partition), which no error
# or end-of-file announces: an idle connection is probed after 10 s and given up after three
# unanswered probes 3 s apart; data unacknowledged for 10 s ends the connection. Without these,
# Linux waits about two hours, or 15 minutes of retransmissions. The URL can override each.
DEAD_PEER_DETECTION = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 3,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,  # milliseconds
}


def parse(
    name,
    url,
    *,
    sslmode=None,
    connect_timeout,
    query_timeout,
    target_session_attrs="read-write",
    **settings,
):
    """Return the ``DATABASES`` entry for ``url``, read from variable ``name``.

    An ``sslmode`` written in the URL is kept exactly as written; ``sslmode`` fills in only
    when the URL names none, as do ``connect_timeout`` (libpq's, whole seconds),
    :data:`DEAD_PEER_DETECTION` and, for :mod:`config.backends.postgresql`, ``query_timeout``.
    ``settings`` (``ENGINE``, ``CONN_MAX_AGE``, ``OPTIONS``, ...) are merged in, ``OPTIONS``
    under the URL's own. Errors never repeat the URL: it holds a password.

    A URL may name several hosts, as libpq's own URLs do (``db1:5432,db2:5432``): libpq tries
    them in turn and keeps the first whose session matches ``target_session_attrs``, which
    defaults to the argument of that name (``read-write``: where writes are accepted, which
    after a failover is the promoted standby). dj-database-url refuses such URLs, so libpq's
    own parser reads everything before the query; dj-database-url reads the query.
    """
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme not in SCHEMES:
        raise ImproperlyConfigured(
            f"{name} is not a PostgreSQL URL (scheme {scheme or 'missing'!r}): "
            f"expected {URL_EXPECTED}."
        )
    invalid = ImproperlyConfigured(
        f"{name} is not a valid URL: expected {URL_EXPECTED}, with special characters in the "
        "user name and password percent-encoded."
    )
    base, _, query = url.partition("?")
    try:
        # libpq's own reading (of pgsql:// as postgresql://): several hosts, IPv6 in
        # brackets, percent-encoding.
        libpq: dict[str, Any] = conninfo_to_dict("postgresql" + base.removeprefix(scheme))
        # dj-database-url types the query's values ("5" as 5, "true" as True), as Django's
        # options (server_side_binding, ...) and the checks of them expect.
        parsed: dict[str, Any] = dict(dj_database_url.parse(f"postgres://?{query}", engine=ENGINE))
    except (ProgrammingError, ValueError):
        raise invalid from None
    hosts, port = libpq.get("host", "").split(","), libpq.get("port", "")
    # libpq checks neither until it connects: "db1,,db2" and "db:port" parse.
    valid_ports = all(item.isdigit() and 0 < int(item) < 65536 for item in port.split(",") if item)
    if len(hosts) > 1 and not (all(hosts) and valid_ports):
        raise ImproperlyConfigured(
            f"{name} names {len(hosts)} hosts, not all valid: expected {HOSTS_EXPECTED}."
        )
    if not valid_ports:
        raise invalid
    if not libpq.get("dbname"):
        raise ImproperlyConfigured(f"{name} names no database: expected {URL_EXPECTED}.")
    parsed |= {
        "NAME": libpq["dbname"],
        "USER": libpq.get("user", ""),
        "PASSWORD": libpq.get("password", ""),
        "HOST": ",".join(hosts),
        # One port as a number; several as libpq's list, which is "," when no host has one.
        "PORT": int(port) if port.isdigit() else port.strip(",") and port,
    }
    options = {
        "connect_timeout": connect_timeout,
        **DEAD_PEER_DETECTION,
        **({"sslmode": sslmode} if sslmode else {}),
        **({"target_session_attrs": target_session_attrs} if len(hosts) > 1 else {}),
        **settings.pop("OPTIONS", {}),
        **parsed.get("OPTIONS", {}),
    }
    _check_choice(name, options, "sslmode", SSLMODES)
    _check_choice(name, options, "load_balance_hosts", LOAD_BALANCE_HOSTS)
    _check_choice(name, options, "target_session_attrs", SESSION_ATTRS)
    if (
        target_session_attrs in WRITABLE_SESSION_ATTRS
        and options.get("target_session_attrs", "any") not in WRITABLE_SESSION_ATTRS
    ):
        raise ImproperlyConfigured(
            f"{name} has target_session_attrs={options['target_session_attrs']!r}, which "
            "lets the primary's connections land on a server that refuses writes: expected "
            + ", ".join(WRITABLE_SESSION_ATTRS)
            + "."
        )
    return {**parsed, "QUERY_TIMEOUT": query_timeout, **settings, "OPTIONS": options}


def _check_choice(name, options, option, choices):
    if option in options and options[option] not in choices:
        raise ImproperlyConfigured(
            f"{name} has {option}={options[option]!r}: expected one of " + ", ".join(choices) + "."
        )
