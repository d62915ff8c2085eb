"""docs/high-availability.md's etcd step, followed on three etcd "machines" as Debian's
etcd-server package leaves them: already running a one-member cluster in
/var/lib/etcd/default, made when the package was installed.

No systemd runs here, so the test does what it would: the package's first start is
reproduced by starting etcd as its unit does (``ETCD_NAME`` the host's name, ``ETCD_DATA_DIR``
/var/lib/etcd/default, the package's /etc/default/etcd, which sets nothing, with only the
listening addresses moved off the shared loopback ports) and stopping it; ``systemctl
start|stop etcd`` start and stop that member the same way, reading the machine's
/etc/default/etcd. Each machine has a directory of its own standing for its root, and the
doc's addresses 10.0.0.11-13 become the loopback addresses 127.0.0.11-13 with ports of this
run; the doc's extra local listener (``http://127.0.0.1:2379``) is left out, as the three
machines share one loopback. A loaded 2-core machine gets etcd's slower heartbeat (as
``devtools/harness/patroni.py`` explains).
"""

import re
import shlex
import shutil
import subprocess
import time

import pytest

from devtools.bakery import bake
from devtools.harness import server_user
from devtools.harness.host import make_workdir
from devtools.harness.patroni import child_env, etcd_path
from devtools.harness.ports import pick_port
from devtools.readme import code_block

pytestmark = pytest.mark.xdist_group("etcd-docs")

MACHINES = ("db1", "db2", "db3")
FORMS_WITHIN = 60.0  # seconds for three members to elect a leader


def commands(text):
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


