"""pytest-django's test database, created on the primary and used through PgBouncer.

``tests/conftest.py`` imports :func:`django_db_setup`, which replaces pytest-django's
fixture of the same name.
"""

import pytest
from django.conf import settings
from django.db import connections
from django.db.backends.base.creation import TEST_DATABASE_PREFIX
from django.test.utils import setup_databases, teardown_databases

from config.aliases import DEFAULT, DIRECT


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

    A production PgBouncer routes only the databases it lists, and DROP DATABASE fails while
    it keeps idle server connections to the database. ``default`` (and every alias mirroring
    it) is pointed at the test database *before* migrations run, so a data migration writing
    through ``default`` lands there too. ``--nomigrations`` is not supported.
    """
    verbosity = request.config.option.verbose
    keepdb = django_db_keepdb and not django_db_createdb
    direct = connections[DIRECT].settings_dict
    test_name = direct["TEST"]["NAME"] or TEST_DATABASE_PREFIX + direct["NAME"]
    pooled_name = connections[DEFAULT].settings_dict["NAME"]
    point_at(DEFAULT, test_name)
    # Django creates every other alias after default, which is not created at all here.
    direct["TEST"]["DEPENDENCIES"] = []
    with django_db_blocker.unblock():
        if not keepdb:  # a crashed run may have left PgBouncer connected to the old one
            terminate_sessions(connections[DIRECT], test_name)
        # Aliases mirroring default share its settings (test NAME included) from here on.
        db_cfg = setup_databases(
            verbosity=verbosity,
            interactive=False,
            keepdb=keepdb,
            aliases={DIRECT},  # type: ignore[arg-type]  # a set, as Django documents
            serialized_aliases=set(),
        )

    yield

    if not keepdb:
        with django_db_blocker.unblock():
            connections.close_all()
            terminate_sessions(connections[DIRECT], test_name)
            teardown_databases(db_cfg, verbosity=verbosity)
    point_at(DEFAULT, pooled_name)


def point_at(alias, name):
    """Make ``alias`` use database ``name`` from its next connection on."""
    connections[alias].close()
    settings.DATABASES[alias]["NAME"] = name
    connections[alias].settings_dict["NAME"] = name


def terminate_sessions(connection, database):
    """End the idle server connections PgBouncer keeps to ``database``, so it can be dropped.

    Only sessions of the same role are touched: PgBouncer logs in as the client's user.
    """
    with connection._nodb_cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND usename = current_user",
            [database],
        )
