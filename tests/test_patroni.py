"""High availability against a real Patroni cluster: the app follows the leader it elects.

Three etcd members and two Patroni members, each managing its own PostgreSQL, run from a
baked project's shipped ``deploy/patroni/patroni.yml`` with only addresses, ports, paths and
passwords changed (``devtools/harness/patroni.py``). The project (``use_read_replica``,
production settings, TLS as shipped) names both members in each URL: ``DATABASE_URL`` keeps
the one that accepts writes (``target_session_attrs=read-write``), ``DATABASE_REPLICA_URLS``
the one that is a standby. gunicorn serves it; ``devtools/load.py`` loads it with writes and
reads from two more processes while a drill takes the leader away: a ``patronictl
switchover`` (planned) or SIGKILL of the leader's Patroni and PostgreSQL (a crash). Each drill
prints writes failed, seconds until writes were back, acknowledged writes lost and reads
failed (``./run-tests tests/test_patroni.py -n 0 -s`` shows them); the assertions are the
contract's.
"""

import copy
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import pytest
import yaml

import devtools.harness.patroni as harness_patroni
import devtools.harness.server as harness_server
from devtools import drill_app
from devtools.bakery import ROOT
from devtools.harness import EPHEMERAL_PORTS, HarnessError, server_user
from devtools.harness.patroni import (
    SUBSTITUTED_KEYS,
    PatroniCluster,
    changed_keys,
    child_env,
    patronictl_path,
)
from devtools.load import failed
from devtools.projects import Project

# One worker runs the whole module: the cluster and the project are set up once.
pytestmark = pytest.mark.xdist_group("patroni")

PATRONI_YML = "deploy/patroni/patroni.yml"
SLUG = "shop_front"  # bake()'s project name is "Shop Front"; the shipped pg_hba names it
APP_PASSWORD = "drill-app-password/@:%"
SECRET_KEY = "patroni-drill-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz-ABCD"
WORKERS = 3


# --------------------------------------------------------------------------- the cluster


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A ``use_read_replica`` project with the drill URLconf, under production settings."""
    return Project.bake(
        {"use_read_replica": True},
        tmp_path_factory.mktemp("patroni"),
        modules=drill_app.MODULES,
        DJANGO_SETTINGS_MODULE=drill_app.SETTINGS_MODULE,
        DJANGO_SECRET_KEY=SECRET_KEY,
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DJANGO_SECURE_SSL_REDIRECT="false",
    )


@pytest.fixture(scope="module")
def cluster(project):
    """The Patroni cluster run from ``project``'s own patroni.yml, with the application's
    role and database created on the leader, as docs/high-availability.md says."""
    with PatroniCluster((project.path / PATRONI_YML).read_text()) as cluster:
        cluster.create_database(SLUG, APP_PASSWORD)
        yield cluster


def app_urls(cluster):
    """Both members in each URL; which one a connection keeps is libpq's choice."""
    return {
        "DATABASE_URL": cluster.url(
            SLUG, APP_PASSWORD, SLUG, target_session_attrs="read-write", application_name="drill"
        ),
        "DATABASE_REPLICA_URLS": cluster.url(
            SLUG, APP_PASSWORD, SLUG, target_session_attrs="standby", application_name="drill"
        ),
    }


@pytest.fixture(scope="module")
def migrated(project, cluster):
    """``project`` migrated on the leader, its user "drill" created."""
    env = project.env(**app_urls(cluster))
    project.manage("migrate", "--no-input", env=env)
    project.shell(
        "from django.contrib.auth import get_user_model; "
        "get_user_model().objects.get_or_create(username='drill')",
        env=env,
    )
    return project


def connect(cluster, target_session_attrs):
    """psycopg connected as the application through both members (TLS, as shipped)."""
    conninfo = cluster.conninfo(
        SLUG,
        APP_PASSWORD,
        SLUG,
        target_session_attrs=target_session_attrs,
        sslmode="require",
        connect_timeout="5",
    )
    return psycopg.connect(conninfo, autocommit=True)


def dcs_setting(cluster, name):
    """A setting of the shipped file's ``bootstrap.dcs``, which the cluster runs with."""
    return cluster.shipped["bootstrap"]["dcs"][name]


# --------------------------------------------------------------------------- load


