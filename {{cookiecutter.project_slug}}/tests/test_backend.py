"""``config.backends.postgresql``: every wait bounded, and nothing sent twice.

The server is the real test database behind a relay that freezes or cuts the link
(``tests/relay.py``).
"""

import resource
import select
import socket
import threading
import time

import pytest
from django.db import (
    DatabaseError,
    OperationalError,
    close_old_connections,
    connection,
    connections,
    transaction,
)
from psycopg import sql

from config import database
from config.aliases import DIRECT
from config.backends.postgresql.base import DatabaseWrapper
from tests.database import app_on_the_primary

BOUND = 0.5  # QUERY_TIMEOUT of the relayed connection, seconds
DATABASE_KEYS = ("NAME", "USER", "PASSWORD", "HOST", "PORT")
SLACK = 1.0  # how late past its bound a wait may end, on a busy machine


@pytest.fixture
def through(relay, db):
    """A connection to the test database through the relay, waits bounded to ``BOUND``."""
    primary = app_on_the_primary()  # what the relay reaches
    settings_dict = {
        **primary,
        "HOST": "127.0.0.1",
        "PORT": relay.port,
        "QUERY_TIMEOUT": BOUND,
        "CONN_MAX_AGE": 60,  # persistent, with health checks, as DATABASE_URL's connections are
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {**primary["OPTIONS"], "connect_timeout": 2},
    }
    wrapper = DatabaseWrapper(settings_dict, alias="relayed")
    wrapper.inc_thread_sharing()  # within() calls it from a thread of its own
    wrapper.ensure_connection()
    yield wrapper
    wrapper.close()


# Tests whose table the schema's owner creates use its connection too.
WITH_OWNER = ["default", DIRECT]


@pytest.fixture
def table():
    """A table of the test database, committed, so that another session can see it.

    Created by the schema's owner: the application's role may only use it.
    """
    with connections[DIRECT].cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS bounded (n int)")
        cursor.execute("TRUNCATE bounded")
    yield "bounded"
    with connections[DIRECT].cursor() as cursor:
        cursor.execute("DROP TABLE bounded")


def rows(table):
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        return cursor.fetchone()[0]


def within(call, *args, limit=BOUND + SLACK):
    """Return ``call(*args)``, failing the test if it has not ended ``limit`` seconds later.

    The call runs in a thread of its own, so a wait that is not bounded fails the test
    instead of hanging it.
    """
    outcome = {}

    def run():
        try:
            outcome["value"] = call(*args)
        except BaseException as error:  # handed to the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        pytest.fail(f"still waiting {limit:g}s later: the wait is not bounded")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def execute(wrapper, query):
    with wrapper.cursor() as cursor:
        cursor.execute(query)


# Bounded waits -------------------------------------------------------------------------


def test_a_query_to_a_frozen_server_fails_within_its_bound(relay, through):
    relay.freeze()
    expected = r"the server did not answer within 0\.5s; the connection was closed"
    with pytest.raises(OperationalError, match=expected):
        within(execute, through, "SELECT 1")


def test_a_fetch_from_a_server_side_cursor_of_a_frozen_server_fails_within_its_bound(
    relay, through
):
    with through.chunked_cursor() as cursor:  # what .iterator() uses
        cursor.execute("SELECT generate_series(1, 10)")
        assert cursor.fetchmany(2) == [(1,), (2,)]
        relay.freeze()
        with pytest.raises(OperationalError, match="did not answer"):
            within(cursor.fetchmany, 2)


@pytest.mark.django_db(transaction=True, databases=WITH_OWNER)
def test_a_commit_to_a_frozen_server_fails_within_its_bound_and_commits_nothing(
    relay, through, table
):
    def write_in_a_transaction():
        connections["relayed"] = through  # in this thread, so that atomic() can name it
        with transaction.atomic(using="relayed"), through.cursor() as cursor:
            cursor.execute("INSERT INTO bounded VALUES (1)")
            relay.freeze()  # the COMMIT at the block's end never reaches the server

    with pytest.raises(OperationalError, match="did not answer"):
        within(write_in_a_transaction)
    relay.close()  # the server session ends, and its transaction with it
    time.sleep(0.2)
    assert rows(table) == 0


def test_a_rollback_on_a_frozen_server_fails_within_its_bound(relay, through):
    through.set_autocommit(False)
    with through.cursor() as cursor:
        cursor.execute("SELECT 1")
    relay.freeze()
    with pytest.raises(OperationalError, match="did not answer"):
        within(through.rollback)


def test_the_connection_that_timed_out_is_closed_and_the_next_request_reconnects(relay, through):
    relay.freeze()
    with pytest.raises(OperationalError):
        within(execute, through, "SELECT 1")
    assert through.connection.closed
    relay.thaw()
    through.close_if_unusable_or_obsolete()  # what Django runs as a request ends
    with through.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


