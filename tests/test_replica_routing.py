"""Where a baked ``use_read_replica`` project sends its reads and writes, against a real
primary and streaming replica: plain reads on the replica, writes on the primary, reads on
the primary while the replica is down, and the project's own suite with a replica configured.

The project (``e2e_project`` in conftest.py) serves the e2e app of ``devtools/replica_e2e.py``
with gunicorn on a loopback port, driven over HTTP (one cookie jar per client) and through
``manage.py shell -c``.
"""

import time
import uuid

import pytest

from devtools.bakery import project_env
from devtools.harness import APP_DB
from devtools.replica_e2e import Client, serving, urls

# One worker runs the replica modules, one after the other, on its primary and replica.
pytestmark = pytest.mark.xdist_group("replica-integration")


def sessions_of(server, application_name):
    return server.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [application_name]
    )[0][0]


# --------------------------------------------------------------------------- routing


def test_plain_reads_land_on_the_replica(e2e_server):
    body = Client(e2e_server).get("/notes/")
    assert (body["alias"], body["recovery"]) == ("replica1", True)


def test_writes_land_on_the_primary(e2e_shell):
    result = e2e_shell(
        """
        import json
        from django.contrib.admin.models import LogEntry
        from django.db import connections, router
        alias = router.db_for_write(LogEntry)
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT pg_is_in_recovery()")
            print(json.dumps([alias, cursor.fetchone()[0]]))
        """
    )
    assert result == ["default", False]


def test_a_read_only_request_opens_no_connection_to_the_primary(
    e2e_project, pg_primary, pg_replica
):
    with serving(e2e_project, **urls(pg_primary, pg_replica, "e2e_readonly")) as base:
        client = Client(base)
        for _ in range(5):
            assert client.get("/notes/")["alias"] == "replica1"
        # CONN_MAX_AGE keeps the connections the requests opened: they are still listed.
        assert sessions_of(pg_replica, "e2e_readonly") >= 1
        assert sessions_of(pg_primary, "e2e_readonly") == 0


def test_an_async_view_reads_with_the_async_orm(e2e_server, pg_primary, pg_replica):
    # The router runs in the event loop there: it may not block, so it makes no call.
    pg_replica.wait_for_replay(pg_primary)
    assert Client(e2e_server).get("/anotes/")["notes"] == Client(e2e_server).get("/notes/")["notes"]


# --------------------------------------------------------------------------- failover


def test_a_raw_write_then_a_read_with_the_replica_frozen_answers_and_writes_once(
    e2e_server, pg_primary, pg_replica
):
    client = Client(e2e_server)
    assert client.get("/notes/")["alias"] == "replica1"  # the worker holds a connection
    text = f"raw-{uuid.uuid4().hex[:8]}"
    pg_replica.freeze()
    try:
        body = client.get(f"/raw-note/?text={text}")
    finally:
        pg_replica.thaw()
    assert body == {"found": True, "alias": "default"}
    rows = pg_primary.execute(
        "SELECT count(*) FROM django_admin_log WHERE object_repr = %s", [text], dbname=APP_DB
    )
    assert rows == [(1,)]


def test_reads_survive_a_stopped_replica_and_return_when_it_restarts(e2e_server, pg_replica):
    client = Client(e2e_server)
    assert client.get("/notes/")["alias"] == "replica1"  # the worker holds a connection
    latencies = []
    pg_replica.stop()
    try:
        for _ in range(20):
            started = time.perf_counter()
            body = client.get("/notes/")  # raises on any non-2xx answer
            latencies.append(time.perf_counter() - started)
            assert body["alias"] == "default"
    finally:
        pg_replica.start()
    print(
        f"\nreplica down: first read {latencies[0] * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms, "
        f"median {sorted(latencies)[len(latencies) // 2] * 1000:.1f} ms over {len(latencies)}"
    )
    assert max(latencies) < 10  # bounded by the connect timeout, not by minutes of TCP

    deadline = time.monotonic() + 15
    while client.get("/notes/")["alias"] != "replica1":
        assert time.monotonic() < deadline, "reads never returned to the restarted replica"
        time.sleep(0.2)
    print(f"back on the replica {15 - (deadline - time.monotonic()):.1f} s after restarting it")


# --------------------------------------------------------------------------- own suite


def test_the_generated_suite_passes_with_a_real_replica_configured(
    e2e_project, pg_primary, pg_replica
):
    # As a developer running against real replicas would: the suite's replica alias must
    # read the test database itself, never the replica's lagging copy of it.
    env = project_env(DATABASE_URL=pg_primary.url(), DATABASE_REPLICA_URLS=pg_replica.url())
    result = e2e_project.run("-m", "pytest", "-q", "-p", "no:cacheprovider", env=env, timeout=600)
    assert " passed" in result.stdout
    assert "failed" not in result.stdout


def test_a_hung_replica_costs_one_connect_timeout_then_reads_go_to_the_primary(
    e2e_project, pg_primary, pg_replica
):
    # A fresh worker, with the defaults: DATABASE_REPLICA_CONNECT_TIMEOUT 2 s, cool-down 10 s.
    variables = urls(pg_primary, pg_replica, "e2e_hung") | {"DATABASE_REPLICA_CONNECT_TIMEOUT": "2"}
    with serving(e2e_project, **variables) as base:
        client = Client(base)
        pg_replica.freeze()  # its kernel accepts the connection; nothing answers
        try:
            took = []
            for _ in range(3):
                started = time.perf_counter()
                client.get("/notes/")  # raises on any non-2xx answer
                took.append(time.perf_counter() - started)
        finally:
            pg_replica.thaw()
    print(f"\nhung replica: reads took {', '.join(f'{t:.2f}' for t in took)} s")
    assert 1.8 < took[0] < 3.0  # one connect attempt of 2 s, then the same read on the primary
    assert max(took[1:]) < 0.5  # the replica cools down: not tried again
