"""Fixtures of the read-replica tests.

The test settings read ``replica1`` as the test database itself, through a connection of its
own (Django's ``TEST["MIRROR"]``): routing is real while the data is the same. That database
is a primary, so here a look at the replica's state is answered as a caught-up standby's
would be. Routing tests run outside pytest-django's per-test transaction (``routed``):
inside it, every read rightly goes to the primary.
"""

import asyncio
import socket

import pytest
from asgiref.sync import sync_to_async
from django.contrib.admin.models import LogEntry
from django.db import connections

from config.replicas import wal
from config.replicas.cooldown import cooldown
from config.replicas.lag import STATE_SQL, PrimaryPositions, ReplicaState, lag
from config.replicas.pinning import begin_unit_of_work, end_unit_of_work
from users.models import User

# The mirror is the test database, a primary: its real state says so.
REAL_STATE_SQL = STATE_SQL
MIRROR_STATE_SQL = "SELECT true, true, pg_current_wal_insert_lsn()::text, 0::float"

routed = pytest.mark.django_db(transaction=True, databases=["default", "replica1"])
uses_views = pytest.mark.urls("tests.replicas.urls")


class Clock:
    """A monotonic clock that moves only when a test moves it: windows and cool-downs are
    passed by :meth:`advance`, never waited for."""

    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch, clock):
    """Each test starts unpinned, as a request does, knowing nothing of the replicas, with
    the replicas' state timed by ``clock``."""
    monkeypatch.setattr("config.replicas.lag.STATE_SQL", MIRROR_STATE_SQL)
    monkeypatch.setattr(lag, "clock", clock)
    monkeypatch.setattr(lag, "_states", {})
    monkeypatch.setattr(lag, "_looking", set())
    monkeypatch.setattr(lag, "primary_positions", PrimaryPositions(clock))
    monkeypatch.setattr(cooldown, "clock", clock)
    monkeypatch.setattr(cooldown, "_until", {})
    tokens = begin_unit_of_work()
    yield
    end_unit_of_work(tokens)


def forget_writes():
    """Start a new unit of work, as the next request would: earlier writes pin nothing."""
    begin_unit_of_work()


def known(alias="replica1", **fields):
    """Make the process know ``alias`` in this state, by a look made now: fresh until the
    test moves the clock past the window."""
    values = {"in_recovery": True, "streaming": True, "position": 100, "lag": 0.0}
    lag._states[alias] = ReplicaState(**(values | fields), seen=lag.clock())


def primary_position():
    with connections["default"].cursor() as cursor:
        cursor.execute(wal.POSITION_SQL)
        return wal.parse(cursor.fetchone()[0])


def read_alias():
    """Read the log entries and return the alias they were read from."""
    entries = LogEntry.objects.all()
    list(entries)
    return entries.db


def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def user():
    return User.objects.create_user("reader")


@pytest.fixture
def replica_behind():
    """replica1 is streaming and within the lag limit, but short of every later write."""
    known(position=primary_position() - 1, lag=0.5)


@pytest.fixture
def asgi_client(async_client):
    """Django's ASGI test client; afterwards it closes the connections its requests opened
    in asgiref's worker thread, so the test database can be dropped."""
    yield async_client
    asyncio.run(sync_to_async(connections.close_all)())
