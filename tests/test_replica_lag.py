"""What a baked ``use_read_replica`` project reads while its replica lags, against a real
primary and streaming replica: a client reads its own writes (pinned to the primary), other
clients read the replica until it falls past the lag limit, and return once it catches up.

Pausing WAL replay on the replica makes replication lag deterministic: whatever is written
afterwards exists only on the primary. The project (``e2e_project`` in conftest.py) serves
the e2e app of ``devtools/replica_e2e.py`` with gunicorn on a loopback port, driven over HTTP
(one cookie jar per client) and through ``manage.py shell -c``.
"""

import os
import signal
import time
import urllib.parse
import uuid

import pytest

from devtools.replica_e2e import Client, serving

# One worker runs the replica modules, one after the other, on its primary and replica.
pytestmark = pytest.mark.xdist_group("replica-integration")

LAG_LIMIT = 1.0  # seconds
PIN = 3.0  # seconds: the shortest a pin may be next to that limit (replicas.E004)


@pytest.fixture(scope="module")
def strict_server(e2e_project):
    """Serve with a 1 s lag limit and 3 s pins, to see both run out within a test."""
    limits = {
        "DATABASE_REPLICA_MAX_LAG_SECONDS": str(LAG_LIMIT),
        "DATABASE_REPLICA_PIN_SECONDS": str(PIN),
    }
    with serving(e2e_project, DATABASE_REPLICA_COOLDOWN_SECONDS="1", **limits) as base:
        yield base


@pytest.fixture
def replay_paused(pg_primary, pg_replica):
    """Stop applying WAL on the replica for the test: new writes are primary-only."""
    pg_replica.pause_replay()
    try:
        yield
    finally:
        pg_replica.resume_replay()
        pg_replica.wait_for_replay(pg_primary)


def unique(text):
    """``text`` made unique: every run of these tests writes to the same database."""
    return f"{text} {uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------- lag


@pytest.mark.usefixtures("replay_paused")
def test_a_row_created_inside_atomic_is_read_back_inside_it(e2e_shell):
    result = e2e_shell(
        """
        import json, threading
        from django.contrib.admin.models import LogEntry
        from django.db import transaction
        from users.models import User
        user = User.objects.get(username="e2e")
        with transaction.atomic():
            entry = LogEntry.objects.create(user=user, action_flag=1, object_repr="atomic")
            inside = [LogEntry.objects.filter(pk=entry.pk).exists(), LogEntry.objects.all().db]
        # A new thread is a new context, unpinned: it reads the paused replica.
        elsewhere = []
        reader = threading.Thread(
            target=lambda: elsewhere.append(LogEntry.objects.filter(pk=entry.pk).exists())
        )
        reader.start()
        reader.join()
        print(json.dumps({"inside": inside, "elsewhere": elsewhere}))
        """
    )
    assert result == {"inside": [True, "default"], "elsewhere": [False]}


@pytest.mark.usefixtures("replay_paused")
def test_a_saved_row_can_be_refreshed_from_the_database(e2e_shell):
    result = e2e_shell(
        """
        import json
        from django.contrib.admin.models import LogEntry
        from users.models import User
        entry = LogEntry(user=User.objects.get(username="e2e"), action_flag=1, object_repr="a")
        entry.save()
        entry.object_repr = "unsaved"
        entry.refresh_from_db()
        print(json.dumps([entry.object_repr, LogEntry.objects.all().db]))
        """
    )
    assert result == ["a", "default"]


@pytest.mark.usefixtures("replay_paused")
def test_post_redirect_get_reads_what_the_post_wrote(e2e_server):
    text = unique("post-redirect-get")
    body = Client(e2e_server).post("/notes/", text=text)
    assert text in body["notes"]
    assert (body["alias"], body["recovery"]) == ("default", False)


@pytest.mark.usefixtures("replay_paused")
def test_another_client_reads_the_lagging_replica(e2e_server):
    text = unique("not replayed yet")
    Client(e2e_server).post("/notes/", text=text)
    body = Client(e2e_server).get("/notes/")
    assert text not in body["notes"]
    assert body["recovery"] is True


@pytest.mark.usefixtures("replay_paused")
def test_the_pin_cookie_is_what_pins_a_client(e2e_server):
    writer = Client(e2e_server)
    text = unique("carried")
    writer.post("/notes/", text=text)
    (pin,) = [cookie for cookie in writer.cookies if cookie.name == "primary_pin"]
    carrier = Client(e2e_server)
    carrier.set_cookie("primary_pin", pin.value)
    assert text in carrier.get("/notes/")["notes"]


@pytest.mark.usefixtures("replay_paused")
def test_a_forged_pin_cookie_pins_nothing(e2e_server):
    text = unique("forged")
    Client(e2e_server).post("/notes/", text=text)
    forger = Client(e2e_server)
    forger.set_cookie("primary_pin", "1:forged:signature")
    body = forger.get("/notes/")
    assert text not in body["notes"]
    assert body["alias"] == "replica1"


