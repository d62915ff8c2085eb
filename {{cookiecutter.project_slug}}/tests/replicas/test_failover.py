"""A read the chosen replica cannot serve runs on the primary, once, and the replica cools down.

Replicas that refuse connections listen on no port; replicas that hang sit behind the
freezable relay (``tests/relay.py``).
"""

import logging
import os
import socket
import time

import pytest
from django.contrib.admin.models import LogEntry
from django.db import close_old_connections, connections, transaction

from config.replicas.lag import WINDOW, lag
from tests.replicas.conftest import (
    REAL_STATE_SQL,
    closed_port,
    forget_writes,
    known,
    read_alias,
    routed,
    uses_views,
)

BOUND = 0.5  # the replica's QUERY_TIMEOUT behind the relay, seconds


@pytest.fixture
def replica_unreachable():
    """Point replica1 at a loopback port nobody listens on; ``undo()`` brings it back."""
    replica = connections["replica1"]
    replica.close()
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(replica.settings_dict, "HOST", "127.0.0.1")
        patch.setitem(replica.settings_dict, "PORT", closed_port())
        yield patch
    replica.close()


@pytest.fixture
def connect_attempts(monkeypatch):
    """Count the connections replica1 tries to open."""
    replica = connections["replica1"]
    attempts = []
    connect = replica.connect

    def counting_connect():
        attempts.append(time.monotonic())
        return connect()

    monkeypatch.setattr(replica, "connect", counting_connect)
    return attempts


@pytest.fixture
def replica_through_relay(relay, monkeypatch):
    """Read replica1 through a freezable relay, with a short query bound."""
    replica = connections["replica1"]
    replica.close()
    monkeypatch.setitem(replica.settings_dict, "HOST", "127.0.0.1")
    monkeypatch.setitem(replica.settings_dict, "PORT", relay.port)
    monkeypatch.setattr(replica, "query_timeout", BOUND)
    yield relay
    replica.close()


def looks(monkeypatch):
    """Record the alias of every look at a replica's state."""
    seen = []
    look = lag.look

    def counting_look(alias, connection):
        seen.append(alias)
        look(alias, connection)

    monkeypatch.setattr(lag, "look", counting_look)
    return seen


# A replica that refuses -----------------------------------------------------------------


@routed
def test_reads_fall_back_to_the_primary_when_the_replica_is_unreachable(replica_unreachable, user):
    LogEntry.objects.create(user=user, action_flag=1)
    forget_writes()
    assert LogEntry.objects.count() == 1  # sent to replica1, read from the primary


@routed
def test_an_unreachable_replica_is_logged_once(replica_unreachable, caplog):
    with caplog.at_level(logging.WARNING, logger="config.replicas"):
        for _ in range(5):
            read_alias()
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1
    assert "'replica1' failed" in messages[0]


@routed
def test_an_unreachable_replica_is_skipped_during_the_cool_down(
    replica_unreachable, connect_attempts, settings
):
    settings.REPLICA_COOLDOWN_SECONDS = 60.0
    read_alias()
    assert [read_alias() for _ in range(4)] == ["default"] * 4
    assert len(connect_attempts) == 1


@routed
def test_a_replica_is_read_again_once_it_answers_after_the_cool_down(
    replica_unreachable, settings, caplog, clock
):
    settings.REPLICA_COOLDOWN_SECONDS = 10.0
    read_alias()
    replica_unreachable.undo()  # the replica is back
    clock.advance(10.0)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="config.replicas"):
        assert read_alias() == "replica1"
        assert read_alias() == "replica1"
    assert [record.getMessage() for record in caplog.records] == [
        "Database replica 'replica1' answers again; reading from it."
    ]


@routed
def test_a_replica_connection_dropped_between_requests_is_replaced():
    replica = connections["replica1"]
    replica.ensure_connection()
    pid = replica.connection.info.backend_pid
    # Cut the connection as a network failure would (works through a pooler too, where
    # the backend pid is the pooler's and pg_terminate_backend() cannot reach it).
    with socket.socket(fileno=os.dup(replica.connection.fileno())) as sock:
        sock.shutdown(socket.SHUT_RDWR)
    close_old_connections()  # the next request
    assert read_alias() == "replica1"
    assert replica.connection.info.backend_pid != pid


@routed
def test_a_first_connection_to_a_replica_found_promoted_reads_from_the_primary(monkeypatch, user):
    monkeypatch.setattr("config.replicas.lag.STATE_SQL", REAL_STATE_SQL)  # the mirror: a primary
    LogEntry.objects.create(user=user, action_flag=1)
    forget_writes()
    in_use = connections["replica1"]
    connections["replica1"] = fresh = connections.create_connection("replica1")  # a new process
    try:
        assert LogEntry.objects.count() == 1
        assert fresh.is_usable() is False  # the next request connects anew
    finally:
        fresh.close()
        connections["replica1"] = in_use


@routed
def test_a_transaction_opened_on_a_replica_keeps_its_statements_there(monkeypatch):
    monkeypatch.setattr("config.replicas.lag.STATE_SQL", REAL_STATE_SQL)  # found promoted
    replica = connections["replica1"]
    with transaction.atomic(using="replica1"), replica.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.cursor.connection is replica.connection  # not moved to the primary's


