"""System checks for the database configuration (``manage.py check``)."""

from django.conf import settings
from django.core.checks import Tags, Warning, register
from django.db import connections

from config import budget
from config.aliases import DEFAULT


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


# What the application's role is, what it owns, and whether the server ends what it gave up on.
ROLE_SQL = """
    SELECT rolsuper,
           (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relowner = r.oid AND c.relkind IN ('r', 'p')
               AND n.nspname NOT IN ('pg_catalog', 'information_schema')),
           current_setting('statement_timeout'),
           current_setting('client_connection_check_interval')
      FROM pg_roles r WHERE rolname = current_user
"""


@register(Tags.database, deploy=True)
def check_database_role(app_configs, databases=None, **kwargs):
    """Warn when the application's role can do more than read and write rows.

    A database check: ``manage.py check --deploy --database default`` runs it (it connects).
    """
    if not databases or DEFAULT not in databases:
        return []
    with connections[DEFAULT].cursor() as cursor:
        cursor.execute(ROLE_SQL)
        return role_warnings(*cursor.fetchone())


def role_warnings(superuser, tables_owned, statement_timeout, check_interval):
    """Return the warnings for the application's role, as :data:`ROLE_SQL` found it."""
    hint = "Connect as a role made by deploy/postgresql/roles.sql (docs/database-roles.md)."
    warnings = []
    if superuser:
        warnings.append(
            Warning(
                f"Database {DEFAULT!r} connects as a superuser: one SQL injection can read, "
                "change or drop anything on the server.",
                hint=hint,
                id="config.W003",
            )
        )
    if tables_owned:
        warnings.append(
            Warning(
                f"Database {DEFAULT!r} connects as the owner of {tables_owned} tables: it can "
                "drop or alter them.",
                hint=hint + " Migrations run as the owner through DATABASE_DIRECT_URL.",
                id="config.W004",
            )
        )
    if statement_timeout == "0" or check_interval == "0":
        warnings.append(
            Warning(
                f"Database {DEFAULT!r} has no server-side bound on its statements "
                f"(statement_timeout={statement_timeout}, client_connection_check_interval="
                f"{check_interval}): a query the application gave up on keeps running.",
                hint="Set both on the role with ALTER ROLE (deploy/postgresql/roles.sql).",
                id="config.W005",
            )
        )
    return warnings


@register(Tags.database, deploy=True)
def check_connection_budget(app_configs, databases=None, **kwargs):
    """Warn when one app server can take more than :data:`config.budget.SHARE` of the
    primary's usable connection slots.

    A database check, like :func:`check_database_role`: it asks the server for its slots.
    """
    if not databases or DEFAULT not in databases:
        return []
    return budget_warnings(budget.GUNICORN_CONFIG)


def budget_warnings(gunicorn_config):
    """Return the warning for the primary's budget under the gunicorn config file given."""
    primary = budget.servers(settings.DATABASES, budget.read_gunicorn(gunicorn_config))[0]
    primary.ask()
    taken, usable = primary.connections(), primary.slots.usable
    if taken <= budget.SHARE * usable:
        return []
    through = f" (through {primary.pooler.name})" if primary.pooler else ""
    return [
        Warning(
            f"One app server can open {taken} connections to the server of {DEFAULT!r}{through}, "
            f"more than {budget.SHARE:.0%} of its {usable} usable slots ({primary.slots}): "
            "a second app server, or a rolling deploy, would run it out of connections.",
            hint="python manage.py connection_budget --app-servers N shows where they go and "
            "what to change.",
            id="config.W006",
        )
    ]