class Machine:
    """One machine of the doc: its root directory and the etcd its unit runs."""

    def __init__(self, name, number, ports):
        self.name, self.number = name, number
        self.client_port, self.peer_port = ports
        self.root = make_workdir(f"etcd-{name}")
        (self.root / "etc" / "default").mkdir(parents=True)
        (self.root / "var" / "lib" / "etcd").mkdir(parents=True)
        server_user().chown(self.root / "var" / "lib" / "etcd")
        self.address = f"127.0.0.{10 + number}"
        self.process = None

    @property
    def endpoint(self):
        return f"http://{self.address}:{self.client_port}"

    def here(self, text):
        """The doc's text for this machine: its name and address (written for db1), this
        run's addresses and ports, and paths under the machine's root."""
        lines = []
        for line in text.splitlines():
            if not line.startswith("ETCD_INITIAL_CLUSTER="):
                line = line.replace('"db1"', f'"{self.name}"').replace(
                    "10.0.0.11", f"10.0.0.1{self.number}"
                )
            lines.append(line)
        text = "\n".join(lines).replace(",http://127.0.0.1:2379", "")
        text = re.sub(r"10\.0\.0\.1(\d)", r"127.0.0.1\1", text)
        text = text.replace(":2379", f":{self.client_port}").replace(":2380", f":{self.peer_port}")
        return text.replace("/var/lib/etcd", str(self.root / "var" / "lib" / "etcd"))

    def environment(self):
        """The unit's environment: its Environment= lines, then /etc/default/etcd."""
        env = {
            **child_env(),
            "ETCD_NAME": self.name,  # %H
            "ETCD_DATA_DIR": str(self.root / "var" / "lib" / "etcd" / "default"),
            "ETCD_HEARTBEAT_INTERVAL": "200",
            "ETCD_ELECTION_TIMEOUT": "2000",
        }
        for line in (self.root / "etc" / "default" / "etcd").read_text().splitlines():
            if re.match(r"^\w+=", line):
                name, _, value = line.partition("=")
                env[name] = " ".join(shlex.split(value))
        return env

    def systemctl(self, action):
        if action in ("stop", "restart") and self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None
        if action in ("start", "restart"):
            log = (self.root / "etcd.log").open("ab")
            self.process = subprocess.Popen(
                [etcd_path()],
                cwd=self.root / "var" / "lib" / "etcd",
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **server_user().popen_kwargs(),
            )
            log.close()

    def install_package(self):
        """What installing etcd-server does: the package's (empty) /etc/default/etcd, etcd
        started as a one-member cluster, which stays in /var/lib/etcd/default."""
        (self.root / "etc" / "default" / "etcd").write_text(
            "# as shipped: every setting commented out; only the addresses moved for this run\n"
            f"ETCD_LISTEN_CLIENT_URLS={self.endpoint}\n"
            f"ETCD_ADVERTISE_CLIENT_URLS={self.endpoint}\n"
            f"ETCD_LISTEN_PEER_URLS=http://{self.address}:{self.peer_port}\n"
            f"ETCD_INITIAL_ADVERTISE_PEER_URLS=http://{self.address}:{self.peer_port}\n"
        )
        self.systemctl("start")
        wait_for(lambda: len(member_list(self.endpoint)) == 1, "the package's etcd")
        self.systemctl("stop")
        assert (self.root / "var" / "lib" / "etcd" / "default" / "member").is_dir()

    def run(self, command):
        """A doc command on this machine: systemctl through the stand-in, the rest in bash."""
        words = shlex.split(command, comments=True)
        if words[:1] == ["systemctl"]:
            assert words[2:] == ["etcd"], command
            self.systemctl(words[1])
            return ""
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", self.here(command)],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout

    def close(self):
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def member_list(endpoint):
    result = subprocess.run(
        ["etcdctl", f"--endpoints={endpoint}", "--dial-timeout=2s", "member", "list"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    return result.stdout.splitlines() if result.returncode == 0 else []


def wait_for(condition, what, timeout=FORMS_WITHIN):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def doc(tmp_path_factory):
    project = bake({}, tmp_path_factory.mktemp("etcd-docs"))
    return (project / "docs" / "high-availability.md").read_text()


@pytest.fixture
def machines(doc):
    """Three machines with etcd-server installed, then /etc/default/etcd written as the doc
    says; each member stopped, as the package's first start left its store."""
    ports = (pick_port(), pick_port())  # every machine's client and peer port
    machines = [Machine(name, number, ports) for number, name in enumerate(MACHINES, 1)]
    try:
        for machine in machines:
            machine.install_package()
        settings = code_block(doc, "ETCD_INITIAL_CLUSTER=")
        for machine in machines:
            (machine.root / "etc" / "default" / "etcd").write_text(machine.here(settings))
        yield machines
    finally:
        for machine in machines:
            machine.close()


def listed(machines):
    return {machine.name: member_list(machine.endpoint) for machine in machines}


def test_restarting_over_the_packages_store_leaves_three_clusters_of_one(machines):
    # What the doc said before: edit /etc/default/etcd, `systemctl restart etcd` on all three.
    for machine in machines:
        machine.systemctl("restart")
    wait_for(lambda: all(listed(machines).values()), "every member answering")
    assert {name: len(members) for name, members in listed(machines).items()} == dict.fromkeys(
        MACHINES, 1
    )
    log = (machines[0].root / "etcd.log").read_text()
    assert "already initialized as member before" in log


def test_the_documented_steps_form_one_cluster_of_three(doc, machines):
    for machine in machines:
        for command in commands(code_block(doc, "rm -rf /var/lib/etcd/default")):
            machine.run(command)
    start, check = commands(code_block(doc, "member list"))
    for machine in machines:
        machine.run(start)
    wait_for(lambda: all(len(m) == 3 for m in listed(machines).values()), "three members")
    outputs = [machine.run(check).splitlines() for machine in machines]
    assert all(len(output) == 3 for output in outputs)
    assert all(sorted(output) == sorted(outputs[0]) for output in outputs)
    assert {line.split(", ")[2] for line in outputs[0]} == set(MACHINES)
    assert all(line.split(", ")[1] == "started" for line in outputs[0])