class Load:
    """``devtools.load`` in a process of its own against ``server``, each client pausing
    ``pause`` seconds between requests so a long outage stays a readable count. Leaving its
    ``with`` block ends it, whatever happened."""

    def __init__(self, server, path, *, write=False, clients=2, pause=0.02):
        kind = "writes" if write else "reads"
        self.out = server.log_path.with_name(f"{server.log_path.stem}.{kind}.json")
        command = [sys.executable, "-m", "devtools.load", server.base, path, "--seconds", "150"]
        command += ["--clients", str(clients), "--pause", str(pause), "--out", str(self.out)]
        command += ["--write"] if write else []
        self.process = subprocess.Popen(command, cwd=ROOT)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self):
        """End the load now; return its records."""
        self.process.terminate()
        assert self.process.wait(timeout=60) == 0
        return json.loads(self.out.read_text())


def serving(project, cluster):
    options = (f"--workers={WORKERS}", "--timeout=30")
    return project.serve(project.env(**app_urls(cluster)), options=options)


def written_tokens(cluster, tokens):
    """How many of ``tokens`` the leader holds."""
    with connect(cluster, "read-write") as conn:
        row = conn.execute(drill_app.COUNT_WRITES, [list(tokens)]).fetchone()
    return row[0]


def outcome(cluster, writes, reads, fault):
    """The drill's figures for a fault at ``fault`` (time.time())."""
    answered = [r["token"] for r in writes if r["status"] == 201]
    failures = [r for r in failed(writes) if r["end"] >= fault]
    # Writes are back once one succeeds that started after the last failure.
    since = max((r["end"] for r in failures), default=fault)
    back = min(
        (r["end"] for r in writes if r["start"] >= since and r["status"] == 201),
        default=float("inf"),
    )
    return {
        "writes_sent": len(writes),
        "writes_failed": len(failed(writes)),
        "writes_back_after_s": round(back - fault, 2),
        "writes_answered": len(answered),
        "answered_writes_lost": len(answered) - written_tokens(cluster, answered),
        "reads_sent": len(reads),
        "reads_failed": len(failed(reads)),
        "failed_after_writes_back": len(
            [r for r in failed(writes) + failed(reads) if r["start"] > back]
        ),
    }


def get_status(url):
    """The status of GET ``url``, whatever it is."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def report(name, figures):
    print(f"\n[patroni drill] {name}: " + json.dumps(figures))


FENCE = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)


def doc_switchover(project, cluster, leader, candidate):
    """docs/high-availability.md's switchover block, as (the switchover, the wait for a Sync
    Standby), with this cluster's configuration file, patronictl and member names."""
    doc = (project.path / "docs" / "high-availability.md").read_text()
    (text,) = [block for block in FENCE.findall(doc) if "Sync Standby" in block]
    text = text.replace("/etc/patroni/config.yml", str(cluster.members[0].config_path))
    text = re.sub(r"(?<![\w/])patronictl ", f"{patronictl_path()} ", text)
    text = text.replace(
        "--leader db1 --candidate db2", f"--leader {leader} --candidate {candidate}"
    )
    switchover, wait = text.split("\n", 1)
    assert "switchover" in switchover and "--force" in switchover and "list" in wait
    return switchover, wait


def shell(cluster, script):
    """Start ``script`` in bash as the server user, as an operator on a member would."""
    return subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cluster.members[0].workdir,
        env=child_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **server_user().popen_kwargs(),
    )


def finished(process, timeout=90):
    """Wait for ``process`` (from :func:`shell`); fail with its output unless it succeeded."""
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    assert process.returncode == 0, f"{process.args[-1]}\n{output}"
    return time.monotonic()


