"""``/healthz/`` and ``/readyz/``: reachable by IP over plain HTTP, quick, and discreet."""

import ipaddress
import socket
import threading
import time

import pytest
from django.db import connections

from config import readiness
from config.aliases import DEFAULT, DIRECT

SECRET = "s3cret-password"
LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}
# A kubelet, an operator, or anyone on the internet whose address SNAT or a proxy replaced.
PRIVATE = {"REMOTE_ADDR": "10.0.0.3"}
PUBLIC = {"REMOTE_ADDR": "93.184.216.34"}
DOCUMENTATION = {"REMOTE_ADDR": "192.0.2.7"}  # TEST-NET-1, which Python calls private


@pytest.fixture(autouse=True)
def fresh_probe(monkeypatch):
    """Each test probes afresh instead of sharing the last test's round."""
    monkeypatch.setattr(readiness, "readiness", readiness.Readiness())


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


def test_readyz_tells_a_loopback_client_the_primary_and_its_latency(client, db):
    response = client.get("/readyz/", **LOOPBACK)
    assert response.status_code == 200
    body = response.json()
    assert body["ready"] is True
    assert body["databases"][DEFAULT]["ok"] is True
    assert body["databases"][DEFAULT]["latency_ms"] >= 0


def test_readyz_tells_a_private_network_client_the_status_only_by_default(client, db):
    response = client.get("/readyz/", **PRIVATE)
    assert response.status_code == 200
    assert response.json() == {"ready": True}


def test_readyz_tells_a_client_on_a_network_the_setting_names_the_details(client, settings, db):
    settings.READYZ_DETAILS_NETWORKS = [ipaddress.ip_network("10.0.0.0/8")]
    assert DEFAULT in client.get("/readyz/", **PRIVATE).json()["databases"]


def test_readyz_reads_an_ipv4_mapped_client_as_its_ipv4_address(client, settings, db):
    settings.READYZ_DETAILS_NETWORKS = [ipaddress.ip_network("10.0.0.0/8")]
    assert DEFAULT in client.get("/readyz/", REMOTE_ADDR="::ffff:10.0.0.3").json()["databases"]


def test_readyz_tells_a_documentation_range_client_the_status_only(client, db):
    assert client.get("/readyz/", **DOCUMENTATION).json() == {"ready": True}


def test_readyz_tells_a_public_client_the_status_only(client, db):
    response = client.get("/readyz/", **PUBLIC)
    assert response.status_code == 200
    assert response.json() == {"ready": True}


def test_readyz_tells_a_client_behind_a_proxy_the_status_only(client, db):
    # A proxy on the same machine forwards the internet's requests from loopback.
    response = client.get("/readyz/", HTTP_X_FORWARDED_FOR="93.184.216.34", **LOOPBACK)
    assert response.json() == {"ready": True}


@pytest.fixture
def primary_at(monkeypatch):
    """Point the default alias at another host and port, with a password to keep secret."""

    def point(port):
        settings_dict = connections[DEFAULT].settings_dict
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
    response = client.get("/readyz/", **LOOPBACK)
    assert response.status_code == 503
    body = response.json()
    assert body["ready"] is False
    assert body["databases"][DEFAULT] | {"latency_ms": 0} == {
        "ok": False,
        "error": "OperationalError",
        "latency_ms": 0,
    }
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


def test_readyz_answers_503_within_a_second_on_a_primary_that_hangs(
    client, primary_at, hanging_server
):
    primary_at(hanging_server)
    for _ in range(3):  # the round in flight is not waited for again
        started = time.monotonic()
        response = client.get("/readyz/", **LOOPBACK)
        assert time.monotonic() - started < 1.0
        assert response.status_code == 503
        assert "no answer within" in response.json()["databases"][DEFAULT]["error"]


@pytest.fixture
def primary_through(relay, monkeypatch):
    """Reach the real primary through the relay, which counts the connections (as the
    primary itself is reached: ``default`` may be a pooler that wants TLS)."""
    settings_dict = connections[DEFAULT].settings_dict
    primary = connections[DIRECT].settings_dict
    monkeypatch.setitem(settings_dict, "HOST", "127.0.0.1")
    monkeypatch.setitem(settings_dict, "PORT", relay.port)
    monkeypatch.setitem(settings_dict, "OPTIONS", primary["OPTIONS"])
    return relay


def test_a_burst_of_probes_opens_one_connection(client, primary_through):
    statuses = {client.get("/readyz/").status_code for _ in range(20)}
    assert statuses == {200}
    assert primary_through.accepted == 1


def test_probes_after_a_second_connect_again(client, primary_through):
    client.get("/readyz/")
    time.sleep(readiness.MAX_AGE)
    client.get("/readyz/")
    assert primary_through.accepted == 2


def test_the_probe_connects_as_django_would_under_a_name_of_its_own(db):
    params = readiness.connection_params()
    expected = connections[DEFAULT].get_connection_params()
    assert params["dbname"] == expected["dbname"]
    assert params["application_name"] == readiness.APPLICATION_NAME
    assert expected["application_name"] != readiness.APPLICATION_NAME