# A replica that hangs ------------------------------------------------------------------


@routed
@uses_views
def test_a_read_on_a_frozen_replica_is_served_from_the_primary_within_the_bound(
    replica_through_relay, client
):
    assert client.get("/read/").status_code == 200
    replica_through_relay.freeze()
    started = time.monotonic()
    assert client.get("/read/").status_code == 200
    assert time.monotonic() - started < BOUND + 0.5


@routed
@uses_views
def test_a_raw_write_then_a_read_on_a_frozen_replica_writes_once(
    replica_through_relay, client, user
):
    assert client.get("/read/").status_code == 200  # connects to the replica
    replica_through_relay.freeze()
    response = client.get("/raw-write/")
    assert response.status_code == 200
    assert LogEntry.objects.using("default").filter(object_repr="raw").count() == 1


@routed
def test_a_read_on_a_frozen_replica_returns_the_primarys_rows(replica_through_relay, user):
    LogEntry.objects.create(user=user, action_flag=1, object_repr="kept")
    forget_writes()
    read_alias()
    replica_through_relay.freeze()
    assert [entry.object_repr for entry in LogEntry.objects.all()] == ["kept"]


@routed
def test_iterating_rows_of_a_replica_that_freezes_midway_reads_them_all(
    replica_through_relay, user
):
    LogEntry.objects.bulk_create(LogEntry(user=user, action_flag=1) for _ in range(5000))
    forget_writes()
    rows = LogEntry.objects.iterator(chunk_size=100)
    next(rows)
    replica_through_relay.freeze()
    assert 1 + sum(1 for _ in rows) == 5000


@routed
def test_a_frozen_replica_is_skipped_by_the_next_reads(replica_through_relay):
    read_alias()
    replica_through_relay.freeze()
    read_alias()
    started = time.monotonic()
    assert read_alias() == "default"
    assert time.monotonic() - started < BOUND  # skipped, not waited for


# A replica that lags, by a fresh look ------------------------------------------------


@routed
def test_a_replica_found_lagging_when_the_read_runs_serves_it_from_the_primary(monkeypatch):
    monkeypatch.setattr(
        "config.replicas.lag.STATE_SQL",
        "SELECT true, true, pg_current_wal_insert_lsn()::text, 60::float",
    )
    read_alias()  # the router chose replica1 knowing nothing; the look sent the read on
    assert read_alias() == "default"  # the look is remembered: the router skips it now


@pytest.mark.parametrize(
    ("fields", "skipped"),
    [
        ({}, False),
        ({"lag": 9.9}, False),
        ({"lag": 10.1}, True),
        ({"lag": None}, True),
        ({"streaming": False}, True),
        ({"streaming": False, "streamed": 0.0, "lag": 9.9}, False),
        ({"streaming": False, "streamed": 0.0, "lag": 10.1}, True),
        ({"in_recovery": False}, True),
    ],
    ids=[
        "caught-up",
        "under-limit",
        "over-limit",
        "unknown-lag",
        "never-seen-streaming",
        "stopped-streaming-under-limit",
        "stopped-streaming-over-limit",
        "promoted",
    ],
)
@routed
def test_which_replicas_every_client_skips(fields, skipped, settings):
    settings.REPLICA_MAX_LAG_SECONDS = 10.0
    known(**fields)
    assert read_alias() == ("default" if skipped else "replica1")


def state_sql(streaming, lag=0.0):
    """A state query for the mirror (the test database itself) that reports ``streaming``."""
    return f"SELECT true, {streaming}, pg_current_wal_insert_lsn()::text, {lag}::float"


@routed
def test_a_standby_that_stopped_streaming_is_read_while_it_cannot_be_far_behind(
    monkeypatch, settings, clock
):
    # Its primary shut down for a switchover: reads go on while another is promoted.
    settings.REPLICA_MAX_LAG_SECONDS = 5.0
    monkeypatch.setattr("config.replicas.lag.STATE_SQL", state_sql(True, lag=1.0))
    read_alias()  # a look: streaming, 1 s behind
    monkeypatch.setattr("config.replicas.lag.STATE_SQL", state_sql(False))
    clock.advance(2.0)
    read_alias()  # a look: not streaming, at most 1 + 2 s behind
    assert read_alias() == "replica1"
    clock.advance(2.5)
    read_alias()  # a look: at most 1 + 4.5 s behind, past the limit
    assert read_alias() == "default"


@routed
def test_a_standby_never_seen_streaming_is_skipped(monkeypatch):
    monkeypatch.setattr("config.replicas.lag.STATE_SQL", state_sql(False))
    read_alias()
    assert read_alias() == "default"


@routed
def test_a_replica_is_looked_at_once_per_window(monkeypatch):
    seen = looks(monkeypatch)
    for _ in range(20):
        read_alias()
    assert seen == ["replica1"]


@routed
def test_a_replica_is_looked_at_again_after_the_window(monkeypatch, clock):
    seen = looks(monkeypatch)
    read_alias()
    clock.advance(WINDOW)
    read_alias()
    assert seen == ["replica1", "replica1"]


@routed
def test_a_skipped_replica_is_looked_at_again_after_the_window(clock):
    known(lag=60.0)
    assert read_alias() == "default"
    clock.advance(WINDOW)
    assert read_alias() == "replica1"