def test_a_query_that_answers_in_time_is_not_cut(through):
    with through.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(0.2), 1")
        assert cursor.fetchone()[1] == 1


def test_no_query_timeout_means_no_bound(relay, db):
    primary = app_on_the_primary()
    settings_dict = {**primary, "HOST": "127.0.0.1", "PORT": relay.port, "QUERY_TIMEOUT": 0}
    wrapper = DatabaseWrapper(settings_dict, alias="unbounded")
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(1.0), 1")
        assert cursor.fetchone()[1] == 1
    wrapper.close()


# A connection the server ended ----------------------------------------------------------


def terminate(wrapper):
    """End ``wrapper``'s server session from another connection, as an operator would."""
    pid = wrapper.connection.info.backend_pid
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    deadline = time.monotonic() + 5
    while wrapper.is_usable() and time.monotonic() < deadline:
        time.sleep(0.01)  # the server's goodbye crosses the relay


def test_a_quiet_idle_connection_is_usable_without_a_round_trip(relay, through):
    relay.freeze()  # a round trip would now wait for its bound
    started = time.monotonic()
    assert through.is_usable() is True
    assert time.monotonic() - started < BOUND / 2  # no round trip, which would wait


def test_a_connection_the_server_ended_is_not_usable(through):
    terminate(through)
    assert through.is_usable() is False


def test_a_request_after_the_server_ended_the_session_runs_on_a_new_connection(through):
    terminate(through)
    through.close_if_unusable_or_obsolete()  # what Django runs as a request starts
    with through.cursor() as cursor:  # checked before the request's first statement is sent
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


def test_a_transaction_whose_session_ended_fails_instead_of_moving(through):
    through.set_autocommit(False)
    with through.cursor() as cursor:
        cursor.execute("SELECT 1")
    terminate(through)
    with pytest.raises(OperationalError), through.cursor() as cursor:
        cursor.execute("SELECT 1")
    through.close()


def test_a_healthy_connection_in_a_transaction_is_usable(through):
    through.set_autocommit(False)
    with through.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert through.is_usable() is True  # what TestCase asks before checking constraints
    through.rollback()
    through.set_autocommit(True)


def test_a_connection_in_a_failed_transaction_is_not_usable(through):
    through.set_autocommit(False)
    with pytest.raises(DatabaseError), through.cursor() as cursor:
        cursor.execute("SELECT 1/0")
    assert through.is_usable() is False
    through.rollback()
    through.set_autocommit(True)


@pytest.mark.django_db(transaction=True, databases=WITH_OWNER)
def test_a_transaction_begun_in_raw_sql_keeps_its_session_across_cursors(through, table):
    with through.cursor() as cursor:
        cursor.execute("BEGIN")
        cursor.execute("INSERT INTO bounded VALUES (1)")
    with through.cursor() as cursor:  # another cursor, in the same transaction
        cursor.execute("INSERT INTO bounded VALUES (2)")
        cursor.execute("COMMIT")
    assert rows(table) == 2


def notify(channel):
    """Send a notification on ``channel`` from a session of its own."""
    with connections[DIRECT].cursor() as cursor:
        cursor.execute(sql.SQL("NOTIFY {}").format(sql.Identifier(channel)))
    connections[DIRECT].close()  # this may run in a thread of its own


@pytest.mark.django_db(transaction=True, databases=WITH_OWNER)
def test_a_notification_on_an_idle_connection_keeps_the_session_and_its_state(through):
    execute(through, "LISTEN orders")
    execute(through, "SET application_name = 'listener'")
    pid = through.connection.info.backend_pid
    notify("orders")
    poller = select.poll()
    poller.register(through.connection.pgconn.socket, select.POLLIN)
    assert poller.poll(5000), "the notification never arrived"
    through.close_if_unusable_or_obsolete()  # a new request: the health check runs
    with through.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid(), current_setting('application_name')")
        assert cursor.fetchone() == (pid, "listener")
    received = list(through.connection.notifies(timeout=0))
    assert [notify.channel for notify in received] == ["orders"]


def test_waiting_for_notifications_with_a_timeout_returns_when_it_passes(through):
    with through.cursor() as cursor:
        cursor.execute("LISTEN quiet")
    started = time.monotonic()
    assert within(lambda: list(through.connection.notifies(timeout=0.2))) == []
    assert 0.2 <= time.monotonic() - started < BOUND
    assert through.is_usable() is True  # the connection is kept


def test_waiting_for_notifications_with_timeout_0_polls_once(relay, through):
    relay.freeze()  # nothing can arrive: only the poll itself may wait
    started = time.monotonic()
    assert list(through.connection.notifies(timeout=0)) == []
    assert time.monotonic() - started < BOUND / 2


