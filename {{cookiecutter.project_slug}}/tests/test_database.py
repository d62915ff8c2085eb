"""``config.database`` builds DATABASES from the environment and refuses bad values."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, connections

from config import database
from config.backends.postgresql.base import BoundedConnection, DatabaseWrapper

URL = "postgres://app:s3cret@db.example.com:5432/app"


def build(**kwargs):
    return database.databases(**kwargs)["default"]


def test_database_url_is_parsed(environ):
    environ(DATABASE_URL=URL)
    config = build()
    assert config["ENGINE"] == "config.backends.postgresql"
    assert (config["USER"], config["PASSWORD"]) == ("app", "s3cret")
    assert (config["HOST"], config["PORT"], config["NAME"]) == ("db.example.com", 5432, "app")


def test_default_url_applies_when_database_url_is_unset(environ):
    assert build(default_url="postgres:///local")["NAME"] == "local"


def test_database_url_is_required_without_a_default(environ):
    with pytest.raises(ImproperlyConfigured, match=r"^DATABASE_URL is required: set it to a Postg"):
        build()


def test_percent_encoded_password_is_decoded(environ):
    environ(DATABASE_URL="postgres://app:p%40ss%3Aw%2Fd@db:5432/app")
    assert build()["PASSWORD"] == "p@ss:w/d"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://app:s3cret@db/app", "DATABASE_URL is not a PostgreSQL URL (scheme 'mysql')"),
        ("db.example.com/app", "DATABASE_URL is not a PostgreSQL URL (scheme 'missing')"),
        ("postgres://app:s3cret@db:notaport/app", "DATABASE_URL is not a valid URL"),
        ("postgres://app:s3cret@db:5432/", "DATABASE_URL names no database"),
        ("postgres://app:s3cret@db/app?sslmode=maybe", "DATABASE_URL has sslmode='maybe'"),
    ],
    ids=["wrong-scheme", "no-scheme", "bad-port", "no-name", "bad-sslmode"],
)
def test_malformed_database_url_is_refused_without_showing_the_password(environ, url, message):
    environ(DATABASE_URL=url)
    with pytest.raises(ImproperlyConfigured) as error:
        build()
    assert str(error.value).startswith(message)
    assert "s3cret" not in str(error.value)
    assert error.value.__cause__ is None


def test_sslmode_default_applies_when_the_url_names_none(environ):
    environ(DATABASE_URL=URL)
    assert build(sslmode="require")["OPTIONS"]["sslmode"] == "require"


def test_no_sslmode_keeps_libpq_default(environ):
    environ(DATABASE_URL=URL)
    assert "sslmode" not in build()["OPTIONS"]


def test_database_sslmode_overrides_the_default(environ):
    environ(DATABASE_URL=URL, DATABASE_SSLMODE="verify-ca")
    assert build(sslmode="require")["OPTIONS"]["sslmode"] == "verify-ca"


@pytest.mark.parametrize("sslmode", ["verify-full", "disable"])
def test_sslmode_in_the_url_is_kept_exactly(environ, sslmode):
    environ(DATABASE_URL=f"{URL}?sslmode={sslmode}", DATABASE_SSLMODE="require")
    assert build(sslmode="require")["OPTIONS"]["sslmode"] == sslmode


def test_malformed_database_sslmode_is_refused(environ):
    environ(DATABASE_URL=URL, DATABASE_SSLMODE="on")
    with pytest.raises(
        ImproperlyConfigured, match=r"^DATABASE_SSLMODE='on' is not valid: expected one"
    ):
        build()


def test_connect_timeout_defaults_to_five_seconds(environ):
    environ(DATABASE_URL=URL)
    assert build()["OPTIONS"]["connect_timeout"] == 5


def test_database_connect_timeout_sets_it(environ):
    environ(DATABASE_URL=URL, DATABASE_CONNECT_TIMEOUT="2")
    assert build()["OPTIONS"]["connect_timeout"] == 2


def test_connect_timeout_in_the_url_wins(environ):
    environ(DATABASE_URL=f"{URL}?connect_timeout=9", DATABASE_CONNECT_TIMEOUT="2")
    assert build()["OPTIONS"]["connect_timeout"] == 9


def test_query_timeout_defaults_to_twenty_seconds(environ):
    environ(DATABASE_URL=URL)
    assert build()["QUERY_TIMEOUT"] == 20


def test_database_query_timeout_sets_it(environ):
    environ(DATABASE_URL=URL, DATABASE_QUERY_TIMEOUT="2.5")
    assert build()["QUERY_TIMEOUT"] == 2.5


def test_malformed_query_timeout_is_refused(environ):
    environ(DATABASE_URL=URL, DATABASE_QUERY_TIMEOUT="forever")
    with pytest.raises(ImproperlyConfigured, match=r"^DATABASE_QUERY_TIMEOUT='forever' is not"):
        build()


@pytest.mark.parametrize("value", ["0", "soon", "-1"])
def test_malformed_connect_timeout_is_refused(environ, value):
    environ(DATABASE_URL=URL, DATABASE_CONNECT_TIMEOUT=value)
    with pytest.raises(ImproperlyConfigured, match=r"^DATABASE_CONNECT_TIMEOUT="):
        build()


def test_connections_persist_with_health_checks_by_default(environ):
    environ(DATABASE_URL=URL)
    config = build()
    assert config["CONN_MAX_AGE"] == 60
    assert config["CONN_HEALTH_CHECKS"] is True
    assert "pool" not in config["OPTIONS"]


def test_database_conn_max_age_sets_the_lifetime(environ):
    environ(DATABASE_URL=URL, DATABASE_CONN_MAX_AGE="0")
    assert build()["CONN_MAX_AGE"] == 0


def test_malformed_conn_max_age_is_refused(environ):
    environ(DATABASE_URL=URL, DATABASE_CONN_MAX_AGE="forever")
    with pytest.raises(
        ImproperlyConfigured, match=r"^DATABASE_CONN_MAX_AGE='forever' is not valid"
    ):
        build()


def test_database_pool_uses_djangos_pool_instead_of_persistent_connections(environ):
    environ(DATABASE_URL=URL, DATABASE_POOL="true")
    config = build()
    assert config["CONN_MAX_AGE"] == 0
    assert config["OPTIONS"]["pool"] == {"min_size": 1, "max_size": 4, "timeout": 10.0}


def test_the_pool_checks_a_connection_before_handing_it_out(environ):
    # Django gives psycopg's pool its check when CONN_HEALTH_CHECKS is on.
    environ(DATABASE_URL=URL, DATABASE_POOL="true")
    assert build()["CONN_HEALTH_CHECKS"] is True


def test_connections_carry_the_project_name(environ):
    environ(DATABASE_URL=URL)
    assert build()["OPTIONS"]["application_name"] == database.APPLICATION_NAME


def test_an_application_name_in_the_url_wins(environ):
    environ(DATABASE_URL=f"{URL}?application_name=worker")
    assert build()["OPTIONS"]["application_name"] == "worker"


def test_pool_keeps_the_url_options(environ):
    environ(DATABASE_URL=f"{URL}?sslmode=verify-full", DATABASE_POOL="true")
    assert build()["OPTIONS"]["sslmode"] == "verify-full"


def test_pool_sizes_come_from_the_environment(environ):
    environ(
        DATABASE_URL=URL,
        DATABASE_POOL="yes",
        DATABASE_POOL_MIN_SIZE="2",
        DATABASE_POOL_MAX_SIZE="8",
        DATABASE_POOL_TIMEOUT="0.5",
    )
    assert build()["OPTIONS"]["pool"] == {"min_size": 2, "max_size": 8, "timeout": 0.5}


def test_pool_refuses_min_size_above_max_size(environ):
    environ(DATABASE_URL=URL, DATABASE_POOL="1", DATABASE_POOL_MIN_SIZE="5")
    with pytest.raises(ImproperlyConfigured, match=r"^DATABASE_POOL_MIN_SIZE=5 is larger"):
        build()


def test_pool_and_conn_max_age_are_never_combined(environ):
    environ(DATABASE_URL=URL, DATABASE_POOL="true", DATABASE_CONN_MAX_AGE="60")
    with pytest.raises(ImproperlyConfigured, match=r"^DATABASE_CONN_MAX_AGE cannot be combined"):
        build()


@pytest.mark.django_db
def test_pool_settings_connect_to_postgresql():
    settings_dict = {
        **connection.settings_dict,
        "CONN_MAX_AGE": 0,
        "OPTIONS": {**connection.settings_dict["OPTIONS"], "pool": {"min_size": 1, "max_size": 2}},
    }
    pooled = DatabaseWrapper(settings_dict, alias="pooled")
    try:
        with pooled.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)
        assert pooled.pool is not None  # type: ignore[attr-defined]  # (django-stubs 5.2)
        assert isinstance(pooled.connection, BoundedConnection)
        assert pooled.connection.timeout == connection.settings_dict["QUERY_TIMEOUT"]
    finally:
        pooled.close()
        pooled.close_pool()  # type: ignore[attr-defined]


# The schema's owner: DATABASE_DIRECT_URL ------------------------------------------------------

OWNER_URL = "postgres://app_owner:s3cret@db.example.com:5432/app"


def test_direct_alias_reaches_database_direct_url(environ):
    environ(DATABASE_URL=URL, DATABASE_DIRECT_URL=OWNER_URL)
    direct = database.databases()["direct"]
    assert (direct["USER"], direct["HOST"], direct["PORT"]) == ("app_owner", "db.example.com", 5432)


def test_direct_url_defaults_to_database_url(environ):
    environ(DATABASE_URL=URL)
    direct = database.databases()["direct"]
    assert (direct["USER"], direct["NAME"]) == ("app", "app")


def test_direct_url_may_set_session_options(environ):
    # The primary gives each client a session of its own, so startup options are fine.
    environ(DATABASE_URL=URL, DATABASE_DIRECT_URL=f"{OWNER_URL}?options=-c%20x%3Dy")
    assert database.databases()["direct"]["OPTIONS"]["options"] == "-c x=y"


def test_direct_connections_close_after_each_request(environ):
    # A web worker that touches the owner's connection must not keep it open.
    environ(DATABASE_URL=URL, DATABASE_DIRECT_URL=OWNER_URL)
    assert database.databases()["direct"]["CONN_MAX_AGE"] == 0


def test_malformed_direct_url_is_refused_by_name(environ):
    environ(DATABASE_URL=URL, DATABASE_DIRECT_URL="mysql://app:s3cret@db/app")
    with pytest.raises(ImproperlyConfigured, match=r"^DATABASE_DIRECT_URL is not a PostgreSQL"):
        build()


def test_the_test_database_is_shared_by_both_aliases(db):
    # Created and migrated by the owner, used by the application's role.
    name = connection.settings_dict["NAME"]
    assert name.startswith("test_")
    assert connections["direct"].settings_dict["NAME"] == name
