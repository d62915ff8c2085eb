"""``config.replicas``: reads on replicas, everything else on the primary.

The test settings read ``replica1`` as the test database itself through a second
connection, so the routing decisions are real while the data is the same. Routing tests
run outside pytest-django's per-test transaction (``transaction=True``): inside it, every
read rightly goes to the primary.
"""

import asyncio
import logging
import os
import socket
import threading
import time

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.models import Session
from django.core import signing
from django.db import connections, router, transaction
from django.db.backends.signals import connection_created
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import path

from config.readiness import readiness
from config.replicas import checks, use_primary
from config.replicas.databases import mirror_default
from config.replicas.health import health
from config.replicas.lag import (
    PrimaryPositions,
    ReplicaState,
    lag,
    parse_position,
    primary_positions,
    written_position,
)
from config.replicas.middleware import PIN_COOKIE, PIN_SALT, ReadYourWritesMiddleware
from config.replicas.pinning import begin_unit_of_work, end_unit_of_work, mark_written, pinned
from config.replicas.router import PrimaryReplicaRouter
from users.models import User

PRIMARIES = [alias for alias in ("default", "direct") if alias in connections]
routed = pytest.mark.django_db(transaction=True, databases=["default", "replica1"])


@pytest.fixture(autouse=True)
def fresh_state():
    """Each test starts unpinned, as a request does, with every replica presumed up."""
    health.reset()
    lag.reset()
    primary_positions.reset()
    tokens = begin_unit_of_work()
    yield
    end_unit_of_work(tokens)
    health.reset()
    lag.reset()
    primary_positions.reset()


def forget_writes():
    """Start a new unit of work, as the next request would: earlier writes pin nothing."""
    begin_unit_of_work()


@pytest.fixture
def user():
    return User.objects.create_user("reader")


def log_entry(user, text="entry"):
    return LogEntry.objects.create(user=user, action_flag=1, object_repr=text)


# --------------------------------------------------------------------------- views


def read_view(request):
    """Report where a plain read of a non-auth model goes."""
    entries = LogEntry.objects.all()
    len(entries)
    return JsonResponse({"db": entries.db})


def write_view(request):
    """Write on a GET, so only the write (not the method) can set the pin cookie."""
    LogEntry.objects.create(
        user=User.objects.get(username="reader"), action_flag=1, object_repr="x"
    )
    return HttpResponse("written")


def session_view(request):
    request.session["seen"] = True
    return HttpResponse("saved")


urlpatterns = [
    path("read/", read_view),
    path("write/", write_view),
    path("session/", session_view),
]
uses_views = pytest.mark.urls(__name__)


def read_db(client, **extra):
    return client.get("/read/", **extra).json()["db"]


# --------------------------------------------------------------------------- routing


@routed
def test_plain_reads_go_to_the_replica():
    assert LogEntry.objects.all().db == "replica1"


@routed
def test_a_read_really_runs_on_the_replica_connection(user):
    list(LogEntry.objects.all())  # the first read also looks at the replica's lag
    with CaptureQueriesContext(connections["replica1"]) as replica_queries:
        assert list(LogEntry.objects.all()) == []
    assert len(replica_queries) == 1


@routed
def test_writes_go_to_the_primary(user):
    with CaptureQueriesContext(connections["default"]) as primary_queries:
        log_entry(user)
    assert any(query["sql"].startswith("INSERT") for query in primary_queries)


@routed
def test_an_instance_read_from_the_replica_is_saved_to_the_primary(user):
    entry = log_entry(user)
    forget_writes()
    loaded = LogEntry.objects.using("replica1").get(pk=entry.pk)
    assert router.db_for_write(LogEntry, instance=loaded) == "default"


@routed
def test_select_for_update_goes_to_the_primary():
    assert LogEntry.objects.select_for_update().db == "default"


