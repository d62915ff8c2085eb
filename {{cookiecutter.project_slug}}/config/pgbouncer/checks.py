"""System checks for the PgBouncer aliases.

``config.pgbouncer.databases`` already refuses all of this; the checks catch a settings
module (or a later edit) that changes ``DATABASES`` afterwards. They read settings only,
so they get a tag of their own: Django runs "database" checks only for named aliases.
"""

from django.conf import settings
from django.core.checks import Error, Warning, register

from config.aliases import DEFAULT, DIRECT
from config.pgbouncer.databases import session_bound_options

TAG = "pgbouncer"


@register(TAG)
def check_transaction_pooling(app_configs, **kwargs):
    """Error when the PgBouncer alias is configured for a session of its own."""
    return transaction_pooling_errors(settings.DATABASES)


def transaction_pooling_errors(databases):
    """Return an error for each setting of the PgBouncer alias that needs a session."""
    config = databases.get(DEFAULT)
    if config is None:
        return []
    errors = []
    if not config.get("DISABLE_SERVER_SIDE_CURSORS"):
        errors.append(
            Error(
                f"Database {DEFAULT!r} goes through PgBouncer in transaction pooling "
                "mode but has server-side cursors enabled.",
                hint="Set DISABLE_SERVER_SIDE_CURSORS = True: .iterator() outside atomic() "
                'fails with cursor "_django_curs_..." does not exist.',
                obj=DEFAULT,
                id="pgbouncer.E001",
            )
        )
    for option, reason in session_bound_options(config.get("OPTIONS", {})):
        errors.append(
            Error(
                f"Database {DEFAULT!r} goes through PgBouncer but sets {option}.",
                hint=f"Remove it: {reason}.",
                obj=DEFAULT,
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
    pooled = databases.get(DEFAULT)
    direct = databases.get(DIRECT)
    if pooled is None:
        return []
    if direct is None or _address(direct) == _address(pooled):
        return [
            Warning(
                f"Database {DIRECT!r} has the address of {DEFAULT!r} (PgBouncer): "
                "migrations and session features would run in transaction pooling mode.",
                hint="Set DATABASE_DIRECT_URL to the primary PostgreSQL server.",
                obj=DIRECT,
                id="pgbouncer.W001",
            )
        ]
    return []


def _address(config):
    return (config.get("HOST") or "", str(config.get("PORT") or ""))
