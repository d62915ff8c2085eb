"""Pin state: ``use_primary()``, its isolation, and the pin cookie a write sets."""

import asyncio
import threading
import time

import pytest
from django.contrib.admin.models import LogEntry
from django.core import signing
from django.db import connections
from django.db.backends.signals import connection_created
from django.http import HttpResponse
from django.test import Client, RequestFactory

from config.replicas import use_primary, wal
from config.replicas.lag import lag
from config.replicas.middleware import PIN_COOKIE, PIN_SALT, ReadYourWritesMiddleware
from config.replicas.pinning import begin_unit_of_work, mark_written, pinned
from tests.replicas.conftest import (
    forget_writes,
    primary_position,
    read_alias,
    routed,
    uses_views,
)


def read_db(client, **extra):
    return client.get("/read/", **extra).json()["db"]


def cookie_value(cookie):
    request = RequestFactory().get("/", HTTP_COOKIE=f"{PIN_COOKIE}={cookie.value}")
    return request.get_signed_cookie(PIN_COOKIE, salt=PIN_SALT)


def cookie_position(cookie):
    return wal.parse(cookie_value(cookie))


# use_primary() ---------------------------------------------------------------------------


@routed
def test_use_primary_sends_reads_to_the_primary():
    with use_primary():
        assert read_alias() == "default"
    assert read_alias() == "replica1"


@routed
def test_leaving_a_nested_use_primary_keeps_the_outer_one():
    with use_primary():
        with use_primary():
            pass
        assert read_alias() == "default"


@routed
def test_use_primary_restores_the_state_when_the_block_raises():
    with pytest.raises(ValueError), use_primary():
        raise ValueError
    assert not pinned()


@routed
@pytest.mark.parametrize("decorator", [use_primary, use_primary()], ids=["bare", "called"])
def test_use_primary_decorates_a_function(decorator):
    @decorator
    def read():
        return read_alias()

    assert read() == "default"
    assert not pinned()


def test_use_primary_decorates_a_coroutine_function():
    @use_primary
    async def check():
        return pinned()

    assert asyncio.run(check()) is True
    assert not pinned()


def test_use_primary_works_as_an_async_context_manager():
    async def check():
        async with use_primary():
            return pinned()

    assert asyncio.run(check()) is True


def test_a_pin_in_one_asyncio_task_is_invisible_to_another():
    async def main():
        pinned_one = asyncio.Event()
        seen = {}

        async def writer():
            begin_unit_of_work()
            mark_written()
            pinned_one.set()
            await asyncio.sleep(0.01)
            seen["writer"] = pinned()

        async def reader():
            begin_unit_of_work()
            await pinned_one.wait()
            seen["reader"] = pinned()

        await asyncio.gather(writer(), reader())
        return seen

    assert asyncio.run(main()) == {"writer": True, "reader": False}


def test_a_pin_in_one_thread_is_invisible_to_another():
    pinned_one, seen = threading.Event(), {}

    def writer():
        begin_unit_of_work()
        mark_written()
        pinned_one.set()
        seen["writer"] = pinned()

    def reader():
        begin_unit_of_work()
        pinned_one.wait()
        seen["reader"] = pinned()

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {"writer": True, "reader": False}


# The pin cookie ----------------------------------------------------------------------------


@routed
@uses_views
def test_a_read_only_request_sets_no_pin_cookie(client):
    assert PIN_COOKIE not in client.get("/read/").cookies


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
    assert PIN_COOKIE in client.get("/write/").cookies


@routed
@uses_views
@pytest.mark.parametrize("path", ["/raw-write/", "/update-using/"])
def test_a_request_that_wrote_where_the_router_cannot_see_sets_the_pin_cookie(client, user, path):
    assert PIN_COOKIE in client.get(path).cookies


@routed
@uses_views
def test_a_request_reads_its_own_raw_write(client, user):
    assert client.get("/raw-write/").json()["db"] == "default"


@routed
@uses_views
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_an_unsafe_method_without_a_write_sets_no_pin_cookie(client, method):
    assert PIN_COOKIE not in getattr(client, method)("/read/").cookies


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
    response = Client(enforce_csrf_checks=True).post("/write/")
    assert response.status_code == 403
    assert PIN_COOKIE not in response.cookies


@routed
@uses_views
def test_saving_the_session_pins_the_client_until_a_replica_has_it(client):
    # A session is read from the primary anyway; the pin is exact, so it costs one look.
    response = client.get("/session/")
    assert "sessionid" in response.cookies
    assert PIN_COOKIE in response.cookies
    assert read_db(client) == "replica1"