@routed
@pytest.mark.parametrize("method", ["get_or_create", "update_or_create"])
def test_get_or_create_and_update_or_create_go_to_the_primary(user, method):
    with CaptureQueriesContext(connections["replica1"]) as replica_queries:
        getattr(LogEntry.objects, method)(user=user, action_flag=1, object_repr="once")
    assert len(replica_queries) == 0


@routed
def test_reads_inside_atomic_go_to_the_primary():
    with transaction.atomic():
        assert LogEntry.objects.all().db == "default"


@routed
def test_reads_after_atomic_go_to_the_replica_again():
    with transaction.atomic():
        pass
    assert LogEntry.objects.all().db == "replica1"


@routed
def test_a_row_created_inside_atomic_is_read_back_inside_it(user):
    with transaction.atomic():
        entry = log_entry(user)
        assert LogEntry.objects.get(pk=entry.pk) == entry


@routed
def test_checking_for_atomic_does_not_connect_to_the_primary():
    connections["default"].close()
    assert LogEntry.objects.all().db == "replica1"
    assert connections["default"].connection is None


@routed
def test_a_write_sends_the_later_reads_of_the_context_to_the_primary(user):
    log_entry(user)
    assert LogEntry.objects.all().db == "default"


@routed
def test_a_write_inside_use_primary_still_pins_after_the_block(user):
    with use_primary():
        log_entry(user)
    assert LogEntry.objects.all().db == "default"


@routed
@pytest.mark.parametrize("model", [Session, User, Group, Permission, ContentType])
def test_models_that_keep_users_logged_in_are_read_from_the_primary(model):
    assert model.objects.all().db == "default"


@routed
def test_writing_a_session_does_not_pin_the_context():
    assert router.db_for_write(Session) == "default"
    assert not pinned()


def test_without_replicas_reads_go_to_the_primary(monkeypatch):
    only_primary = {"default": connections.settings["default"]}
    monkeypatch.setattr("django.conf.settings.DATABASES", only_primary)
    assert PrimaryReplicaRouter().db_for_read(LogEntry) == "default"


@pytest.mark.parametrize("alias", PRIMARIES)
def test_migrations_run_on_the_primary(alias):
    assert router.allow_migrate(alias, "admin") is True


def test_migrations_do_not_run_on_a_replica():
    assert router.allow_migrate("replica1", "admin") is False


def test_relations_between_primary_and_replica_rows_are_allowed():
    on_primary, on_replica = LogEntry(), LogEntry()
    on_primary._state.db, on_replica._state.db = "default", "replica1"
    assert router.allow_relation(on_primary, on_replica) is True


def test_relations_with_an_unknown_database_are_left_to_django():
    ours, theirs = LogEntry(), LogEntry()
    ours._state.db, theirs._state.db = "default", "elsewhere"
    assert PrimaryReplicaRouter().allow_relation(ours, theirs) is None


# --------------------------------------------------------------------------- use_primary


@routed
def test_use_primary_sends_reads_to_the_primary():
    with use_primary():
        assert LogEntry.objects.all().db == "default"
    assert LogEntry.objects.all().db == "replica1"


def test_leaving_a_nested_use_primary_keeps_the_outer_one():
    with use_primary():
        with use_primary():
            pass
        assert pinned()
    assert not pinned()


def test_use_primary_restores_the_state_when_the_block_raises():
    with pytest.raises(ValueError), use_primary():
        raise ValueError
    assert not pinned()


@pytest.mark.parametrize("decorator", [use_primary, use_primary()], ids=["bare", "called"])
def test_use_primary_decorates_a_function(decorator):
    @decorator
    def inside():
        return pinned()

    assert inside() is True
    assert not pinned()


def test_use_primary_decorates_a_coroutine_function():
    @use_primary
    async def inside():
        return pinned()

    assert asyncio.run(inside()) is True
    assert not pinned()


def test_use_primary_works_as_an_async_context_manager():
    async def inside():
        async with use_primary():
            return pinned()

    assert asyncio.run(inside()) is True


