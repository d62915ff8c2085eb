"""The replicas' system checks, their test settings, and what ``/readyz/`` tells of them."""

import socket

import pytest
from django.conf import settings
from django.db import connections

from config import readiness
from config.replicas import checks
from config.replicas.cooldown import cooldown
from config.replicas.databases import ENGINE
from tests.replicas.conftest import known

SESSIONS = "django.contrib.sessions.middleware.SessionMiddleware"
LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}  # sees /readyz/'s details


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


def test_a_short_pin_next_to_a_long_lag_limit_is_an_error():
    assert [e.id for e in checks.pin_lifetime_errors(5.0, 10.0)] == ["replicas.E004"]


def test_a_pin_outliving_the_lag_limit_passes():
    assert checks.pin_lifetime_errors(30.0, 10.0) == []


def test_no_pin_at_all_passes():
    assert checks.pin_lifetime_errors(0.0, 10.0) == []


def test_the_test_settings_read_replica1_from_the_test_database_itself():
    replicas = [alias for alias in settings.DATABASES if alias.startswith("replica")]
    assert replicas == ["replica1"]
    assert settings.DATABASES["replica1"]["ENGINE"] == ENGINE
    assert settings.DATABASES["replica1"]["TEST"]["MIRROR"] == "default"


# /readyz/ -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fresh_probe(monkeypatch):
    monkeypatch.setattr(readiness, "readiness", readiness.Readiness())


@pytest.mark.django_db
def test_readyz_reports_what_the_process_knows_of_each_replica(client):
    known(lag=0.25)
    body = client.get("/readyz/", **LOOPBACK).json()["databases"]["replica1"]
    assert body | {"seen_seconds_ago": 0} == {
        "skipped": False,
        "lag_seconds": 0.25,
        "streaming": True,
        "seen_seconds_ago": 0,
    }


@pytest.mark.django_db
def test_readyz_reports_a_replica_past_the_lag_limit_as_skipped(client):
    known(lag=60.0)
    body = client.get("/readyz/", **LOOPBACK).json()["databases"]["replica1"]
    assert body["skipped"] is True
    assert "lags 60.0s" in body["error"]


@pytest.mark.django_db
def test_readyz_reports_a_failed_replica_as_skipped(client):
    cooldown.start("replica1", "connection refused")
    body = client.get("/readyz/", **LOOPBACK).json()
    assert body["ready"] is True
    assert body["databases"]["replica1"]["skipped"] is True


@pytest.mark.django_db
def test_readyz_never_waits_for_a_replica_that_hangs(client, monkeypatch):
    listener = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    replica = connections["replica1"]
    monkeypatch.setitem(replica.settings_dict, "HOST", "127.0.0.1")
    monkeypatch.setitem(replica.settings_dict, "PORT", listener.getsockname()[1])
    try:
        response = client.get("/readyz/", **LOOPBACK)
    finally:
        listener.close()
    assert response.status_code == 200
    assert response.json()["databases"]["default"]["latency_ms"] < 1000
