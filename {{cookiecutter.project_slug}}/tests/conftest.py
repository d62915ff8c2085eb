import importlib
import sys

import pytest

# Variables the settings read; each test starts from none of them.
PREFIXES = ("DJANGO_", "DATABASE_")


@pytest.fixture
def clean_env(monkeypatch):
    """Remove every variable the settings read, keeping DJANGO_SETTINGS_MODULE."""
    import os

    for name in list(os.environ):
        if name.startswith(PREFIXES) and name != "DJANGO_SETTINGS_MODULE":
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def environ(clean_env):
    """Set environment variables for one test, on top of a clean environment."""

    def set_variables(**variables):
        for name, value in variables.items():
            clean_env.setenv(name, value)

    return set_variables


@pytest.fixture
def load_settings(clean_env):
    """Import a settings module afresh under the given environment variables."""
    saved = {
        name: module for name, module in sys.modules.items() if name.startswith("config.settings.")
    }

    def load(name, **environ):
        for key, value in environ.items():
            clean_env.setenv(key, value)
        for module in list(sys.modules):
            if module.startswith("config.settings."):
                del sys.modules[module]
        return importlib.import_module(f"config.settings.{name}")

    yield load
    for module in list(sys.modules):
        if module.startswith("config.settings."):
            del sys.modules[module]
    sys.modules.update(saved)


# What staging and production need to start (the documented required variables).
DEPLOY_ENV = {
    "DJANGO_SECRET_KEY": "x7Gk2pQv9sLm4Rt8Wz1Yc6Hn3Jb5Df0Ae7Ui2Oo9Pl4Kk8Mm1Nn6Bb3Vv5Cc0Xx",
    "DJANGO_ALLOWED_HOSTS": "example.com,www.example.com",
    "DATABASE_URL": "postgres://app:s3cret@db.example.com:5432/app",
}


@pytest.fixture
def deploy_env():
    return dict(DEPLOY_ENV)
{% if cookiecutter.use_pgbouncer %}


@pytest.fixture(scope="session")
def django_db_setup(
    request,
    django_test_environment,
    django_db_blocker,
    django_db_keepdb,
    django_db_createdb,
    django_db_modify_db_settings,
):
    """Create and drop the test database on the primary; run the tests through PgBouncer.

    Replaces pytest-django's fixture of the same name. Creating, migrating and dropping
    happen on the ``direct`` alias: a production PgBouncer routes only the databases it
    lists, and DROP DATABASE fails while PgBouncer keeps idle server connections to it.
    ``default`` (and every alias mirroring it) is pointed at the test database *before*
    migrations run, so a data migration writing through ``default`` lands there too. With
    DATABASE_DIRECT_URL unset both aliases reach the same server, which works the same way.
    ``--nomigrations`` is not supported here.
    """
    from django.conf import settings
    from django.db import connections
    from django.db.backends.base.creation import TEST_DATABASE_PREFIX
    from django.test.utils import setup_databases, teardown_databases

    from config.pgbouncer import DIRECT_ALIAS, POOLED_ALIAS

    verbosity = request.config.option.verbose
    keepdb = django_db_keepdb and not django_db_createdb
    direct = connections[DIRECT_ALIAS].settings_dict
    test_name = direct["TEST"]["NAME"] or TEST_DATABASE_PREFIX + direct["NAME"]
    pooled_name = connections[POOLED_ALIAS].settings_dict["NAME"]
    point_at(POOLED_ALIAS, test_name, settings, connections)
    # Django creates every other alias after default, which is not created at all here.
    direct["TEST"]["DEPENDENCIES"] = []
    with django_db_blocker.unblock():
        if not keepdb:  # a crashed run may have left PgBouncer connected to the old one
            terminate_sessions(connections[DIRECT_ALIAS], test_name)
        # Aliases mirroring default share its settings (test NAME included) from here on.
        db_cfg = setup_databases(
            verbosity=verbosity,
            interactive=False,
            keepdb=keepdb,
            aliases={DIRECT_ALIAS},
            serialized_aliases=set(),
        )

    yield

    if not keepdb:
        with django_db_blocker.unblock():
            connections.close_all()
            terminate_sessions(connections[DIRECT_ALIAS], test_name)
            teardown_databases(db_cfg, verbosity=verbosity)
    point_at(POOLED_ALIAS, pooled_name, settings, connections)


def point_at(alias, name, settings, connections):
    """Make ``alias`` use database ``name`` from its next connection on."""
    connections[alias].close()
    settings.DATABASES[alias]["NAME"] = name
    connections[alias].settings_dict["NAME"] = name


def terminate_sessions(connection, database):
    """End the idle server connections PgBouncer keeps to ``database``, so it can be dropped.

    Runs from the maintenance database, like CREATE and DROP DATABASE themselves. Only
    sessions of the same role are touched: PgBouncer logs in as the client's user.
    """
    with connection._nodb_cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND usename = current_user",
            [database],
        )
{% endif %}
