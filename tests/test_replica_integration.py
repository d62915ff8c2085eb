"""A baked project with ``use_read_replica`` against a real primary and streaming replica.

The project is served by gunicorn on a loopback port and driven over HTTP (one cookie jar
per client) and through ``manage.py shell -c``. Pausing WAL replay on the replica makes
replication lag deterministic: whatever is written afterwards exists only on the primary.
A tiny URLconf for these tests is written into the baked project, not into the template.
"""

import contextlib
import http.cookiejar
import json
import os
import signal
import textwrap
import time
import urllib.parse
import urllib.request
import uuid

import pytest

from devtools.bakery import AppServer, bake, project_env, project_python, run

# One worker runs the whole module: its module-scoped projects are set up once.
pytestmark = pytest.mark.xdist_group("replica-integration")

DJANGO_VERSIONS = ["5.2", "6.1"]  # in this order: the newer one migrates last

E2E_SETTINGS = """\
from config.settings.local import *  # noqa: F403

ROOT_URLCONF = "e2e_urls"
"""

E2E_URLS = """\
import json

from django.contrib.admin.models import LogEntry
from django.db import connections
from django.http import JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from users.models import User



def in_recovery(alias):
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery()")
        return cursor.fetchone()[0]


@csrf_exempt
def search(request):
    entries = LogEntry.objects.filter(object_repr=request.POST.get("text", ""))
    return JsonResponse({"found": entries.exists(), "alias": entries.db})


@csrf_exempt
def stream(request):
    user = User.objects.get(username="e2e")
    LogEntry.objects.create(user=user, action_flag=1, object_repr=request.GET["text"])

    def body():
        entries = LogEntry.objects.filter(object_repr=request.GET["text"])
        yield json.dumps({"found": entries.exists(), "alias": entries.db})

    return StreamingHttpResponse(body(), content_type="application/json")


@csrf_exempt
def notes(request):
    if request.method == "POST":
        user = User.objects.get(username="e2e")
        LogEntry.objects.create(user=user, action_flag=1, object_repr=request.POST["text"])
        return redirect("/notes/")
    entries = LogEntry.objects.order_by("pk")
    texts = [entry.object_repr for entry in entries]
    return JsonResponse(
        {"notes": texts, "alias": entries.db, "recovery": in_recovery(entries.db)}
    )


urlpatterns = [path("notes/", notes), path("search/", search), path("stream/", stream)]
"""


# --------------------------------------------------------------------------- fixtures


class Project:
    """A baked project plus the environment that points it at the test servers."""

    def __init__(self, path, python, primary, replica):
        self.path = path
        self.python = python
        self.primary = primary
        self.replica = replica

    def env(self, application_name="e2e", **variables):
        def url(server):
            return f"{server.url()}?application_name={application_name}"

        return project_env(
            DJANGO_SETTINGS_MODULE="e2e_settings",
            DJANGO_DEBUG="false",
            DATABASE_URL=url(self.primary),
            DATABASE_REPLICA_URLS=url(self.replica),
            DATABASE_REPLICA_CONNECT_TIMEOUT="1",
            PYTHONPATH=str(self.path),
            **variables,
        )

    def shell(self, code):
        """Run ``code`` in ``manage.py shell``; return the JSON it printed last."""
        result = run(
            [self.python, "manage.py", "shell", "-c", textwrap.dedent(code)],
            cwd=self.path,
            env=self.env(application_name="e2e_shell"),
            timeout=60,
        )
        return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module", params=DJANGO_VERSIONS, ids=lambda version: f"django{version}")
def project(request, tmp_path_factory, pg_primary, pg_replica):
    version = request.param
    answers = {"django_version": version, "use_read_replica": True}
    path = bake(answers, tmp_path_factory.mktemp(f"replica-e2e-{version}"))
    (path / "e2e_settings.py").write_text(E2E_SETTINGS)
    (path / "e2e_urls.py").write_text(E2E_URLS)
    baked = Project(path, project_python(path, version), pg_primary, pg_replica)
    run([baked.python, "manage.py", "migrate", "--no-input"], cwd=path, env=baked.env())
    baked.shell(
        """
        import json
        from users.models import User
        User.objects.get_or_create(username="e2e")
        print(json.dumps(True))
        """
    )
    pg_replica.wait_for_replay(pg_primary)
    return baked


@contextlib.contextmanager
def serving(project, **env):
    """Serve ``project`` with gunicorn on a free loopback port; yield its base URL."""
    options = ("--workers=1", "--threads=2", "--timeout=30")
    with AppServer(project.python, project.path, project.env(**env), options=options) as server:
        yield server.base


@pytest.fixture(scope="module")
def server(project):
    # These tests pause replay for as long as they run; the lag limit has its own server.
    lag_limit_off = {
        "DATABASE_REPLICA_MAX_LAG_SECONDS": "3600",
        "DATABASE_REPLICA_PIN_SECONDS": "3700",
    }
    with serving(project, DATABASE_REPLICA_COOLDOWN_SECONDS="1", **lag_limit_off) as base:
        yield base


LAG_LIMIT = 1.0  # seconds
PIN = 3.0  # seconds: the shortest a pin may be next to that limit (replicas.E004)


@pytest.fixture(scope="module")
def strict_server(project):
    """Serve with a 1 s lag limit and 3 s pins, to see both run out within a test."""
    limits = {
        "DATABASE_REPLICA_MAX_LAG_SECONDS": str(LAG_LIMIT),
        "DATABASE_REPLICA_PIN_SECONDS": str(PIN),
    }
    with serving(project, DATABASE_REPLICA_COOLDOWN_SECONDS="1", **limits) as base:
        yield base


