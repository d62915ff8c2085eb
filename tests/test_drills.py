"""Fault drills: a baked project under a bounded load while a real server fails.

Each drill serves a baked project with gunicorn (production settings; TLS off, since the
harness servers are on loopback without certificates), loads it from a second process
(``devtools/load.py``), breaks one of the harness's real servers mid-load, and counts:
requests sent, failed, slowest, and how soon it recovered. The counts are printed (run
with ``-s`` to see them); the assertions are the contract's.
"""

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from devtools import drill_app
from devtools.bakery import PGBOUNCER_INI, ROOT, bake
from devtools.harness import APP_DB, Primary, Replica, ShippedPgBouncer
from devtools.load import failed
from devtools.projects import Project, create_database

# One worker runs the whole module: its module-scoped projects are set up once.
pytestmark = pytest.mark.xdist_group("drills")

SECRET_KEY = "drill-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGH"
DATABASE = "drills"
WORKERS = 3


# --------------------------------------------------------------------------- projects


def with_name(url, application_name):
    return f"{url}?application_name={application_name}"


def make_project(answers, tmp_path_factory, **variables):
    """A baked project with the drill URLconf, migrated, its user "drill" created."""
    project = Project.bake(
        answers,
        tmp_path_factory.mktemp("drill"),
        modules=drill_app.MODULES,
        DJANGO_SETTINGS_MODULE=drill_app.SETTINGS_MODULE,
        DJANGO_SECRET_KEY=SECRET_KEY,
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DJANGO_SECURE_SSL_REDIRECT="false",
        DATABASE_SSLMODE="disable",
        **variables,
    )
    project.manage("migrate", "--no-input")
    project.shell(
        "from django.contrib.auth import get_user_model; "
        "get_user_model().objects.get_or_create(username='drill')"
    )
    return project


def serving(project, **variables):
    """Serve ``project`` with gunicorn, ``variables`` added to its environment."""
    options = (f"--workers={WORKERS}", "--timeout=30")
    return project.serve(project.env(**variables), options=options)


@pytest.fixture(scope="module")
def database(pg_primary):
    create_database(pg_primary, DATABASE)
    return DATABASE


@pytest.fixture(scope="module")
def default_project(tmp_path_factory, pg_primary, database):
    """The template's defaults: no option picked."""
    url = with_name(pg_primary.url(dbname=database), "drill")
    return make_project({}, tmp_path_factory, DATABASE_URL=url)


@pytest.fixture(scope="module")
def replica_project(tmp_path_factory, pg_primary, pg_replica, database):
    """``use_read_replica``, reading from the harness's streaming replica."""
    project = make_project(
        {"use_read_replica": True},
        tmp_path_factory,
        DATABASE_URL=with_name(pg_primary.url(dbname=database), "drill"),
        DATABASE_REPLICA_URLS=with_name(pg_replica.url(dbname=database), "drill"),
        DATABASE_REPLICA_COOLDOWN_SECONDS="2",
    )
    pg_replica.wait_for_replay(pg_primary)
    return project


@pytest.fixture(scope="module")
def pooled_project(tmp_path_factory, pg_primary, pgbouncer):
    """``use_pgbouncer``: the application through the harness's PgBouncer.

    PgBouncer runs the shipped pgbouncer.ini, which routes only its own database and
    requires TLS: hence ``pgbouncer.database`` and the URL's own ``sslmode``.
    """
    return make_project(
        {"use_pgbouncer": True},
        tmp_path_factory,
        DATABASE_URL=with_name(pgbouncer.url(), "drill") + "&sslmode=require",
        DATABASE_DIRECT_URL=with_name(pg_primary.url(dbname=pgbouncer.database), "drill_direct"),
    )


# --------------------------------------------------------------------------- load


