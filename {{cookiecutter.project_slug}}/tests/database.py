"""pytest-django's test database: created and migrated by the schema's owner, used by the app.

``tests/conftest.py`` imports :func:`django_db_setup`, which replaces pytest-django's
fixture of the same name, so the suite runs as deployed: ``direct`` (the owner,
``DATABASE_DIRECT_URL``) creates and migrates the test database, ``default`` (the application's
role, ``DATABASE_URL``) runs the tests and can only read and write rows there.
"""

import pytest
from django.conf import settings
from django.db import connections
from django.db.backends.base.creation import TEST_DATABASE_PREFIX
from django.test.utils import setup_databases, teardown_databases
from psycopg import sql

from config.aliases import DEFAULT, DIRECT

# What deploy/postgresql/privileges.sql grants the application, for the roles at hand, and
# TRUNCATE: Django's TransactionTestCase empties the tables with it after each test.
PRIVILEGES = [
    "GRANT USAGE ON SCHEMA public TO {app}",
    "GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public TO {app}",
    "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {app}",
    "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public "
    "GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON TABLES TO {app}",
    "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public "
    "GRANT USAGE, SELECT ON SEQUENCES TO {app}",
]


@pytest.fixture(scope="session")
def django_db_setup(
    request,
    django_test_environment,
    django_db_blocker,
    django_db_keepdb,
    django_db_createdb,
    django_db_modify_db_settings,
):
    """Create, migrate and drop the test database on ``direct``; run the tests on ``default``.

    The application's role may not create databases or tables; a pooler routes only the
    databases it lists, and DROP DATABASE fails while it keeps idle server connections to the
    database. ``default`` (and every alias mirroring it) is pointed at the test database
    before migrations run. ``--nomigrations`` is not supported.
    """
    verbosity = request.config.option.verbose
    keepdb = django_db_keepdb and not django_db_createdb
    direct = connections[DIRECT].settings_dict
    test_name = direct["TEST"]["NAME"] or TEST_DATABASE_PREFIX + direct["NAME"]
    app_name = connections[DEFAULT].settings_dict["NAME"]
    point_at(DEFAULT, test_name)
    # Django creates every other alias after default, which is not created at all here.
    direct["TEST"]["DEPENDENCIES"] = []
    with django_db_blocker.unblock():
        if not keepdb:  # a crashed run may have left a pooler connected to the old one
            terminate_sessions(connections[DIRECT], test_name)
        db_cfg = setup_databases(
            verbosity=verbosity,
            interactive=False,
            keepdb=keepdb,
            aliases={DIRECT},  # type: ignore[arg-type]  # a set, as Django documents
            serialized_aliases=set(),
        )
        grant_privileges(owner=connections[DIRECT], app=connections[DEFAULT])

    yield

    if not keepdb:
        with django_db_blocker.unblock():
            connections.close_all()
            terminate_sessions(connections[DIRECT], test_name)
            teardown_databases(db_cfg, verbosity=verbosity)
    point_at(DEFAULT, app_name)


def grant_privileges(*, owner, app):
    """Let ``app``'s role read and write the rows of ``owner``'s tables, as in production.

    Nothing to do when both connect as the same role (one role for everything, on a
    developer's machine).
    """
    with owner.cursor() as cursor:
        cursor.execute("SELECT current_user")
        owner_role = cursor.fetchone()[0]
        app_role = app.settings_dict["USER"] or owner_role
        if app_role == owner_role:
            return
        roles = {"owner": sql.Identifier(owner_role), "app": sql.Identifier(app_role)}
        for statement in PRIVILEGES:
            cursor.execute(sql.SQL(statement).format(**roles))


def app_on_the_primary():
    """The settings of the application's role on the primary itself.

    ``default`` may go through a pooler; ``direct`` reaches the primary, as the schema's owner.
    """
    default = connections[DEFAULT].settings_dict
    owner = connections[DIRECT].settings_dict
    return {**owner, "USER": default["USER"], "PASSWORD": default["PASSWORD"]}


def point_at(alias, name):
    """Make ``alias`` use database ``name`` from its next connection on."""
    connections[alias].close()
    settings.DATABASES[alias]["NAME"] = name
    connections[alias].settings_dict["NAME"] = name


def terminate_sessions(connection, database):
    """End the idle server connections a pooler keeps to ``database``, so it can be dropped.

    A pooler logs in as the client's role: the sessions ended are those of the roles this one
    may signal, its own, or every non-superuser's once it has ``pg_signal_backend`` (what the
    owner needs when the application's role goes through a pooler).
    """
    with connection._nodb_cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(activity.pid) FROM pg_stat_activity AS activity "
            "JOIN pg_roles ON pg_roles.oid = activity.usesysid "
            "WHERE activity.datname = %s AND activity.pid <> pg_backend_pid() "
            "AND (pg_has_role(pg_roles.oid, 'MEMBER') "
            "OR (pg_has_role('pg_signal_backend', 'MEMBER') AND NOT pg_roles.rolsuper))",
            [database],
        )
