"""A server that stops answering on an open connection fails the query within its bound.

The server is the real test database behind a relay that freezes (``tests/relay.py``).
"""

import time

import pytest
from django.db import OperationalError, connection

from config.postgresql.base import DatabaseWrapper


@pytest.fixture
def through(relay, db):
    """A connection to the test database through the relay, with a 0.5 s query bound."""
    settings_dict = {
        **connection.settings_dict,
        "HOST": "127.0.0.1",
        "PORT": relay.port,
        "QUERY_TIMEOUT": 0.5,
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {**connection.settings_dict["OPTIONS"], "connect_timeout": 1},
    }
    wrapper = DatabaseWrapper(settings_dict, alias="relayed")
    wrapper.ensure_connection()
    yield wrapper
    wrapper.close()


def test_a_query_to_a_frozen_server_fails_within_its_bound(relay, through):
    relay.freeze()
    started = time.monotonic()
    expected = r"'relayed' did not answer within 0.5s"
    with pytest.raises(OperationalError, match=expected), through.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert time.monotonic() - started < 1.0


def test_the_next_query_gets_a_new_connection(relay, through):
    relay.freeze()
    with pytest.raises(OperationalError), through.cursor() as cursor:
        cursor.execute("SELECT 1")
    relay.frozen.clear()
    through.close_if_unusable_or_obsolete()
    with through.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


def test_the_health_check_of_a_frozen_server_fails_within_the_connect_timeout(relay, through):
    relay.freeze()
    started = time.monotonic()
    assert through.is_usable() is False
    assert time.monotonic() - started < 1.5


def test_a_query_that_answers_in_time_is_not_cut(through):
    with through.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(0.2), 1")
        assert cursor.fetchone()[1] == 1