def until_sync_standby(cluster, timeout=60):
    """Seconds (time.monotonic()) at which etcd first names a Sync Standby, polled often."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sync_standbys(cluster):
            return time.monotonic()
        time.sleep(0.1)
    raise AssertionError(f"no Sync Standby after {timeout} s: {cluster.topology()}")


def sync_standbys(cluster):
    return [m["name"] for m in cluster.topology()["members"] if m["role"] == "sync_standby"]


# --------------------------------------------------------------------------- the tests


def test_the_cluster_runs_the_shipped_patroni_yml_changing_only_addresses_ports_paths_passwords(
    cluster,
):
    for member in cluster.members:
        local = yaml.safe_load(member.config_path.read_text())
        assert changed_keys(cluster.shipped, local) <= SUBSTITUTED_KEYS, member.name
    # The comparison sees a changed setting, a new one, and a pg_hba rule loosened.
    tampered = copy.deepcopy(local)
    tampered["bootstrap"]["dcs"]["ttl"] = 10
    tampered["postgresql"]["parameters"]["fsync"] = False
    tampered["postgresql"]["pg_hba"][-1] = tampered["postgresql"]["pg_hba"][-1].replace(
        "scram-sha-256", "trust"
    )
    assert changed_keys(cluster.shipped, tampered) - SUBSTITUTED_KEYS == {
        "bootstrap.dcs.ttl",
        "postgresql.parameters.fsync",
        "postgresql.pg_hba",
    }
    dcs = cluster.shipped["bootstrap"]["dcs"]
    assert dcs["synchronous_mode"] is True
    assert dcs["postgresql"]["use_pg_rewind"] is True
    # Patroni's rule, or a leader that cannot reach etcd outlives its key.
    assert dcs["ttl"] >= dcs["loop_wait"] + 2 * dcs["retry_timeout"]


def test_the_cluster_forms_with_one_leader_and_one_streaming_standby(cluster):
    standby = cluster.wait_until_synchronous()
    leader = cluster.leader()
    roles = {m["name"]: (m["role"], m["state"]) for m in cluster.topology()["members"]}
    listed = cluster.patronictl("list", "--format", "json")
    assert roles == {leader.name: ("leader", "running"), standby.name: ("sync_standby", "running")}
    assert {m["Member"]: m["Role"] for m in json.loads(listed)} == {
        leader.name: "Leader",
        standby.name: "Sync Standby",
    }
    streaming = leader.status()["replication"]
    assert [(r["application_name"], r["state"], r["sync_state"]) for r in streaming] == [
        (standby.name, "streaming", "sync")
    ]
    # libpq, given both members, finds each role by itself.
    with connect(cluster, "read-write") as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
        assert conn.info.port == leader.port
    with connect(cluster, "standby") as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        assert conn.info.port == standby.port


def test_every_process_runs_unprivileged_on_ports_outside_the_ephemeral_range(cluster):
    etcd = cluster.etcd.members
    pids = [m.pid for m in etcd] + [p for m in cluster.members for p in (m.pid, m.postgres_pid)]
    ports = [p for m in etcd for p in (m.port, m.peer_port)]
    ports += [p for m in cluster.members for p in (m.port, m.api_port)]
    assert {owner(pid) for pid in pids} == {server_user().uid}
    assert len(set(ports)) == 10
    assert not [port for port in ports if port in EPHEMERAL_PORTS]


def owner(pid):
    """The real user id of process ``pid``."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


def test_a_cluster_that_fails_to_start_leaves_no_process_and_no_directory(project, monkeypatch):
    spawned, workdirs = [], []

    def spawn(*args, **kwargs):
        spawned.append(real_spawn(*args, **kwargs))
        return spawned[-1]

    def make_workdir(kind):
        workdirs.append(real_make_workdir(kind))
        return workdirs[-1]

    real_spawn, real_make_workdir = harness_patroni._spawn, harness_server.make_workdir
    monkeypatch.setattr(harness_patroni, "_spawn", spawn)
    monkeypatch.setattr(harness_server, "make_workdir", make_workdir)
    monkeypatch.setenv("PATRONI", "/bin/false")  # a "Patroni" that exits at once
    harness_patroni.patroni_path.cache_clear()
    try:
        with pytest.raises(HarnessError, match="patroni db1 exited"):
            PatroniCluster((project.path / PATRONI_YML).read_text())
    finally:
        harness_patroni.patroni_path.cache_clear()
    assert len(spawned) == 4  # three etcd members, then Patroni
    assert [process.poll() is None for process in spawned] == [False] * 4
    assert [path for path in workdirs if path.exists()] == []


def test_drill_switchover_loses_no_answered_write_fails_no_read_and_writes_return_in_seconds(
    migrated, cluster
):
    candidate = cluster.wait_until_synchronous()
    leader = cluster.leader()
    with (
        serving(migrated, cluster) as server,
        Load(server, "/write/", write=True) as writes,
        Load(server, "/read/") as reads,
    ):
        time.sleep(3)
        switched = time.time()
        cluster.patronictl(
            "switchover", "--leader", leader.name, "--candidate", candidate.name, "--force"
        )
        cluster.wait_for_leader(candidate.name)
        time.sleep(4)
        write_records, read_records = writes.stop(), reads.stop()
        ready = get_status(server.base + "/readyz/")
        log = server.log_tail()
    figures = outcome(cluster, write_records, read_records, switched)
    report("patronictl switchover", {"from": leader.name, "to": candidate.name, **figures})
    assert ready == 200
    assert figures["answered_writes_lost"] == 0
    assert figures["reads_failed"] == 0, log
    # Seconds, not the ttl a failover waits for: 2.9 s on a quiet machine, 6 s under load.
    assert figures["writes_back_after_s"] < dcs_setting(cluster, "ttl") / 2
    assert figures["failed_after_writes_back"] == 0, log