# --------------------------------------------------------------------------- isolation


def test_a_pin_in_one_asyncio_task_is_invisible_to_another():
    async def main():
        entered, checked = asyncio.Event(), asyncio.Event()

        async def pinned_task():
            with use_primary():
                mark_written()
                entered.set()
                await checked.wait()

        async def other_task():
            await entered.wait()
            try:
                return pinned()
            finally:
                checked.set()

        _, other_saw = await asyncio.gather(pinned_task(), other_task())
        return other_saw

    assert asyncio.run(main()) is False


def test_a_pin_in_one_thread_is_invisible_to_another():
    entered, checked = threading.Event(), threading.Event()
    seen = []

    def pinned_thread():
        with use_primary():
            mark_written()
            entered.set()
            checked.wait(5)

    def other_thread():
        entered.wait(5)
        seen.append(pinned())
        checked.set()

    threads = [threading.Thread(target=pinned_thread), threading.Thread(target=other_thread)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert seen == [False]


# --------------------------------------------------------------------------- middleware


@routed
@uses_views
def test_a_read_only_request_sets_no_pin_cookie(client):
    response = client.get("/read/")
    assert PIN_COOKIE not in response.cookies


@routed
@uses_views
def test_a_read_only_request_never_connects_to_the_primary(client):
    opened = []

    def record(sender, connection, **kwargs):
        opened.append(connection.alias)

    connections["default"].close()
    connection_created.connect(record)
    try:
        assert read_db(client) == "replica1"
    finally:
        connection_created.disconnect(record)
    assert "default" not in opened


@routed
@uses_views
def test_a_request_that_wrote_sets_the_pin_cookie(client, user):
    response = client.get("/write/")
    assert PIN_COOKIE in response.cookies


@routed
@uses_views
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_an_unsafe_method_without_a_write_sets_no_pin_cookie(client, method):
    response = getattr(client, method)("/read/")
    assert PIN_COOKIE not in response.cookies


@routed
@uses_views
def test_an_unsafe_method_reads_from_the_replica_until_it_writes(client):
    assert client.post("/read/").json()["db"] == "replica1"


@routed
@uses_views
def test_a_post_that_404s_sets_no_pin_cookie(client):
    response = client.post("/nowhere/")
    assert response.status_code == 404
    assert PIN_COOKIE not in response.cookies


@routed
@uses_views
def test_a_post_that_fails_csrf_sets_no_pin_cookie(user):
    client = Client(enforce_csrf_checks=True)
    response = client.post("/write/")
    assert response.status_code == 403
    assert PIN_COOKIE not in response.cookies


@routed
@uses_views
def test_saving_the_session_sets_no_pin_cookie(client):
    response = client.get("/session/")
    assert "sessionid" in response.cookies
    assert PIN_COOKIE not in response.cookies


@pytest.fixture
def asgi_client(async_client):
    """Django's ASGI test client; afterwards it closes the connections its requests opened
    in asgiref's worker thread, so the test database can be dropped."""
    yield async_client
    asyncio.run(sync_to_async(connections.close_all)())


@routed
@uses_views
def test_under_asgi_a_request_that_wrote_sets_the_pin_cookie(asgi_client, user):
    response = asyncio.run(asgi_client.get("/write/"))
    assert PIN_COOKIE in response.cookies


@routed
@uses_views
def test_under_asgi_a_pinned_client_reads_from_the_primary(asgi_client, user, replica_behind):
    async def write_then_read():
        await asgi_client.get("/write/")
        return (await asgi_client.get("/read/")).json()["db"]

    assert asyncio.run(write_then_read()) == "default"


@routed
@uses_views
def test_under_asgi_a_client_that_never_wrote_reads_from_the_replica(asgi_client):
    response = asyncio.run(asgi_client.get("/read/"))
    assert response.json()["db"] == "replica1"
    assert PIN_COOKIE not in response.cookies


@routed
@uses_views
def test_the_pin_cookie_is_signed_http_only_lax_and_short_lived(client, user, settings):
    settings.REPLICA_PIN_SECONDS = 5.0
    cookie = client.get("/write/").cookies[PIN_COOKIE]
    assert cookie.value != "1"  # the value carries a signature
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["max-age"] == 5
    assert not cookie["secure"]


@routed
@uses_views
def test_the_pin_cookie_is_secure_when_the_session_cookie_is(client, user, settings):
    settings.SESSION_COOKIE_SECURE = True
    cookie = client.get("/write/").cookies[PIN_COOKIE]
    assert cookie["secure"] is True


@pytest.fixture
def replica_behind():
    """replica1 is streaming and within the lag limit, but short of every later write."""
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_insert_lsn()::text")
        position = parse_position(cursor.fetchone()[0])
    seen = time.monotonic() + 3600  # no fresh look during the test
    lag.record("replica1", ReplicaState(True, True, position - 1, 0.5, seen))


@routed
@uses_views
def test_a_client_with_a_pin_cookie_reads_from_the_primary_until_the_replica_replays_it(
    client, user, replica_behind
):
    client.get("/write/")
    assert read_db(client) == "default"


@routed
@uses_views
def test_a_pinned_client_reads_from_the_replica_once_it_has_replayed_the_write(client, user):
    client.get("/write/")
    lag.reset()  # the next look sees the test database itself, which has every write
    assert read_db(client) == "replica1"


@routed
@uses_views
def test_other_clients_still_read_from_a_replica_behind_a_write(client, user, replica_behind):
    client.get("/write/")
    client.cookies.clear()
    assert read_db(client) == "replica1"


@routed
@uses_views
def test_the_pin_cookie_carries_the_primarys_wal_position(client, user):
    cookie = client.get("/write/").cookies[PIN_COOKIE]
    request = RequestFactory().get("/", HTTP_COOKIE=f"{PIN_COOKIE}={cookie.value}")
    value = request.get_signed_cookie(PIN_COOKIE, salt=PIN_SALT)
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_insert_lsn()::text")
        now = parse_position(cursor.fetchone()[0])
    assert 0 < parse_position(value) <= now


@routed
@uses_views
def test_a_client_without_the_pin_cookie_reads_from_the_replica(client, user):
    client.get("/write/")
    client.cookies.clear()
    assert read_db(client) == "replica1"


@routed
@uses_views
@pytest.mark.parametrize(
    "value",
    [
        "1",
        signing.get_cookie_signer(salt="another-salt").sign("1"),
        signing.Signer(key="not-the-secret-key", salt="x").sign("1"),
    ],
    ids=["unsigned", "wrong-salt", "wrong-key"],
)
def test_a_forged_pin_cookie_pins_nothing(client, value):
    client.cookies[PIN_COOKIE] = value
    assert read_db(client) == "replica1"


@routed
@uses_views
def test_an_expired_pin_cookie_pins_nothing(client, settings, monkeypatch):
    settings.REPLICA_PIN_SECONDS = 5.0
    long_ago = signing.b62_encode(int(time.time()) - 60)
    with monkeypatch.context() as patch:
        patch.setattr(signing.TimestampSigner, "timestamp", lambda self: long_ago)
        response = HttpResponse()
        response.set_signed_cookie(PIN_COOKIE, "1", salt=PIN_SALT)
    client.cookies[PIN_COOKIE] = response.cookies[PIN_COOKIE].value
    assert read_db(client) == "replica1"


@routed
@uses_views
def test_the_pin_ends_with_the_request(client, user):
    client.get("/write/")
    assert not pinned()


@routed
def test_the_middleware_pins_in_async_mode_too():
    async def view(request):
        mark_written()
        return HttpResponse()

    middleware = ReadYourWritesMiddleware(view)
    response = asyncio.run(middleware(RequestFactory().get("/")))
    assert PIN_COOKIE in response.cookies


# --------------------------------------------------------------------------- failover


def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def replica_unreachable(monkeypatch):
    """Point replica1 at a loopback port nobody listens on; undo it afterwards."""
    replica = connections["replica1"]
    replica.close()
    monkeypatch.setitem(replica.settings_dict, "HOST", "127.0.0.1")
    monkeypatch.setitem(replica.settings_dict, "PORT", closed_port())
    yield monkeypatch
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


@routed
def test_reads_fall_back_to_the_primary_when_the_replica_is_unreachable(replica_unreachable, user):
    log_entry(user)
    forget_writes()
    entries = LogEntry.objects.all()
    assert len(entries) == 1
    assert entries.db == "default"


@routed
def test_an_unreachable_replica_is_logged_once(replica_unreachable, caplog):
    with caplog.at_level(logging.WARNING, logger="config.replicas"):
        for _ in range(5):
            list(LogEntry.objects.all())
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1
    assert "'replica1' is unreachable" in messages[0]


@routed
def test_an_unreachable_replica_is_not_retried_during_the_cool_down(
    replica_unreachable, connect_attempts, settings
):
    settings.REPLICA_COOLDOWN_SECONDS = 60.0
    for _ in range(5):
        list(LogEntry.objects.all())
    assert len(connect_attempts) == 1


@routed
def test_a_replica_is_read_again_once_it_answers_after_the_cool_down(
    replica_unreachable, settings, caplog
):
    settings.REPLICA_COOLDOWN_SECONDS = 0.05
    assert LogEntry.objects.all().db == "default"
    replica_unreachable.undo()  # the replica is back
    time.sleep(0.1)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="config.replicas"):
        assert LogEntry.objects.all().db == "replica1"
        assert LogEntry.objects.all().db == "replica1"
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
    replica.close_if_unusable_or_obsolete()  # what Django does when a request starts
    assert len(LogEntry.objects.all()) == 0
    assert LogEntry.objects.all().db == "replica1"
    assert replica.connection.info.backend_pid != pid


