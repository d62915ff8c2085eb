"""``config.database_url``: one URL, one host or several, into a ``DATABASES`` entry."""

import socket
from urllib.parse import quote

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from config.backends.postgresql.base import DatabaseWrapper
from config.database_url import DEAD_PEER_DETECTION, parse

TIMEOUTS = {"connect_timeout": 5, "query_timeout": 20.0}


def entry(url, **kwargs):
    return parse("DATABASE_URL", url, **TIMEOUTS, **kwargs)


def refusal(url, **kwargs):
    with pytest.raises(ImproperlyConfigured) as error:
        entry(url, **kwargs)
    assert "s3cret" not in str(error.value)
    assert error.value.__cause__ is None
    return str(error.value)


# One host -----------------------------------------------------------------------------------


def test_one_host_keeps_dj_database_urls_parsing():
    config = entry("postgres://app:s3cret@db.example.com:5433/app")
    assert (config["HOST"], config["PORT"], config["NAME"]) == ("db.example.com", 5433, "app")
    assert "target_session_attrs" not in config["OPTIONS"]


def test_one_ipv6_host_in_brackets_is_read_without_them():
    config = entry("postgres://app:s3cret@[2001:db8::1]:5432/app")
    assert (config["HOST"], config["PORT"]) == ("2001:db8::1", 5432)


# Several hosts ------------------------------------------------------------------------------


def test_several_hosts_become_libpqs_host_and_port_lists():
    config = entry("postgres://app:s3cret@db1:5432,db2:5433/app")
    assert (config["HOST"], config["PORT"]) == ("db1,db2", "5432,5433")
    assert (config["USER"], config["PASSWORD"], config["NAME"]) == ("app", "s3cret", "app")


def test_a_host_without_a_port_gets_libpqs_default_port():
    config = entry("postgres://app:s3cret@db1,db2:5433/app")
    assert (config["HOST"], config["PORT"]) == ("db1,db2", ",5433")


def test_hosts_without_any_port_leave_the_port_to_libpq():
    config = entry("postgres://app:s3cret@db1,db2/app")
    assert (config["HOST"], config["PORT"]) == ("db1,db2", "")


def test_ipv6_hosts_in_brackets_are_listed_without_them():
    config = entry("postgresql://app:s3cret@[2001:db8::1]:5432,[::1],db3:6432/app")
    assert (config["HOST"], config["PORT"]) == ("2001:db8::1,::1,db3", "5432,,6432")


def test_percent_encoded_credentials_survive_several_hosts():
    config = entry("postgres://app:p%40ss%2Cw%2Fd@db1,db2/app")
    assert config["PASSWORD"] == "p@ss,w/d"


def test_libpq_parameters_of_a_multi_host_url_are_kept():
    config = entry(
        "postgres://app:s3cret@db1,db2/app"
        "?target_session_attrs=primary&load_balance_hosts=disable&sslmode=verify-full"
    )
    options = config["OPTIONS"]
    assert options["target_session_attrs"] == "primary"
    assert options["load_balance_hosts"] == "disable"
    assert options["sslmode"] == "verify-full"


def test_a_primary_with_several_hosts_connects_only_where_it_can_write():
    config = entry("postgres://app:s3cret@db1,db2/app")
    assert config["OPTIONS"]["target_session_attrs"] == "read-write"


@pytest.mark.parametrize("attrs", ["standby", "prefer-standby", "read-only"])
def test_a_primary_that_could_land_on_a_standby_is_refused(attrs):
    message = refusal(f"postgres://app:s3cret@db1,db2/app?target_session_attrs={attrs}")
    assert message.startswith(f"DATABASE_URL has target_session_attrs='{attrs}', which lets")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "postgres://app:s3cret@db1,,db2/app",
            "DATABASE_URL names 3 hosts, not all valid: expected HOST[:PORT] items",
        ),
        (
            "postgres://app:s3cret@db1:5432,db2:port/app",
            "DATABASE_URL names 2 hosts, not all valid",
        ),
        ("postgres://app:s3cret@db1:5432,db2:70000/app", "DATABASE_URL names 2 hosts, not all"),
        ("postgres://app:s3cret@db1,2001:db8::1/app", "DATABASE_URL names 2 hosts, not all"),
        ("postgres://app:s3cret@db1,db2/", "DATABASE_URL names no database"),
        (
            "postgres://app:s3cret@db1,db2/app?target_session_attrs=writable",
            "DATABASE_URL has target_session_attrs='writable': expected one of any, read-write",
        ),
        (
            "postgres://app:s3cret@db1,db2/app?load_balance_hosts=yes",
            "DATABASE_URL has load_balance_hosts='yes': expected one of disable, random.",
        ),
    ],
    ids=["empty-host", "bad-port", "port-range", "ipv6-unbracketed", "no-name", "attrs", "balance"],
)
def test_a_malformed_multi_host_url_is_refused_by_name(url, message):
    assert refusal(url).startswith(message)


# What libpq is given ------------------------------------------------------------------------


def test_dead_peers_are_detected_by_libpq_keepalives_and_tcp_user_timeout():
    options = entry("postgres://app:s3cret@db/app")["OPTIONS"]
    assert {key: options[key] for key in DEAD_PEER_DETECTION} == DEAD_PEER_DETECTION
    assert options["keepalives_idle"] + 3 * options["keepalives_interval"] <= 20


def test_the_url_overrides_the_dead_peer_detection():
    options = entry("postgres://app:s3cret@db/app?tcp_user_timeout=30000")["OPTIONS"]
    assert int(options["tcp_user_timeout"]) == 30_000


def unused_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once the socket is closed


@pytest.mark.django_db
def test_a_multi_host_url_connects_to_the_first_host_that_answers():
    # The first host refuses connections; libpq goes on to the test database's own server
    # (its Unix socket directory, percent-encoded, or its TCP address).
    connection.ensure_connection()
    info = connection.connection.info
    test_db = quote(info.host, safe="")
    hosts = f"127.0.0.1:{unused_port()},{test_db}:{info.port}"
    several = entry(f"postgres://{hosts}/{connection.settings_dict['NAME']}")
    settings_dict = {**connection.settings_dict, "HOST": several["HOST"], "PORT": several["PORT"]}
    settings_dict["OPTIONS"] = {**connection.settings_dict["OPTIONS"], **several["OPTIONS"]}
    wrapper = DatabaseWrapper(settings_dict, alias="several_hosts")
    try:
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT pg_is_in_recovery(), current_setting('transaction_read_only')")
            assert cursor.fetchone() == (False, "off")
        server = wrapper.connection.info
        assert (server.host, server.port) == (info.host, info.port)
    finally:
        wrapper.close()