class Load:
    """``devtools.load`` running in a process of its own against ``server``."""

    def __init__(self, server, path, *, seconds, write=False, clients=4):
        self.out = server.log_path.with_suffix(".load.json")
        command = [sys.executable, "-m", "devtools.load", server.base, path]
        command += ["--clients", str(clients), "--seconds", str(seconds), "--out", self.out]
        command += ["--write"] if write else []
        self.process = subprocess.Popen([str(part) for part in command], cwd=ROOT)
        self.started = time.time()

    def records(self):
        assert self.process.wait(timeout=120) == 0
        return json.loads(self.out.read_text())

    def stop(self):
        """End the load now; return its records."""
        self.process.terminate()
        return self.records()


def in_flight(records, instant):
    return [record for record in records if record["start"] <= instant <= record["end"]]


def report(name, records=(), **extra):
    counts = {}
    if records:
        slowest = max(record["end"] - record["start"] for record in records)
        counts = {"sent": len(records), "failed": len(failed(records)), "slowest_s": slowest}
    print(f"\n[drill] {name}: " + json.dumps({**counts, **extra}, default=str))


def after(instant, records):
    return [record for record in records if record["start"] >= instant]


def first_success_after(instant, records):
    return min(r["end"] for r in after(instant, records) if not failed([r])) - instant


