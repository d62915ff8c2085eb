"""Rules for connecting through PgBouncer in transaction pooling mode.

PgBouncer hands each transaction to whichever server connection is free, so the
connection may carry no session state: no startup ``options``, no ``assume_role``,
no prepared statements, and no cursor that outlives its transaction.

The ``default`` alias goes through PgBouncer; the ``direct`` alias reaches the
primary itself, for ``migrate`` and anything else that needs a whole session
(advisory locks, ``CREATE INDEX CONCURRENTLY``, ``LISTEN``). See docs/pgbouncer.md.
"""

import base64
import hashlib
import hmac
import secrets

from django.conf import settings
from django.core.checks import Error, Warning, register
from django.core.exceptions import ImproperlyConfigured

POOLED_ALIAS = "default"
DIRECT_ALIAS = "direct"

# URL parameters that only work on a connection of one's own, and why.
SESSION_BOUND = {
    "options": "startup options are rejected by PgBouncer; set them on the role with "
    "ALTER ROLE ... SET instead",
    "assume_role": "SET ROLE would leak to whichever client gets the server connection next",
    "server_side_binding": "server-side binding prepares statements on one server "
    "connection and runs them on another",
    "prepare_threshold": "prepared statements break when the next transaction lands on "
    "another server connection",
}
CHANNEL_BINDING = (
    "PgBouncer cannot do SCRAM channel binding; use channel_binding=prefer or leave it out"
)


def session_bound_options(options):
    """Return ``(option, reason)`` for every entry of ``options`` that needs a session."""
    problems = [
        (option, reason)
        for option, reason in SESSION_BOUND.items()
        if options.get(option) not in (None, False)
    ]
    if options.get("channel_binding") == "require":
        problems.append(("channel_binding=require", CHANNEL_BINDING))
    return problems


def transaction_pooling(config, name="DATABASE_URL"):
    """Return ``config`` made safe for PgBouncer, refusing options that need a session."""
    for option, reason in session_bound_options(config.get("OPTIONS", {})):
        raise ImproperlyConfigured(f"{name} sets {option}: {reason}.")
    # Django's .iterator() outside atomic() opens a cursor WITH HOLD that must outlive its
    # transaction; the next transaction may run on another server connection.
    return {**config, "DISABLE_SERVER_SIDE_CURSORS": True}


# System checks ------------------------------------------------------------------------
# DATABASES is built by config.database, which already refuses all of this; the checks
# catch a settings module (or a later edit) that changes the dictionaries afterwards.
# They read settings only, so they get a tag of their own: Django skips checks tagged
# "database" unless an alias is named on the command line.
TAG = "pgbouncer"


@register(TAG)
def check_transaction_pooling(app_configs, **kwargs):
    """Error when the PgBouncer alias is configured for a session of its own."""
    return transaction_pooling_errors(settings.DATABASES)


def transaction_pooling_errors(databases):
    """Return an error for each setting of the PgBouncer alias that needs a session."""
    config = databases.get(POOLED_ALIAS)
    if config is None:
        return []
    errors = []
    if not config.get("DISABLE_SERVER_SIDE_CURSORS"):
        errors.append(
            Error(
                f"Database {POOLED_ALIAS!r} goes through PgBouncer in transaction pooling "
                "mode but has server-side cursors enabled.",
                hint="Set DISABLE_SERVER_SIDE_CURSORS = True: .iterator() outside atomic() "
                'fails with cursor "_django_curs_..." does not exist.',
                obj=POOLED_ALIAS,
                id="pgbouncer.E001",
            )
        )
    for option, reason in session_bound_options(config.get("OPTIONS", {})):
        errors.append(
            Error(
                f"Database {POOLED_ALIAS!r} goes through PgBouncer but sets {option}.",
                hint=f"Remove it: {reason}.",
                obj=POOLED_ALIAS,
                id="pgbouncer.E002",
            )
        )
    return errors


@register(TAG, deploy=True)
def check_direct_database(app_configs, **kwargs):
    """Warn when deployed settings have no direct route to the primary."""
    return direct_database_warnings(settings.DATABASES)


def direct_database_warnings(databases):
    """Return a warning when ``direct`` is missing or has PgBouncer's address."""
    pooled = databases.get(POOLED_ALIAS)
    direct = databases.get(DIRECT_ALIAS)
    if pooled is None:
        return []
    if direct is None or _address(direct) == _address(pooled):
        return [
            Warning(
                f"Database {DIRECT_ALIAS!r} has the address of {POOLED_ALIAS!r} (PgBouncer): "
                "migrations and session features would run in transaction pooling mode.",
                hint="Set DATABASE_DIRECT_URL to the primary PostgreSQL server.",
                obj=DIRECT_ALIAS,
                id="pgbouncer.W001",
            )
        ]
    return []


def _address(config):
    return (config.get("HOST") or "", str(config.get("PORT") or ""))


# Authentication file ------------------------------------------------------------------

SCRAM_ITERATIONS = 4096  # PostgreSQL's default (scram_iterations)


def scram_sha_256_secret(password, *, salt=None, iterations=SCRAM_ITERATIONS):
    """Return the SCRAM-SHA-256 secret PostgreSQL would store for ``password``.

    The format is ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` (RFC 5802
    and RFC 7677, base64). PostgreSQL normalises passwords with SASLprep; this does not,
    so keep generated passwords to ASCII.
    """
    salt = secrets.token_bytes(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    return "SCRAM-SHA-256${}:{}${}:{}".format(
        iterations, *(base64.b64encode(part).decode() for part in (salt, stored_key, server_key))
    )


def userlist_line(user, secret):
    """Return one ``userlist.txt`` line; PgBouncer doubles quotes inside quoted fields."""

    def quote(value):
        return '"' + value.replace('"', '""') + '"'

    return f"{quote(user)} {quote(secret)}"