# System checks and test settings ------------------------------------------------------

SESSIONS = "django.contrib.sessions.middleware.SessionMiddleware"


def wiring_ids(routers, middleware):
    return [error.id for error in checks.wiring_errors(routers, middleware)]


def test_the_generated_wiring_passes_the_checks():
    assert wiring_ids(settings.DATABASE_ROUTERS, settings.MIDDLEWARE) == []


def test_an_app_without_its_router_is_an_error():
    assert wiring_ids([], [checks.MIDDLEWARE, SESSIONS]) == ["replicas.E001"]


def test_the_router_without_its_middleware_is_an_error():
    assert wiring_ids([checks.ROUTER], [SESSIONS]) == ["replicas.E002"]


def test_the_middleware_after_session_middleware_is_an_error():
    assert wiring_ids([checks.ROUTER], [SESSIONS, checks.MIDDLEWARE]) == ["replicas.E003"]


def test_atomic_requests_on_the_primary_is_a_warning():
    warnings = checks.atomic_requests_warnings({"default": {"ATOMIC_REQUESTS": True}})
    assert [warning.id for warning in warnings] == ["replicas.W001"]


def test_atomic_requests_off_passes():
    assert checks.atomic_requests_warnings({"default": {"ATOMIC_REQUESTS": False}}) == []