class Client:
    """An HTTP client with its own cookie jar, like one browser."""

    def __init__(self, base):
        self.base = base
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def get(self, path):
        with self.opener.open(self.base + path, timeout=30) as response:
            return json.loads(response.read())

    def pin(self):
        """Return this client's pin cookie, or None once it expired."""
        pins = [c.value for c in self.cookies if c.name == "primary_pin" and not c.is_expired()]
        return pins[0] if pins else None

    def post(self, path, **data):
        body = urllib.parse.urlencode(data).encode()
        # urllib follows the 302 with a GET, carrying the cookies the POST set.
        with self.opener.open(self.base + path, data=body, timeout=30) as response:
            return json.loads(response.read())

    def set_cookie(self, name, value):
        cookie = http.cookiejar.Cookie(
            0, name, value, None, False, "127.0.0.1", False, False, "/", True, False,
            None, False, None, None, {},
        )  # fmt: skip
        self.cookies.set_cookie(cookie)


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


def sessions_of(server, application_name):
    return server.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [application_name]
    )[0][0]


# --------------------------------------------------------------------------- routing


def test_plain_reads_land_on_the_replica(server):
    body = Client(server).get("/notes/")
    assert (body["alias"], body["recovery"]) == ("replica1", True)


def test_writes_land_on_the_primary(project):
    result = project.shell(
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


def test_a_read_only_request_opens_no_connection_to_the_primary(project):
    with serving(project, application_name="e2e_readonly") as base:
        client = Client(base)
        for _ in range(5):
            assert client.get("/notes/")["alias"] == "replica1"
        # CONN_MAX_AGE keeps the connections the requests opened: they are still listed.
        assert sessions_of(project.replica, "e2e_readonly") >= 1
        assert sessions_of(project.primary, "e2e_readonly") == 0


# --------------------------------------------------------------------------- lag


@pytest.mark.usefixtures("replay_paused")
def test_a_row_created_inside_atomic_is_read_back_inside_it(project):
    result = project.shell(
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
def test_a_saved_row_can_be_refreshed_from_the_database(project):
    result = project.shell(
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
def test_post_redirect_get_reads_what_the_post_wrote(server):
    text = unique("post-redirect-get")
    body = Client(server).post("/notes/", text=text)
    assert text in body["notes"]
    assert (body["alias"], body["recovery"]) == ("default", False)


@pytest.mark.usefixtures("replay_paused")
def test_another_client_reads_the_lagging_replica(server):
    text = unique("not replayed yet")
    Client(server).post("/notes/", text=text)
    body = Client(server).get("/notes/")
    assert text not in body["notes"]
    assert body["recovery"] is True


@pytest.mark.usefixtures("replay_paused")
def test_the_pin_cookie_is_what_pins_a_client(server):
    writer = Client(server)
    text = unique("carried")
    writer.post("/notes/", text=text)
    (pin,) = [cookie for cookie in writer.cookies if cookie.name == "primary_pin"]
    carrier = Client(server)
    carrier.set_cookie("primary_pin", pin.value)
    assert text in carrier.get("/notes/")["notes"]


@pytest.mark.usefixtures("replay_paused")
def test_a_forged_pin_cookie_pins_nothing(server):
    text = unique("forged")
    Client(server).post("/notes/", text=text)
    forger = Client(server)
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


def test_other_clients_read_a_replica_again_once_it_catches_up(strict_server, project):
    project.replica.pause_replay()
    try:
        Client(strict_server).post("/notes/", text=unique("catching up"))
        time.sleep(LAG_LIMIT + 1.5)
        assert Client(strict_server).get("/notes/")["alias"] == "default"
    finally:
        project.replica.resume_replay()
    took = wait_until(lambda: Client(strict_server).get("/notes/")["alias"] == "replica1", 10)
    print(f"\nother clients back on the replica {took:.2f} s after replay resumed")


def test_a_writer_returns_to_the_replica_soon_after_replay_resumes(server, project):
    writer = Client(server)
    project.replica.pause_replay()
    try:
        writer.post("/notes/", text=unique("returning"))
        assert writer.get("/notes/")["alias"] == "default"
    finally:
        project.replica.resume_replay()
    took = wait_until(lambda: writer.get("/notes/")["alias"] == "replica1", 5)
    print(f"\nwriter back on the replica {took:.2f} s after replay resumed")
    assert writer.pin() is not None  # back before the cookie expired: the position did it


def test_a_replica_restarted_while_the_primary_is_idle_is_read_again(strict_server, project):
    # Its last replayed transaction is older than the lag limit, and nothing new arrives.
    time.sleep(LAG_LIMIT + 0.5)
    project.replica.stop(mode="immediate")
    project.replica.start()
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
def test_a_read_only_post_reads_from_the_replica_and_pins_nothing(server):
    client = Client(server)
    assert client.post("/search/", text="anything")["alias"] == "replica1"
    assert client.pin() is None


@pytest.mark.usefixtures("replay_paused")
def test_a_streamed_body_reads_its_requests_own_write(server):
    text = unique("streamed")
    body = Client(server).get(f"/stream/?text={urllib.parse.quote(text)}")
    assert body == {"found": True, "alias": "default"}


# --------------------------------------------------------------------------- failover


def test_reads_survive_a_stopped_replica_and_return_when_it_restarts(server, pg_replica):
    client = Client(server)
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


def test_the_generated_suite_passes_with_a_real_replica_configured(project):
    # As a developer running against real replicas would: the suite's replica alias must
    # read the test database itself, never the replica's lagging copy of it.
    env = project_env(
        DATABASE_URL=project.primary.url(),
        DATABASE_REPLICA_URLS=project.replica.url(),
    )
    result = run(
        [project.python, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project.path,
        env=env,
        timeout=600,
    )
    assert " passed" in result.stdout
    assert "failed" not in result.stdout
