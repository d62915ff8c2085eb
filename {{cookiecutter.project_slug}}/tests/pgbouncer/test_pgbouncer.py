"""PgBouncer in transaction pooling mode: what the settings refuse, check and default to."""

import base64
import hashlib
import hmac
import re
from io import StringIO

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.core.management.base import SystemCheckError
from django.db import connections

from config import database
from config.pgbouncer import checks
from config.pgbouncer.userlist import scram_secret, userlist_line

BOUNCER_URL = "postgres://app:s3cret@pgbouncer.example.com:6432/app"
PRIMARY_URL = "postgres://app:s3cret@db.example.com:5432/app"


# Settings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("options=-c%20statement_timeout%3D5s", "DATABASE_URL sets options: startup options"),
        ("assume_role=reporting", "DATABASE_URL sets assume_role: SET ROLE would leak"),
        ("server_side_binding=true", "DATABASE_URL sets server_side_binding: server-side"),
        ("prepare_threshold=5", "DATABASE_URL sets prepare_threshold: prepared statements"),
        ("channel_binding=require", "DATABASE_URL sets channel_binding=require: PgBouncer"),
    ],
    ids=["options", "assume_role", "server_side_binding", "prepare_threshold", "channel_binding"],
)
def test_session_bound_url_option_is_refused(environ, query, message):
    environ(DATABASE_URL=f"{BOUNCER_URL}?{query}", DATABASE_DIRECT_URL=PRIMARY_URL)
    with pytest.raises(ImproperlyConfigured) as error:
        database.databases()
    assert str(error.value).startswith(message)
    assert "s3cret" not in str(error.value)


def test_channel_binding_prefer_is_allowed(environ):
    environ(DATABASE_URL=f"{BOUNCER_URL}?channel_binding=prefer")
    assert database.databases()["default"]["OPTIONS"]["channel_binding"] == "prefer"


def test_pgbouncer_alias_disables_server_side_cursors(environ):
    environ(DATABASE_URL=BOUNCER_URL, DATABASE_DIRECT_URL=PRIMARY_URL)
    assert database.databases()["default"]["DISABLE_SERVER_SIDE_CURSORS"] is True


def test_direct_alias_keeps_server_side_cursors(environ):
    environ(DATABASE_URL=BOUNCER_URL, DATABASE_DIRECT_URL=PRIMARY_URL)
    assert not database.databases()["direct"].get("DISABLE_SERVER_SIDE_CURSORS")


# System checks ------------------------------------------------------------------------


def pooled(**changes):
    return {
        "HOST": "pgbouncer.example.com",
        "PORT": 6432,
        "DISABLE_SERVER_SIDE_CURSORS": True,
        "OPTIONS": {},
        **changes,
    }


DIRECT = {"HOST": "db.example.com", "PORT": 5432, "OPTIONS": {}}


def check_ids(check, **databases):
    return [message.id for message in check(databases)]


def test_transaction_pooling_check_passes_the_generated_settings():
    assert check_ids(checks.transaction_pooling_errors, default=pooled()) == []


def test_server_side_cursors_through_pgbouncer_are_an_error():
    config = pooled(DISABLE_SERVER_SIDE_CURSORS=False)
    ids = check_ids(checks.transaction_pooling_errors, default=config)
    assert ids == ["pgbouncer.E001"]


@pytest.mark.parametrize(
    "options",
    [
        {"options": "-c statement_timeout=5s"},
        {"assume_role": "reporting"},
        {"server_side_binding": True},
        {"prepare_threshold": 5},
        {"channel_binding": "require"},
    ],
    ids=["options", "assume_role", "server_side_binding", "prepare_threshold", "channel_binding"],
)
def test_session_bound_option_through_pgbouncer_is_an_error(options):
    config = pooled(OPTIONS=options)
    ids = check_ids(checks.transaction_pooling_errors, default=config)
    assert ids == ["pgbouncer.E002"]


def test_transaction_pooling_check_runs_with_manage_py_check(monkeypatch):
    monkeypatch.setitem(settings.DATABASES["default"], "OPTIONS", {"assume_role": "x"})
    with pytest.raises(SystemCheckError, match=r"pgbouncer\.E002"):
        call_command("check")


def test_direct_url_on_another_server_passes_the_deploy_check():
    ids = check_ids(checks.direct_database_warnings, default=pooled(), direct=DIRECT)
    assert ids == []