def test_the_test_settings_read_replica1_from_the_test_database_itself():
    real = {"default": {"HOST": "db"}, "replica1": {"HOST": "replica"}, "replica2": {}}
    mirrored = mirror_default(real)
    assert set(mirrored) == {"default", "replica1"}
    assert mirrored["replica1"] == {"HOST": "db", "TEST": {"MIRROR": "default"}}


# A replica that stops answering mid-request ------------------------------------------


@pytest.fixture
def replica_through_relay(relay, monkeypatch):
    """Read replica1 through a freezable relay, with a 0.5 s query bound."""
    replica = connections["replica1"]
    replica.close()
    monkeypatch.setitem(replica.settings_dict, "HOST", "127.0.0.1")
    monkeypatch.setitem(replica.settings_dict, "PORT", relay.port)
    monkeypatch.setattr(replica, "query_timeout", 0.5)
    yield relay
    replica.close()


@routed
@uses_views
def test_a_read_on_a_frozen_replica_is_served_again_from_the_primary(replica_through_relay, client):
    assert read_db(client) == "replica1"
    replica_through_relay.freeze()
    started = time.monotonic()
    response = client.get("/read/")
    assert response.status_code == 200
    assert response.json()["db"] == "default"
    assert time.monotonic() - started < 1.5


