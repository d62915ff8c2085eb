"""``/healthz/`` and ``/readyz/``: reachable by IP over plain HTTP, honest, and quick."""

import json
import socket
import threading
import time

import pytest
from django.db import connections

from config.readiness import connection_params, readiness

SECRET = "s3cret-password"


@pytest.fixture(autouse=True)
def fresh_probe():
    """Each test probes afresh instead of reading the last test's answer."""
    readiness.forget()
    yield
    readiness.forget()


def test_healthz_answers_ok_without_touching_the_database(client):
    # No django_db mark: any database access here would fail the test.
    response = client.get("/healthz/")
    assert response.status_code == 200
    assert response.content == b"ok\n"


@pytest.mark.parametrize("path", ["/healthz/", "/readyz/"])
def test_probes_answer_any_host_over_plain_http(client, settings, path, db):
    settings.SECURE_SSL_REDIRECT = True
    settings.ALLOWED_HOSTS = ["example.com"]
    response = client.get(path, HTTP_HOST="10.0.0.7")
    assert response.status_code == 200


def test_other_paths_are_still_redirected_to_https(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.ALLOWED_HOSTS = ["example.com"]
    response = client.get("/admin/", HTTP_HOST="example.com")
    assert response.status_code == 301
    assert response["Location"].startswith("https://")


def test_other_paths_still_validate_the_host(client, settings):
    settings.ALLOWED_HOSTS = ["example.com"]
    assert client.get("/admin/", HTTP_HOST="10.0.0.7").status_code == 400


@pytest.mark.parametrize("path", ["/healthz/", "/readyz/"])
def test_probes_refuse_unsafe_methods(client, path):
    assert client.post(path).status_code == 405


def test_readyz_reports_every_database_with_latency(client, db):
    response = client.get("/readyz/")
    assert response.status_code == 200
    body = response.json()
    assert body["ready"] is True
    assert set(body["databases"]) == set(connections)
    assert body["databases"]["default"]["ok"] is True
    assert body["databases"]["default"]["latency_ms"] >= 0


@pytest.fixture
def primary_at(monkeypatch):
    """Point the default alias at another host and port, with a password to keep secret."""

    def point(port):
        settings_dict = connections["default"].settings_dict
        monkeypatch.setitem(settings_dict, "HOST", "127.0.0.1")
        monkeypatch.setitem(settings_dict, "PORT", port)
        monkeypatch.setitem(settings_dict, "PASSWORD", SECRET)

    return point


def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_readyz_is_503_when_the_primary_refuses_connections(client, primary_at):
    primary_at(closed_port())
    response = client.get("/readyz/")
    assert response.status_code == 503
    body = json.loads(response.content)
    assert body["ready"] is False
    assert body["databases"]["default"]["ok"] is False
    assert SECRET not in response.content.decode()


@pytest.fixture
def hanging_server():
    """A server that accepts connections and then never says a word."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


def test_readyz_gives_up_within_three_seconds_on_a_hanging_primary(
    client, primary_at, hanging_server
):
    primary_at(hanging_server)
    started = time.monotonic()
    response = client.get("/readyz/")
    assert time.monotonic() - started < 3.0
    assert response.status_code == 503
    assert response.json()["databases"]["default"]["error"] == "TimeoutError"


@pytest.fixture
def primary_through(relay, monkeypatch):
    """Reach the real primary through the relay, which counts the connections."""
    monkeypatch.setitem(connections["default"].settings_dict, "HOST", "127.0.0.1")
    monkeypatch.setitem(connections["default"].settings_dict, "PORT", relay.port)
    return relay


def test_a_burst_of_probes_connects_once_per_database(client, primary_through):
    statuses = {client.get("/readyz/").status_code for _ in range(20)}
    assert statuses == {200}
    assert primary_through.accepted == 1


def test_probes_after_the_cache_expires_connect_again(client, primary_through):
    client.get("/readyz/")
    readiness.forget()
    client.get("/readyz/")
    assert primary_through.accepted == 2


def test_readyz_parameters_come_from_djangos_backend(db):
    params = connection_params("default")
    expected = connections["default"].get_connection_params()
    assert params["dbname"] == expected["dbname"]
    assert params["application_name"] == "readyz"
    assert "cursor_factory" not in params and "context" not in params