def post_status(url, **data):
    request = urllib.request.Request(url, data=urllib.parse.urlencode(data).encode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


# What a proxy adds: a probe through it comes from the internet, whatever its address.
PROXIED = {"X-Forwarded-For": "93.184.216.34"}


def timed_get(url):
    """GET ``url``; return how long it took and its status."""
    started = time.monotonic()
    status, _ = get_status(url)
    return time.monotonic() - started, status


def get_status(url, **headers):
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


# --------------------------------------------------------------------------- replicas


def test_drill_replica_killed_mid_load_fails_no_request_and_reads_return(
    replica_project, pg_replica
):
    # Once the replica has caught up: the cool-down (2 s) since the last failed try, then
    # a connection and a look at its lag. The rest is slack for a busy machine.
    bound = 2 + 2
    with serving(replica_project) as server:
        load = Load(server, "/read/", seconds=120)
        time.sleep(3)
        killed = time.time()
        pg_replica.stop(mode="immediate")
        time.sleep(4)
        restarting = time.time()
        pg_replica.start()
        # Crash recovery, then catching up on the primary: PostgreSQL's time, not ours.
        pg_replica.wait_for_replay(timeout=60)
        ready = time.time()
        time.sleep(bound + 3)
        records = load.stop()
        log = server.log_tail()
    back = [r for r in after(ready, records) if r.get("alias") == "replica1"]
    report(
        "replica killed",
        records,
        in_flight_at_kill=len(in_flight(records, killed)),
        replica_caught_up_s=ready - restarting,
        back_on_replica_after_s=back[0]["start"] - ready if back else None,
    )
    assert failed(records) == []
    state = pg_replica.execute("SELECT * FROM pg_stat_wal_receiver")
    assert back, f"reads never returned to the restarted replica\n{state}\n{log}"
    assert back[0]["start"] - ready < bound


def test_drill_replica_frozen_mid_load_fails_no_request_within_the_bound(
    replica_project, pg_replica
):
    with serving(replica_project) as server:
        load = Load(server, "/read/", seconds=10)
        time.sleep(3)
        pg_replica.freeze()
        try:
            time.sleep(5)
        finally:
            pg_replica.thaw()
        records = load.records()
    report("replica frozen", records)
    assert failed(records) == []
    # DATABASE_REPLICA_QUERY_TIMEOUT (3 s), then the same read on the primary.
    assert max(r["end"] - r["start"] for r in records) < 3 + 1.5


def test_drill_readyz_answers_within_a_second_while_a_replica_hangs(replica_project, pg_replica):
    with serving(replica_project) as server:
        get_status(server.base + "/read/")  # a worker learns of the replica
        pg_replica.freeze()  # its kernel still accepts connections; nothing answers
        try:
            probes = [timed_get(server.base + "/readyz/") for _ in range(3)]
            public = get_status(server.base + "/readyz/", **PROXIED)
        finally:
            pg_replica.thaw()
    report("readyz, replica frozen", readyz_s=[took for took, _ in probes])
    assert [status for _, status in probes] == [200, 200, 200]
    assert max(took for took, _ in probes) < 1.0
    # A client through a proxy (from the internet) learns the status only.
    assert public == (200, b'{"ready": true}')


# --------------------------------------------------------------------------- pgbouncer


def rows_with_tokens(primary, tokens, dbname):
    rows = primary.execute(drill_app.COUNT_WRITES, [list(tokens)], dbname=dbname)
    return rows[0][0]


def test_drill_pgbouncer_restarted_mid_load_loses_no_answered_write(
    pooled_project, pgbouncer, pg_primary
):
    with serving(pooled_project) as server:
        load = Load(server, "/write/", seconds=120, write=True)
        time.sleep(3)
        stopped = time.time()
        pgbouncer.stop()
        time.sleep(2)
        pgbouncer.start()
        started = time.time()
        time.sleep(5)
        records = load.stop()
    answered = [r["token"] for r in records if r["status"] == 201]
    found = rows_with_tokens(pg_primary, answered, pgbouncer.database)
    late_failures = [r for r in failed(records) if r["start"] > started + 1]
    report(
        "pgbouncer restarted",
        records,
        writes_answered=len(answered),
        rows_found=found,
        down_s=started - stopped,
        recovered_after_s=first_success_after(started, records),
    )
    assert found == len(answered)
    assert late_failures == []
    assert first_success_after(started, records) < 3


def test_drill_primary_frozen_behind_pgbouncer_readyz_answers_and_pgbouncer_survives(
    pooled_project, pgbouncer, pg_primary
):
    log_offset = len(pgbouncer.log_text())
    with serving(pooled_project) as server:
        pg_primary.freeze()
        try:
            probes = [timed_get(server.base + "/readyz/") for _ in range(3)]
        finally:
            pg_primary.thaw()
        report("primary frozen behind pgbouncer", readyz_s=[took for took, _ in probes])
        assert [status for _, status in probes] == [503, 503, 503]
        assert max(took for took, _ in probes) < 1.0
        time.sleep(1.1)  # past the probe's shared answer
        assert get_status(server.base + "/readyz/")[0] == 200  # through the same PgBouncer
    assert "FATAL" not in pgbouncer.log_text()[log_offset:]


# --------------------------------------------------------------------------- primary


def test_drill_primary_restarted_mid_load_recovers_with_no_failure_once_it_answers(
    default_project, pg_primary
):
    probes = []

    done = threading.Event()

    def probe(base):
        while not done.is_set():
            started = time.time()
            status, _ = get_status(base + "/readyz/")
            probes.append({"start": started, "status": status})
            time.sleep(0.2)

    with serving(default_project) as server:
        load = Load(server, "/read/", seconds=120)
        prober = threading.Thread(target=probe, args=(server.base,))
        prober.start()
        time.sleep(3)
        stopping = time.time()
        pg_primary.stop()
        stopped = time.time()
        time.sleep(3)
        pg_primary.start()
        answering = time.time()
        time.sleep(4)
        records = load.stop()
        done.set()
        prober.join()
    during = [r for r in records if r["start"] < answering and r["end"] > stopping]
    late = [r for r in failed(records) if r not in during]
    # A probe shares the answer of one up to a second old (config/readiness.py).
    down_probes = {p["status"] for p in probes if stopped + 1.1 < p["start"] < answering - 0.5}
    after_probes = [p["status"] for p in probes if p["start"] > answering + 1.5]
    report(
        "primary restarted",
        records,
        failed_while_down=len(failed(during)),
        failed_after=len(late),
        readyz_while_down=sorted(down_probes),
        first_after_restart_s=first_success_after(answering, records),
    )
    assert late == []
    assert down_probes == {503}
    assert after_probes and set(after_probes) == {200}
    assert not any("Traceback" in r.get("body", "") for r in records)


def terminate_app_backends(primary):
    """End every server session of the app, as an operator or an idle timeout would."""
    rows = primary.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'drill'"
    )
    return len(rows)


