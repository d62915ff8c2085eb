"""System checks for the database configuration (``manage.py check``)."""

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def check_database_tls(app_configs, **kwargs):
    """Warn when a deployed database connection may travel unencrypted or to an impostor."""
    return tls_warnings(settings.DATABASES)


def tls_warnings(databases):
    """Return a warning for each alias of ``databases`` whose ``sslmode`` falls short.

    Below ``require`` the connection may be unencrypted (``config.W001``); ``require`` and
    ``verify-ca`` encrypt it but do not prove that the server is the one the host name
    names (``config.W002``): only ``verify-full`` does. A Unix socket never leaves the machine.
    """
    warnings = []
    for alias, config in databases.items():
        sslmode = config.get("OPTIONS", {}).get("sslmode", "prefer")
        host = config.get("HOST") or ""
        if not host or host.startswith("/") or sslmode == "verify-full":
            continue
        if sslmode in ("require", "verify-ca"):
            warnings.append(
                Warning(
                    f"Database {alias!r} connects to {host} with sslmode={sslmode!r}: the "
                    "connection is encrypted, but the server's certificate is not checked "
                    "against its host name.",
                    hint="Use sslmode=verify-full with the server's CA in sslrootcert (or "
                    "sslrootcert=system for a public CA), in the URL or DATABASE_SSLMODE.",
                    id="config.W002",
                )
            )
        else:
            warnings.append(
                Warning(
                    f"Database {alias!r} connects to {host} with sslmode={sslmode!r}: the "
                    "connection may be unencrypted.",
                    hint="Use sslmode=verify-full (or at least require) in the URL or "
                    "DATABASE_SSLMODE.",
                    id="config.W001",
                )
            )
    return warnings
