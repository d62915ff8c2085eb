"""System checks for the database configuration (``manage.py check``)."""

from django.conf import settings
from django.core.checks import Tags, Warning, register

SECURE_SSLMODES = ("require", "verify-ca", "verify-full")


@register(Tags.security, deploy=True)
def check_database_tls(app_configs, **kwargs):
    """Warn when a deployed database connection may travel unencrypted."""
    return unencrypted_connections(settings.DATABASES)


def unencrypted_connections(databases):
    """Return a warning for each alias of ``databases`` that may connect without TLS."""
    warnings = []
    for alias, config in databases.items():
        sslmode = config.get("OPTIONS", {}).get("sslmode", "prefer")
        host = config.get("HOST", "")
        if sslmode in SECURE_SSLMODES or not host or host.startswith("/"):
            continue  # a Unix socket never leaves the machine
        warnings.append(
            Warning(
                f"Database {alias!r} connects to {host} with sslmode={sslmode!r}: "
                "the connection may be unencrypted.",
                hint="Use sslmode=require (or verify-full) in the URL or DATABASE_SSLMODE.",
                id="config.W001",
            )
        )
    return warnings