def test_direct_url_missing_is_a_deploy_warning():
    # DATABASE_DIRECT_URL unset: "direct" is a copy of DATABASE_URL, i.e. PgBouncer.
    ids = check_ids(checks.direct_database_warnings, default=pooled(), direct=pooled())
    assert ids == ["pgbouncer.W001"]


def test_direct_alias_missing_is_a_deploy_warning():
    assert check_ids(checks.direct_database_warnings, default=pooled()) == ["pgbouncer.W001"]


def test_direct_url_check_is_deploy_only():
    from django.core.checks import registry

    assert checks.check_direct_database in registry.registry.get_checks(True)
    assert checks.check_direct_database not in registry.registry.get_checks(False)


# userlist.txt -------------------------------------------------------------------------


on_primary = pytest.mark.django_db(databases=["default", "direct"])


@pytest.fixture
def pgconn():
    connection = connections["direct"]
    connection.ensure_connection()
    return connection.connection.pgconn


@on_primary
def test_scram_secret_has_postgresqls_format(pgconn):
    secret = scram_secret(pgconn, "shop", "s3cret")
    mechanism, rest = secret.split("$", 1)
    iterations_and_salt, keys = rest.split("$")
    iterations, salt = iterations_and_salt.split(":")
    stored_key, server_key = keys.split(":")
    assert mechanism == "SCRAM-SHA-256"
    assert int(iterations) >= 4096
    assert len(base64.b64decode(salt)) == 16
    assert len(base64.b64decode(stored_key)) == len(base64.b64decode(server_key)) == 32


@on_primary
def test_scram_secret_gets_a_fresh_salt_each_time(pgconn):
    assert scram_secret(pgconn, "shop", "s3cret") != scram_secret(pgconn, "shop", "s3cret")


@on_primary
def test_scram_secret_keys_derive_from_the_password(pgconn):
    # RFC 5802: SaltedPassword = PBKDF2-SHA-256(password, salt, i), keys are HMACs of it.
    secret = scram_secret(pgconn, "shop", "s3cret")
    iterations, salt, stored_key, server_key = re.split(r"[$:]", secret)[1:]
    salted = hashlib.pbkdf2_hmac("sha256", b"s3cret", base64.b64decode(salt), int(iterations))
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    assert base64.b64decode(stored_key) == hashlib.sha256(client_key).digest()
    assert base64.b64decode(server_key) == hmac.digest(salted, b"Server Key", "sha256")


def test_userlist_line_quotes_both_fields():
    assert userlist_line('we"ird', "SCRAM") == '"we""ird" "SCRAM"'


@pytest.fixture
def shop_role(monkeypatch):
    """DATABASE_URL names role "shop" with password "s3cret"."""
    monkeypatch.setitem(settings.DATABASES["default"], "USER", "shop")
    monkeypatch.setitem(settings.DATABASES["default"], "PASSWORD", "s3cret")


@on_primary
def test_pgbouncer_userlist_prints_the_database_url_role(shop_role):
    out, err = StringIO(), StringIO()
    call_command("pgbouncer_userlist", stdout=out, stderr=err)
    assert out.getvalue().startswith('"shop" "SCRAM-SHA-256$4096:')
    assert "s3cret" not in out.getvalue()


@on_primary
def test_pgbouncer_userlist_says_the_role_must_store_the_same_secret(shop_role):
    err = StringIO()
    call_command("pgbouncer_userlist", stdout=StringIO(), stderr=err)
    assert "--set-role-password" in err.getvalue()


@on_primary
def test_pgbouncer_userlist_writes_a_file_only_its_owner_reads(shop_role, tmp_path):
    output = tmp_path / "userlist.txt"
    call_command("pgbouncer_userlist", output=str(output), stderr=StringIO())
    assert output.read_text().startswith('"shop" "SCRAM-SHA-256$')
    assert output.stat().st_mode & 0o777 == 0o600


def test_pgbouncer_userlist_needs_a_password(monkeypatch):
    monkeypatch.setitem(settings.DATABASES["default"], "USER", "shop")
    monkeypatch.setitem(settings.DATABASES["default"], "PASSWORD", "")
    with pytest.raises(CommandError, match=r"^DATABASE_URL names no user and password"):
        call_command("pgbouncer_userlist")
