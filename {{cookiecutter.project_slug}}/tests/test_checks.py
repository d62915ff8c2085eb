"""System checks flag database settings that are unsafe to deploy."""

from django.core.checks.registry import registry

from config.checks import check_database_tls, tls_warnings


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