@pytest.mark.parametrize(
    ("connections", "env"), [("persistent", {}), ("pool", {"DATABASE_POOL": "true"})]
)
def test_drill_backends_terminated_between_requests_fail_no_request(
    default_project, pg_primary, connections, env
):
    statuses, terminated = [], 0
    with serving(default_project, **env) as server:
        for _ in range(2 * WORKERS):  # every worker holds a connection
            statuses.append(get_status(f"{server.base}/read/")[0])
        for _ in range(3):
            terminated += terminate_app_backends(pg_primary)
            time.sleep(0.2)  # the server's goodbye reaches the idle connections
            for _ in range(10):
                statuses.append(post_status(f"{server.base}/write/", token="after"))
    report(
        f"pg_terminate_backend between requests, {connections}",
        sent=len(statuses),
        failed=sum(s >= 400 for s in statuses),
        backends_terminated=terminated,
    )
    assert terminated >= WORKERS
    assert [s for s in statuses if s >= 400] == []


def test_drill_backends_terminated_mid_load_fail_only_requests_in_flight(
    default_project, pg_primary
):
    """A statement in flight when its backend is killed may have run: it fails, never repeats."""
    with serving(default_project) as server:
        load = Load(server, "/read/", seconds=8)
        terminated, instants = 0, []
        for _ in range(3):
            time.sleep(2)
            before = time.time()
            terminated += terminate_app_backends(pg_primary)
            instants.append((before, time.time()))
        records = load.records()
    failures = failed(records)
    report("pg_terminate_backend mid-load", records, backends_terminated=terminated)
    assert terminated >= WORKERS
    assert len(failures) <= terminated
    for record in failures:
        assert any(
            record["start"] <= after and record["end"] >= before for before, after in instants
        ), record


# --------------------------------------------------------------------------- the edge


def raw_request(port, head):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode("latin-1"))
        return sock.recv(4096).split(b" ", 2)[1].decode()


EDGE_REQUESTS = {
    "garbage host": "GET /read/ HTTP/1.1\r\nHost: evil.example.com\r\n\r\n",
    "host with a path": "GET /read/ HTTP/1.1\r\nHost: 127.0.0.1/../x\r\n\r\n",
    "malformed session cookie": (
        "GET /read/ HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: sessionid=%%%;\r\n\r\n"
    ),
    "huge cookie": "GET /read/ HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: x="
    + "a" * 20000
    + "\r\n\r\n",
    "malformed pin cookie": (
        "GET /read/ HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: primary_pin=zz/zz:abc:def\r\n\r\n"
    ),
    "forged pin cookie": (
        "GET /read/ HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: primary_pin=0/1:1xWQ8h:forged\r\n\r\n"
    ),
}


@pytest.mark.parametrize("name", EDGE_REQUESTS)
def test_drill_bad_input_at_the_edge_is_a_4xx_or_served_never_a_5xx(replica_project, name):
    with serving(replica_project) as server:
        port = urllib.parse.urlsplit(server.base).port
        status = int(raw_request(port, EDGE_REQUESTS[name]))
        log = server.log_path.read_text(errors="replace")
    report(f"edge: {name}", status=status)
    assert status < 500
    password = urllib.parse.urlsplit(replica_project.env()["DATABASE_URL"]).password
    assert password not in log
    assert SECRET_KEY not in log


# --------------------------------------------------------------------------- failover


