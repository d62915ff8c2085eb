"""``config.replicas.databases``: the replica aliases from ``DATABASE_REPLICA_URLS``."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.replicas.databases import databases, replica_urls

LIFETIME = {"CONN_MAX_AGE": 60, "CONN_HEALTH_CHECKS": True, "OPTIONS": {}}
ONE = "postgres://app:s3cret@replica1:5432/app"
TWO = "postgres://app:s3cret@replica2:5432/app"
SEVERAL = "postgres://app:s3cret@db1:5432,db2:5432/app"


def build(environ, value):
    environ(DATABASE_REPLICA_URLS=value)
    return databases(sslmode=None, lifetime=LIFETIME)


@pytest.mark.parametrize("separator", [",", ", ", " ", "\n", ",\n"])
def test_replica_urls_are_separated_by_commas_or_white_space(separator):
    assert replica_urls(f"{ONE}{separator}{TWO}") == [ONE, TWO]


def test_a_comma_between_hosts_belongs_to_its_url():
    assert replica_urls(f"{SEVERAL},{ONE}") == [SEVERAL, ONE]


def test_no_replica_urls_means_no_replicas(environ):
    assert databases(sslmode=None, lifetime=LIFETIME) == {}


def test_each_url_becomes_a_numbered_alias(environ):
    replicas = build(environ, f"{ONE},{TWO}")
    assert [(alias, config["HOST"]) for alias, config in replicas.items()] == [
        ("replica1", "replica1"),
        ("replica2", "replica2"),
    ]


def test_a_replica_url_naming_several_hosts_connects_only_to_a_standby(environ):
    (config,) = build(environ, SEVERAL).values()
    assert (config["HOST"], config["PORT"]) == ("db1,db2", "5432,5432")
    assert config["OPTIONS"]["target_session_attrs"] == "standby"


def test_a_bad_replica_url_is_refused_by_its_position(environ):
    with pytest.raises(ImproperlyConfigured) as error:
        build(environ, f"{ONE} mysql://app:s3cret@replica2/app")
    assert str(error.value).startswith(
        "DATABASE_REPLICA_URLS (item 2) is not a PostgreSQL URL (scheme 'mysql')"
    )
    assert "s3cret" not in str(error.value)


@pytest.mark.parametrize("attrs", ["prefer-standby", "read-only", "any"])
def test_a_replica_url_may_name_its_own_session_attributes(environ, attrs):
    (config,) = build(environ, f"{SEVERAL}?target_session_attrs={attrs}").values()
    assert config["OPTIONS"]["target_session_attrs"] == attrs