@routed
@uses_views
def test_a_frozen_replica_is_skipped_by_the_next_requests(replica_through_relay, client):
    read_db(client)
    replica_through_relay.freeze()
    client.get("/read/")
    started = time.monotonic()
    assert read_db(client) == "default"
    assert time.monotonic() - started < 0.5


def test_a_short_pin_next_to_a_long_lag_limit_is_an_error():
    assert [e.id for e in checks.pin_lifetime_errors(5.0, 10.0)] == ["replicas.E004"]


def test_a_pin_outliving_the_lag_limit_passes():
    assert checks.pin_lifetime_errors(30.0, 10.0) == []


def test_no_pin_at_all_passes():
    assert checks.pin_lifetime_errors(0.0, 10.0) == []


# Lag -----------------------------------------------------------------------------------


def state(**changes):
    fields = {"in_recovery": True, "streaming": True, "position": 100, "lag": 0.0}
    return ReplicaState(**{**fields, **changes, "seen": time.monotonic() + 3600})


@pytest.mark.parametrize(
    ("changes", "skipped"),
    [
        ({}, False),
        ({"lag": 9.9}, False),
        ({"lag": 10.1}, True),
        ({"lag": None}, True),
        ({"streaming": False}, True),
        ({"in_recovery": False}, True),
    ],
    ids=["caught-up", "under-limit", "over-limit", "unknown-lag", "not-streaming", "promoted"],
)
@routed
def test_which_replicas_every_client_skips(changes, skipped, settings):
    settings.REPLICA_MAX_LAG_SECONDS = 10.0
    lag.record("replica1", state(**changes))
    entries = LogEntry.objects.all()
    list(entries)
    assert entries.db == ("default" if skipped else "replica1")


@routed
def test_a_skipped_replica_is_read_again_once_it_catches_up():
    lag.record("replica1", state(lag=60.0))
    skipped = LogEntry.objects.all()
    list(skipped)
    assert skipped.db == "default"
    lag.record("replica1", state(lag=0.0))
    entries = LogEntry.objects.all()
    list(entries)
    assert entries.db == "replica1"


def counted_looks(monkeypatch):
    """Record the alias of every look at a replica's state."""
    looks = []
    look = lag.look

    def counting_look(alias, connection):
        looks.append(alias)
        look(alias, connection)

    monkeypatch.setattr(lag, "look", counting_look)
    return looks


@routed
def test_a_replica_is_looked_at_once_per_window(monkeypatch):
    looks = counted_looks(monkeypatch)
    for _ in range(20):
        list(LogEntry.objects.all())
    assert looks == ["replica1"]


@routed
def test_a_replica_is_looked_at_again_after_the_window(monkeypatch):
    looks = counted_looks(monkeypatch)
    monkeypatch.setattr("config.replicas.lag.WINDOW", 0.05)
    list(LogEntry.objects.all())
    time.sleep(0.1)
    list(LogEntry.objects.all())
    assert looks == ["replica1", "replica1"]


def test_wal_positions_compare_as_numbers():
    assert parse_position("16/B374D848") == (0x16 << 32) + 0xB374D848
    assert parse_position("1/0") > parse_position("0/FFFFFFFF")


