"""System checks flag database settings that are unsafe to deploy."""

from config.checks import check_database_tls


def database(host, sslmode=None):
    options = {} if sslmode is None else {"sslmode": sslmode}
    return {"default": {"HOST": host, "OPTIONS": options}}


def warning_ids(settings, databases):
    settings.DATABASES = databases
    return [warning.id for warning in check_database_tls(None)]


def test_unencrypted_remote_database_is_a_deploy_warning(settings):
    assert warning_ids(settings, database("db.example.com", "disable")) == ["config.W001"]


def test_libpq_default_sslmode_is_a_deploy_warning(settings):
    # "prefer" silently falls back to plain text when the server offers no TLS.
    assert warning_ids(settings, database("db.example.com")) == ["config.W001"]


def test_required_tls_passes(settings):
    assert warning_ids(settings, database("db.example.com", "require")) == []
    assert warning_ids(settings, database("db.example.com", "verify-full")) == []


def test_unix_socket_needs_no_tls(settings):
    assert warning_ids(settings, database("")) == []
    assert warning_ids(settings, database("/var/run/postgresql")) == []