def test_drill_leader_killed_fails_over_within_ttl_and_loses_no_answered_write(migrated, cluster):
    standby = cluster.wait_until_synchronous()  # only it may be promoted
    leader = cluster.leader()
    with (
        serving(migrated, cluster) as server,
        Load(server, "/write/", write=True) as writes,
        Load(server, "/read/") as reads,
    ):
        time.sleep(3)
        leader.kill()  # Patroni and PostgreSQL, SIGKILL, at once
        killed = time.time()
        cluster.wait_for_leader(standby.name, timeout=dcs_setting(cluster, "ttl") + 60)
        promoted = time.time()
        time.sleep(4)
        write_records, read_records = writes.stop(), reads.stop()
        ready = get_status(server.base + "/readyz/")
        log = server.log_tail()
    figures = outcome(cluster, write_records, read_records, killed)
    figures["promoted_after_s"] = round(promoted - killed, 2)
    # The old leader comes back as a standby of the new one: crash recovery, then pg_rewind
    # if it had WAL the new leader never received.
    restarted, log_offset = time.time(), len(leader.log_text())
    leader.start()
    status = leader.status()
    figures["old_leader_back_as_standby_after_s"] = round(time.time() - restarted, 2)
    figures["old_leader_rewound"] = "running pg_rewind" in leader.log_text()[log_offset:]
    report("leader killed", {"killed": leader.name, "promoted": standby.name, **figures})
    assert figures["answered_writes_lost"] == 0  # synchronous mode
    assert ready == 200
    # The leader key expires ttl seconds after its last renewal at the latest; the standby
    # notices within a loop and promotes.
    bound = dcs_setting(cluster, "ttl") + dcs_setting(cluster, "loop_wait")
    assert figures["writes_back_after_s"] < bound
    assert figures["failed_after_writes_back"] == 0, log
    assert (status["role"], status["state"]) == ("replica", "running")
    assert status["timeline"] == cluster.member(standby.name).status()["timeline"]


def test_drill_leader_killed_10_s_after_a_documented_switchover_is_replaced_within_ttl(
    project, cluster
):
    """Without a Sync Standby no leader is replaced, and a switchover or a rejoin leaves
    none until the leader's loop names one: the shipped loop_wait keeps that short, and the
    doc's switchover waits for it. A leader lost 10 s after a switchover (or at the end of
    that wait, if a loaded machine made it longer) is replaced like any other."""
    new = cluster.wait_until_synchronous()  # the candidate: the leader after the switchover
    old = cluster.leader()
    switchover, wait = doc_switchover(project, cluster, old.name, new.name)
    finished(shell(cluster, switchover))
    switched = time.monotonic()
    waiting = shell(cluster, wait)
    named = until_sync_standby(cluster)
    waited = finished(waiting)
    assert sync_standbys(cluster) == [old.name]
    assert cluster.leader() is new
    time.sleep(max(0.0, 10 - (time.monotonic() - switched)))
    new.kill()
    killed = time.monotonic()
    cluster.wait_for_leader(old.name, timeout=dcs_setting(cluster, "ttl") + 60)
    promoted = time.monotonic()
    new.start()
    rejoined = time.monotonic()
    status = new.status()
    waiting = shell(cluster, wait)
    named_again = until_sync_standby(cluster)
    finished(waiting)
    figures = {
        "sync_standby_after_switchover_s": round(named - switched, 2),
        "doc_wait_returned_after_s": round(waited - switched, 2),
        "killed_after_switchover_s": round(killed - switched, 2),
        "promoted_after_kill_s": round(promoted - killed, 2),
        "back_as_standby_after_s": round(rejoined - promoted, 2),
        "sync_standby_after_rejoin_s": round(named_again - rejoined, 2),
    }
    report("leader killed 10 s after a switchover", {"killed": new.name, **figures})
    # The doc's wait does not return before the Sync Standby is named (both poll etcd).
    assert waited > named - 0.5
    # About 2 * loop_wait + 3 s, as the doc says, and loaded machines add a loop or two;
    # Patroni's default loop_wait of 10 s left 22.5 s.
    assert named - switched < 15
    bound = dcs_setting(cluster, "ttl") + dcs_setting(cluster, "loop_wait")
    assert promoted - killed < bound
    assert (status["role"], status["state"]) == ("replica", "running")
    assert sync_standbys(cluster) == [new.name]