@pytest.fixture
def ha_pair():
    """A primary and a streaming standby of their own: a failover drill promotes the standby."""
    with Primary() as primary, Replica(primary) as standby:
        create_database(primary, DATABASE)
        yield primary, standby


def two_hosts(url, primary, standby):
    """``url`` (the primary's) naming the primary, then the standby."""
    one = f"{primary.host}:{primary.port}"
    return url.replace(one, f"{one},{standby.host}:{standby.port}")


@pytest.fixture
def ha_project(tmp_path_factory, ha_pair):
    """The template's defaults on a two-host URL naming the primary, then the standby."""
    primary, standby = ha_pair
    url = two_hosts(primary.url(dbname=DATABASE), primary, standby)
    project = make_project({}, tmp_path_factory, DATABASE_URL=with_name(url, "drill"))
    standby.wait_for_replay(primary)
    return project


def fail_over(primary, standby):
    """Stop the primary (a fast shutdown sends the standby all its WAL), promote the standby."""
    primary.stop()
    time.sleep(1)
    standby.promote()


def writes_follow(name, records, stopped, switched, new_primary, dbname):
    """Report a failover drill's writes and hold them to the contract: back within 5 s of the
    moment the writes' path was ``switched`` to ``new_primary``, none failing after that, and
    every answered write found there."""
    answered = [r["token"] for r in records if r["status"] == 201]
    found = rows_with_tokens(new_primary, answered, dbname)
    back = first_success_after(switched, records)
    late = [r for r in failed(records) if r["start"] > switched + back]
    report(
        name,
        records,
        failed_before_switch=len(failed([r for r in records if stopped < r["end"] < switched])),
        writes_back_after_switch_s=back,
        failed_after_back=len(late),
        writes_answered=len(answered),
        answered_writes_lost=len(answered) - found,
    )
    assert back < 5
    assert late == []
    assert found == len(answered)


def test_drill_standby_promoted_takes_the_writes_of_a_two_host_url_without_a_restart(
    ha_project, ha_pair
):
    primary, standby = ha_pair
    with serving(ha_project) as server:
        load = Load(server, "/write/", seconds=120, write=True)
        time.sleep(3)
        stopped = time.time()
        fail_over(primary, standby)
        promoted = time.time()
        time.sleep(6)
        records = load.stop()
        time.sleep(1.1)  # past the probe's shared answer
        ready = get_status(server.base + "/readyz/")
    writes_follow(
        "standby promoted, two-host DATABASE_URL", records, stopped, promoted, standby, DATABASE
    )
    assert ready[0] == 200


def test_drill_pgbouncer_repointed_at_the_promoted_standby_takes_the_writes_without_a_restart(
    tmp_path_factory, ha_pair
):
    # PgBouncer cannot follow a failover itself (docs/high-availability.md): whatever promotes
    # the standby (Patroni's on_role_change) points it at the new primary and reloads it.
    primary, standby = ha_pair
    shipped = bake({"use_pgbouncer": True, "project_slug": APP_DB}, tmp_path_factory.mktemp("ini"))
    with ShippedPgBouncer(primary, (shipped / PGBOUNCER_INI).read_text()) as bouncer:
        project = make_project(
            {"use_pgbouncer": True},
            tmp_path_factory,
            DATABASE_URL=with_name(bouncer.url(), "drill") + "&sslmode=require",
            DATABASE_DIRECT_URL=with_name(two_hosts(primary.url(), primary, standby), "direct"),
        )
        standby.wait_for_replay(primary)
        with serving(project) as server:
            load = Load(server, "/write/", seconds=120, write=True)
            time.sleep(3)
            stopped = time.time()
            fail_over(primary, standby)
            bouncer.follow(standby)
            repointed = time.time()
            time.sleep(6)
            records = load.stop()
    writes_follow(
        "standby promoted, PgBouncer repointed and reloaded",
        records,
        stopped,
        repointed,
        standby,
        APP_DB,
    )