@pytest.mark.django_db(transaction=True, databases=WITH_OWNER)
def test_waiting_for_notifications_is_not_cut_by_the_query_bound(through):
    with through.cursor() as cursor:
        cursor.execute("LISTEN late")
    threading.Timer(2 * BOUND, notify, ["late"]).start()
    received = within(lambda: list(through.connection.notifies(stop_after=1)), limit=10)
    assert [notify.channel for notify in received] == ["late"]
    with through.cursor() as cursor:  # and the bound still holds for queries
        cursor.execute("SELECT 1")


def demote(wrapper):
    """Make ``wrapper``'s session refuse writes, as a server demoted to a standby does."""
    with wrapper.cursor() as cursor:
        cursor.execute("SET default_transaction_read_only = on")


def backend_pid(wrapper):
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True, databases=WITH_OWNER)
def test_a_connection_refused_a_write_as_read_only_is_replaced_for_the_next_request(through, table):
    demote(through)
    before = backend_pid(through)
    with pytest.raises(DatabaseError, match="read-only transaction"):
        execute(through, "INSERT INTO bounded VALUES (1)")
    through.close_if_unusable_or_obsolete()  # what Django runs as a request ends
    execute(through, "INSERT INTO bounded VALUES (1)")  # on a new connection, writable
    assert backend_pid(through) != before
    assert rows(table) == 1


@pytest.mark.django_db(transaction=True, databases=WITH_OWNER)
def test_a_pooled_connection_refused_a_write_as_read_only_is_not_handed_out_again(pooled, table):
    demote(pooled)
    with pytest.raises(DatabaseError, match="read-only transaction"):
        execute(pooled, "INSERT INTO bounded VALUES (1)")
    pooled.close_if_unusable_or_obsolete()  # what Django runs at the end of every request
    for _ in range(4):  # every connection the pool holds
        execute(pooled, "INSERT INTO bounded VALUES (1)")
        pooled.close()
    assert rows(table) == 4


@pytest.fixture
def descriptors():
    """Hold 1,100 descriptors open, so the next connection's socket is numbered past 1023."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the descriptor limit ({hard}) is below 1,200")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = [socket.socket() for _ in range(1100)]
    yield
    for sock in held:
        sock.close()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.django_db(transaction=True)
def test_a_query_after_close_old_connections_works_past_descriptor_1023(descriptors):
    connection.close()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert connection.connection.pgconn.socket > 1023
    close_old_connections()  # what Django runs around every request
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


# Nothing is sent twice -------------------------------------------------------------------

PLACE_ORDER = """
    CREATE OR REPLACE FUNCTION place_order() RETURNS int LANGUAGE sql AS $$
        INSERT INTO bounded VALUES (1);
        SELECT 1 FROM pg_sleep(0.6);
    $$
"""


@pytest.mark.django_db(transaction=True, databases=WITH_OWNER)
@pytest.mark.parametrize("query", ["SELECT place_order()", sql.SQL("SELECT place_order()")])
def test_a_side_effecting_select_whose_link_is_cut_runs_once(relay, through, table, query):
    with connections[DIRECT].cursor() as cursor:
        cursor.execute(PLACE_ORDER)
    threading.Timer(0.3, relay.cut).start()
    with pytest.raises(OperationalError):
        execute(through, query)
    # The server finishes the function and commits, its client gone; nothing runs it again.
    deadline = time.monotonic() + 10
    while running("place_order") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rows(table) == 1


def running(text):
    """Return True while a session of the server runs a statement containing ``text``."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE %s "
            "AND pid <> pg_backend_pid()",
            [f"%{text}%"],
        )
        return cursor.fetchone()[0] > 0


@pytest.fixture
def pooled(environ, db):
    """A wrapper configured as ``DATABASE_POOL=true`` configures one, on the test database."""
    environ(DATABASE_URL="postgres:///unused", DATABASE_POOL="true", DATABASE_POOL_MIN_SIZE="2")
    built = database.databases()["default"]  # CONN_MAX_AGE, CONN_HEALTH_CHECKS, OPTIONS
    settings_dict = {**connection.settings_dict, **built}
    primary = app_on_the_primary()  # not through a pooler, whose sessions others share
    settings_dict |= {key: primary[key] for key in DATABASE_KEYS}
    settings_dict["OPTIONS"]["application_name"] = "pooled"
    wrapper = DatabaseWrapper(settings_dict, alias="pooled")
    yield wrapper
    wrapper.close()
    wrapper.close_pool()  # type: ignore[attr-defined]  # (django-stubs 5.2)


@pytest.mark.django_db(transaction=True, databases=WITH_OWNER)
def test_pooled_connections_the_server_ended_are_replaced_before_use(pooled, table):
    for _ in range(3):
        with pooled.cursor() as cursor:  # opens the pool
            cursor.execute("SELECT 1")
        pooled.close()  # back to the pool, as at the end of a request
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'pooled'"
            )
        time.sleep(0.1)
        for _ in range(10):
            with pooled.cursor() as cursor:
                cursor.execute("INSERT INTO bounded VALUES (1)")
            pooled.close()
    assert rows(table) == 30