def wait_until(condition, timeout, interval=0.05):
    """Poll ``condition`` until it holds; return the seconds it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"not within {timeout} s"
        time.sleep(interval)
    return time.monotonic() - started


@pytest.mark.usefixtures("replay_paused")
def test_a_writer_sees_its_write_at_any_lag_even_after_its_pin_expired(strict_server):
    writer = Client(strict_server)
    text = unique("own write")
    writer.post("/notes/", text=text)
    time.sleep(PIN + 1)  # the cookie is gone; the replica is still short of the write
    assert writer.pin() is None
    body = writer.get("/notes/")
    assert text in body["notes"]
    assert body["alias"] == "default"


@pytest.mark.usefixtures("replay_paused")
def test_other_clients_skip_a_replica_past_the_lag_limit(strict_server):
    Client(strict_server).post("/notes/", text=unique("lagging"))
    time.sleep(LAG_LIMIT + 1.5)  # past the limit, and past the last look at the replica
    assert Client(strict_server).get("/notes/")["alias"] == "default"


@pytest.fixture
def receiver_frozen(pg_primary, pg_replica):
    """Freeze the replica's WAL receiver, as a partition from its primary would: the
    replica replays everything it received and reports itself streaming, with no lag."""
    [(pid,)] = pg_replica.execute("SELECT pid FROM pg_stat_wal_receiver")
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
        pg_replica.wait_for_replay(pg_primary)


@pytest.mark.usefixtures("receiver_frozen")
def test_other_clients_skip_a_replica_cut_off_from_its_primary(strict_server):
    text = unique("cut off")
    Client(strict_server).post("/notes/", text=text)
    time.sleep(LAG_LIMIT + 1.5)  # past the limit, and past the last look at the replica
    body = Client(strict_server).get("/notes/")
    assert body["alias"] == "default"
    assert text in body["notes"]


def test_other_clients_read_a_replica_again_once_it_catches_up(strict_server, pg_replica):
    pg_replica.pause_replay()
    try:
        Client(strict_server).post("/notes/", text=unique("catching up"))
        time.sleep(LAG_LIMIT + 1.5)
        assert Client(strict_server).get("/notes/")["alias"] == "default"
    finally:
        pg_replica.resume_replay()
    took = wait_until(lambda: Client(strict_server).get("/notes/")["alias"] == "replica1", 10)
    print(f"\nother clients back on the replica {took:.2f} s after replay resumed")


def test_a_writer_returns_to_the_replica_soon_after_replay_resumes(e2e_server, pg_replica):
    writer = Client(e2e_server)
    pg_replica.pause_replay()
    try:
        writer.post("/notes/", text=unique("returning"))
        assert writer.get("/notes/")["alias"] == "default"
    finally:
        pg_replica.resume_replay()
    took = wait_until(lambda: writer.get("/notes/")["alias"] == "replica1", 5)
    print(f"\nwriter back on the replica {took:.2f} s after replay resumed")
    assert writer.pin() is not None  # back before the cookie expired: the position did it


def test_a_replica_restarted_while_the_primary_is_idle_is_read_again(strict_server, pg_replica):
    # Its last replayed transaction is older than the lag limit, and nothing new arrives.
    time.sleep(LAG_LIMIT + 0.5)
    pg_replica.stop(mode="immediate")
    pg_replica.start()
    took = wait_until(lambda: Client(strict_server).get("/notes/")["alias"] == "replica1", 10)
    print(f"\nback on the restarted replica after {took:.2f} s")


@pytest.mark.usefixtures("replay_paused")
def test_readyz_reports_a_replica_past_the_lag_limit_as_skipped(strict_server):
    Client(strict_server).post("/notes/", text=unique("probe"))
    time.sleep(LAG_LIMIT + 1.5)
    Client(strict_server).get("/notes/")  # a read looks at the replica: /readyz/ never does
    replica = Client(strict_server).get("/readyz/")["databases"]["replica1"]
    assert replica["skipped"] is True
    assert replica["lag_seconds"] > LAG_LIMIT


def test_readyz_reports_a_caught_up_replica_as_used(strict_server):
    def used():
        Client(strict_server).get("/notes/")  # a read looks at the replica: /readyz/ never does
        replica = Client(strict_server).get("/readyz/")["databases"]["replica1"]
        return (replica["streaming"], replica["skipped"]) == (True, False)

    wait_until(used, 3)


@pytest.mark.usefixtures("replay_paused")
def test_a_read_only_post_reads_from_the_replica_and_pins_nothing(e2e_server):
    client = Client(e2e_server)
    assert client.post("/search/", text="anything")["alias"] == "replica1"
    assert client.pin() is None


@pytest.mark.usefixtures("replay_paused")
def test_a_streamed_body_reads_its_requests_own_write(e2e_server):
    text = unique("streamed")
    body = Client(e2e_server).get(f"/stream/?text={urllib.parse.quote(text)}")
    assert body == {"found": True, "alias": "default"}
