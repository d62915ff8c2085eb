"""``config.postgresql``: bounded waits and a health check without a round trip.

The server is the real test database behind a relay that freezes (``tests/relay.py``).
"""

import time

import pytest
from django.db import OperationalError, connection, connections

from config.aliases import PRIMARIES
from config.postgresql.base import DatabaseWrapper


@pytest.fixture
def through(relay, db):
    """A connection to the test database through the relay, with a 0.5 s query bound."""
    primary = connections[PRIMARIES[-1]].settings_dict  # what the relay reaches
    settings_dict = {
        **primary,
        "HOST": "127.0.0.1",
        "PORT": relay.port,
        "QUERY_TIMEOUT": 0.5,
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {**primary["OPTIONS"], "connect_timeout": 1},
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


def test_a_fetch_from_a_server_side_cursor_of_a_frozen_server_fails_within_its_bound(
    relay, through
):
    with through.chunked_cursor() as cursor:  # what .iterator() uses
        cursor.execute("SELECT generate_series(1, 10)")
        assert cursor.fetchmany(2) == [(1,), (2,)]
        relay.freeze()
        started = time.monotonic()
        with pytest.raises(OperationalError, match=r"'relayed' did not answer within 0.5s"):
            cursor.fetchmany(2)
    assert time.monotonic() - started < 1.0


def test_a_server_side_cursor_iterates_every_row(through):
    with through.chunked_cursor() as cursor:
        cursor.execute("SELECT generate_series(1, 5)")
        cursor.cursor.itersize = 2
        assert [row for (row,) in cursor] == [1, 2, 3, 4, 5]


def test_the_next_query_gets_a_new_connection(relay, through):
    relay.freeze()
    with pytest.raises(OperationalError), through.cursor() as cursor:
        cursor.execute("SELECT 1")
    relay.frozen.clear()
    through.close_if_unusable_or_obsolete()
    with through.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


def test_the_query_health_check_of_a_frozen_server_fails_in_the_connect_timeout(relay, through):
    through.health_check = "query"
    relay.freeze()
    started = time.monotonic()
    assert through.is_usable() is False
    assert time.monotonic() - started < 1.5


def test_a_query_that_answers_in_time_is_not_cut(through):
    with through.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(0.2), 1")
        assert cursor.fetchone()[1] == 1


# Health checks -------------------------------------------------------------------------


def test_a_quiet_idle_connection_passes_the_health_check_without_a_round_trip(relay, through):
    relay.freeze()  # a round trip would now wait for ever
    started = time.monotonic()
    assert through.is_usable() is True
    assert time.monotonic() - started < 0.05


def terminate(wrapper):
    """End ``wrapper``'s server session from another connection, as an operator would."""
    pid = wrapper.connection.info.backend_pid
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    deadline = time.monotonic() + 5
    while wrapper.idle_and_silent() and time.monotonic() < deadline:
        time.sleep(0.01)  # the FATAL message crosses the relay


def test_a_terminated_session_fails_the_health_check(through):
    terminate(through)
    assert through.is_usable() is False


def test_a_request_after_a_terminated_session_reconnects(through):
    terminate(through)
    through.health_check_done = False
    through.close_if_health_check_failed()
    with through.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


def test_a_connection_inside_a_transaction_gets_the_query_check(through):
    through.set_autocommit(False)
    with through.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert through.idle_and_silent() is False
    assert through.is_usable() is True
    through.rollback()
    through.set_autocommit(True)


# Reads repeated on a new connection ---------------------------------------------------


def test_a_read_whose_session_was_ended_runs_again_on_a_new_connection(through):
    terminate(through)
    with through.cursor() as cursor:  # no health check on the way: the read finds it dead
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


def test_anything_but_a_read_is_not_repeated(through):
    terminate(through)
    with pytest.raises(OperationalError), through.cursor() as cursor:
        cursor.execute("DO $$ BEGIN END $$")


def test_a_read_inside_a_transaction_is_not_repeated(through):
    through.set_autocommit(False)
    with through.cursor() as cursor:
        cursor.execute("SELECT 1")
    terminate(through)
    with pytest.raises(OperationalError), through.cursor() as cursor:
        cursor.execute("SELECT 1")
    through.close()