@pytest.mark.parametrize(
    ("insert", "written"),
    [(5 * 8192 + 24, 5 * 8192), (3 * 2**24 + 40, 3 * 2**24), (5 * 8192 + 96, 5 * 8192 + 96)],
    ids=["past-a-page-header", "past-a-segment-header", "mid-page"],
)
def test_an_insert_position_past_a_page_header_is_the_page_start(insert, written):
    assert written_position(insert) == written
    assert written_position(None) is None


def test_a_replica_short_of_a_learnt_position_lags_since_it_was_learnt():
    positions = PrimaryPositions()
    positions.learn(200, now=100.0)
    positions.learn(300, now=103.0)
    assert positions.lag(100, now=105.0) == 5.0
    assert positions.lag(200, now=105.0) == 2.0
    assert positions.lag(300, now=105.0) == 0.0


def test_positions_learnt_close_together_are_dated_by_the_first():
    positions = PrimaryPositions()
    positions.learn(200, now=100.0)
    positions.learn(300, now=100.05)
    assert positions.lag(250, now=101.0) == 1.0


def test_a_position_learnt_again_keeps_its_first_date():
    positions = PrimaryPositions()
    positions.learn(200, now=100.0)
    positions.learn(200, now=104.0)
    positions.learn(150, now=104.0)
    assert positions.lag(100, now=105.0) == 5.0


@routed
def test_a_replica_that_has_not_replayed_a_write_learnt_long_ago_is_skipped(settings):
    # Cut off from its primary, a replica replays all it received and reports no lag.
    settings.REPLICA_MAX_LAG_SECONDS = 1.0
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_insert_lsn()::text")
        now = parse_position(cursor.fetchone()[0])
    primary_positions.learn(now + 2**20, now=time.monotonic() - 5)
    entries = LogEntry.objects.all()
    list(entries)
    assert entries.db == "default"


@routed
@uses_views
def test_a_write_teaches_the_process_the_primarys_position(client, user):
    cookie = client.get("/write/").cookies[PIN_COOKIE]
    request = RequestFactory().get("/", HTTP_COOKIE=f"{PIN_COOKIE}={cookie.value}")
    position = parse_position(request.get_signed_cookie(PIN_COOKIE, salt=PIN_SALT))
    assert primary_positions.lag(position - 1) > 0
    assert primary_positions.lag(position) == 0


# Streaming responses ------------------------------------------------------------------


def write_then_stream(request):
    LogEntry.objects.create(user=User.objects.get(username="reader"), action_flag=1)

    def body():
        entries = LogEntry.objects.all()
        len(entries)
        yield entries.db

    return StreamingHttpResponse(body())


async def async_write_then_stream(request):
    await LogEntry.objects.acreate(user=await User.objects.aget(username="reader"), action_flag=1)

    async def body():
        entries = LogEntry.objects.all()
        await entries.acount()
        yield entries.db

    return StreamingHttpResponse(body())


urlpatterns += [
    path("stream/", write_then_stream),
    path("astream/", async_write_then_stream),
]


@routed
@uses_views
def test_a_streamed_body_reads_where_the_request_that_made_it_would(client, user):
    response = client.get("/stream/")
    assert b"".join(response.streaming_content) == b"default"


@routed
@uses_views
def test_under_asgi_a_streamed_body_reads_where_its_request_would(asgi_client, user):
    async def stream():
        response = await asgi_client.get("/astream/")
        return b"".join([chunk async for chunk in response.streaming_content])

    assert asyncio.run(stream()) == b"default"


# /readyz/ --------------------------------------------------------------------------------


@pytest.mark.django_db(databases=["default", "replica1"])
def test_readyz_reports_each_replicas_lag_and_whether_it_is_skipped(client):
    readiness.forget()
    body = client.get("/readyz/").json()["databases"]["replica1"]
    assert body["ok"] is True
    assert body["lag_seconds"] == 0
    assert body["streaming"] is True
    assert body["skipped"] is False
