"""System checks flag database settings that are unsafe to deploy."""

import pytest
from django.core.checks.registry import registry
from django.db import connection

from config.checks import check_database_role, check_database_tls, role_warnings, tls_warnings


def warning_ids(host, sslmode=None):
    options = {} if sslmode is None else {"sslmode": sslmode}
    databases = {"default": {"HOST": host, "OPTIONS": options}}
    return [warning.id for warning in tls_warnings(databases)]


def test_unencrypted_remote_database_is_a_deploy_warning():
    assert warning_ids("db.example.com", "disable") == ["config.W001"]


def test_libpq_default_sslmode_is_a_deploy_warning():
    # "prefer" silently falls back to plain text when the server offers no TLS.
    assert warning_ids("db.example.com") == ["config.W001"]


def test_tls_without_checking_the_host_name_is_a_deploy_warning():
    # "require" encrypts, but anyone between the app and the server may pose as the server.
    assert warning_ids("db.example.com", "require") == ["config.W002"]
    assert warning_ids("db.example.com", "verify-ca") == ["config.W002"]


def test_verified_tls_passes():
    assert warning_ids("db.example.com", "verify-full") == []


def test_unix_socket_needs_no_tls():
    assert warning_ids("") == []
    assert warning_ids("/var/run/postgresql") == []


def test_the_tls_check_runs_only_with_deploy_checks():
    assert check_database_tls in registry.get_checks(include_deployment_checks=True)
    assert check_database_tls not in registry.get_checks(include_deployment_checks=False)


# The application's role ---------------------------------------------------------------------

BOUNDED = ("20s", "1s")  # statement_timeout, client_connection_check_interval


def role_ids(superuser=False, tables_owned=0, bounds=BOUNDED):
    return [warning.id for warning in role_warnings(superuser, tables_owned, *bounds)]


def test_a_role_that_only_reads_and_writes_rows_passes():
    assert role_ids() == []


def test_a_superuser_application_role_is_a_deploy_warning():
    assert role_ids(superuser=True) == ["config.W003"]


def test_an_application_role_owning_its_tables_is_a_deploy_warning():
    assert role_ids(tables_owned=12) == ["config.W004"]


@pytest.mark.parametrize("bounds", [("0", "1s"), ("20s", "0")])
def test_an_application_role_without_server_side_bounds_is_a_deploy_warning(bounds):
    assert role_ids(bounds=bounds) == ["config.W005"]


def test_the_role_check_is_a_deploy_database_check():
    checks = registry.get_checks(include_deployment_checks=True)
    assert check_database_role in checks
    assert check_database_role not in registry.get_checks(include_deployment_checks=False)
    assert check_database_role(None) == []  # without --database it connects nowhere


@pytest.mark.django_db
def test_the_role_check_reads_the_connected_role():
    # The test database belongs to the owner (DATABASE_DIRECT_URL); a developer's single
    # role owns every table it migrated.
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        superuser = cursor.fetchone()[0]
    ids = [warning.id for warning in check_database_role(None, databases=["default"])]
    assert ("config.W003" in ids) == superuser