@routed
@uses_views
def test_the_pin_cookie_is_signed_http_only_lax_and_short_lived(client, user, settings):
    settings.REPLICA_PIN_SECONDS = 5.0
    cookie = client.get("/write/").cookies[PIN_COOKIE]
    assert ":" in cookie.value  # the value carries a signature
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["max-age"] == 5
    assert not cookie["secure"]


@routed
@uses_views
def test_the_pin_cookie_is_secure_when_the_session_cookie_is(client, user, settings):
    settings.SESSION_COOKIE_SECURE = True
    assert client.get("/write/").cookies[PIN_COOKIE]["secure"] is True


@routed
@uses_views
def test_the_pin_cookie_carries_the_primarys_wal_position(client, user):
    position = cookie_position(client.get("/write/").cookies[PIN_COOKIE])
    assert 0 < position <= primary_position()


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
    assert read_db(client) == "replica1"  # a look at the mirror finds every write


@routed
@uses_views
def test_other_clients_still_read_from_a_replica_behind_a_write(client, user, replica_behind):
    client.get("/write/")
    client.cookies.clear()
    assert read_db(client) == "replica1"


@routed
@uses_views
@pytest.mark.parametrize(
    "value",
    [
        "1/0",
        signing.get_cookie_signer(salt="another-salt").sign("1/0"),
        signing.Signer(key="not-the-secret-key", salt="x").sign("1/0"),
    ],
    ids=["unsigned", "wrong-salt", "wrong-key"],
)
def test_a_forged_pin_cookie_pins_nothing(client, value, replica_behind):
    client.cookies[PIN_COOKIE] = value
    assert read_db(client) == "replica1"


@routed
@uses_views
def test_an_expired_pin_cookie_pins_nothing(client, settings, monkeypatch, replica_behind):
    settings.REPLICA_PIN_SECONDS = 5.0
    long_ago = signing.b62_encode(int(time.time()) - 60)
    with monkeypatch.context() as patch:
        patch.setattr(signing.TimestampSigner, "timestamp", lambda self: long_ago)
        response = HttpResponse()
        response.set_signed_cookie(PIN_COOKIE, wal.format(primary_position()), salt=PIN_SALT)
    client.cookies[PIN_COOKIE] = response.cookies[PIN_COOKIE].value
    assert read_db(client) == "replica1"


@routed
@uses_views
def test_the_pin_ends_with_the_request(client, user):
    forget_writes()
    client.get("/write/")
    assert not pinned()


@routed
@uses_views
def test_a_request_that_only_validated_sets_no_pin_cookie(client, user):
    forget_writes()
    response = client.get("/validate/")
    assert response.status_code == 200
    assert PIN_COOKIE not in response.cookies


@routed
@uses_views
def test_a_request_that_only_locked_rows_sets_no_pin_cookie(client):
    response = client.get("/lock/")
    assert response.status_code == 200
    assert PIN_COOKIE not in response.cookies


@routed
@uses_views
def test_a_request_whose_write_committed_keeps_its_answer_when_the_primary_is_lost(client, user):
    response = client.get("/write-then-lose-the-primary/")
    assert response.status_code == 202
    assert cookie_value(response.cookies[PIN_COOKIE]) == "unknown"  # pinned until it expires
    connections.close_all()  # what Django does as a request ends (the test client does not)
    assert LogEntry.objects.count() == 1


@routed
@uses_views
def test_a_pin_whose_position_is_unknown_reads_from_the_primary(client, user):
    client.get("/write-then-lose-the-primary/")
    connections.close_all()  # what Django does as a request ends (the test client does not)
    assert read_db(client) == "default"  # though the replica has replayed everything


@routed
@uses_views
def test_a_write_teaches_the_process_the_primarys_position(client, user, clock):
    position = cookie_position(client.get("/write/").cookies[PIN_COOKIE])
    clock.advance(1.0)
    assert lag.primary_positions.lag(position - 1) == 1.0
    assert lag.primary_positions.lag(position) == 0


@routed
def test_the_middleware_pins_in_async_mode_too():
    async def view(request):
        mark_written()
        return HttpResponse()

    middleware = ReadYourWritesMiddleware(view)
    response = asyncio.run(middleware(RequestFactory().get("/")))
    assert PIN_COOKIE in response.cookies


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


# Streamed bodies -----------------------------------------------------------------------


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
