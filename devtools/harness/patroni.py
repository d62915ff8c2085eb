"""A throwaway Patroni cluster: a real etcd and Patroni members, each managing its own
PostgreSQL, run from a project's shipped ``deploy/patroni/patroni.yml``.

Etcd has three members, as production runs it: one can fail and the other two keep the
quorum. Three fit a 2-core machine: each member takes about 27 MB and 1% of a core (measured
idle, and Patroni writes little: one key renewal per member every ``loop_wait`` seconds).
What a loaded 2-core machine does not afford is etcd's default 100 ms heartbeat with a 1 s
election timeout: a member starved of CPU for a second starts an election. The members here
beat every 200 ms and wait 2 s, well within what Patroni's ``retry_timeout`` absorbs.

Each Patroni member runs the shipped file with only what differs on this machine changed
(:func:`local_config`): its name, addresses and ports, etcd's addresses, paths (data, binaries,
sockets, the TLS key and certificate, the pgpass file) and passwords. The first member
initializes the cluster with ``initdb``; the others are cloned from the leader with
``pg_basebackup`` (Patroni's default, here with the file's ``checkpoint: fast``).

Like the other servers, every process runs as the unprivileged server user, in temporary
directories, on loopback ports below the ephemeral range, and is stopped (its directory
removed) by ``close()``, on failure too.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import ipaddress
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Self

import psycopg
import yaml
from psycopg import sql

from devtools.harness.errors import HarnessError, PortTaken
from devtools.harness.host import (
    START_TIMEOUT,
    file_size,
    pg_bindir,
    read_text,
    run,
    self_signed_certificate,
    server_user,
    write_file,
)
from devtools.harness.ports import LOOPBACK, pick_port
from devtools.harness.server import PORT_ATTEMPTS, Server, process_tree, with_log_tail

# What local_config() may change in the shipped file, as dotted key paths. Everything else
# (timeouts, synchronous mode, parameters, pg_hba's rules, tags...) runs as written; pg_hba's
# lines may change only in their addresses and the local superuser's name (changed_keys).
SUBSTITUTED_KEYS = frozenset(
    {
        "name",
        "restapi.listen",
        "restapi.connect_address",
        "restapi.authentication.password",
        "etcd3.hosts",
        "postgresql.listen",
        "postgresql.connect_address",
        "postgresql.data_dir",
        "postgresql.bin_dir",
        "postgresql.pgpass",
        "postgresql.authentication.superuser.username",
        "postgresql.authentication.superuser.password",
        "postgresql.authentication.replication.password",
        "postgresql.authentication.rewind.password",
        "postgresql.parameters.unix_socket_directories",
        "postgresql.parameters.ssl_cert_file",
        "postgresql.parameters.ssl_key_file",
    }
)
PASSWORD_KEYS = ("superuser", "replication", "rewind")
# Environment variables that would silently override the configuration file.
FOREIGN_ENV_PREFIXES = ("PATRONI_", "ETCD_", "ETCDCTL_", "PYTHON")


@functools.cache
def etcd_path() -> str:
    """The etcd executable (``$ETCD``, ``$PATH`` or /usr/bin)."""
    return os.environ.get("ETCD") or shutil.which("etcd") or "/usr/bin/etcd"


@functools.cache
def patroni_path() -> str:
    """The patroni executable (``$PATRONI``, ``$PATH`` or /usr/bin)."""
    return os.environ.get("PATRONI") or shutil.which("patroni") or "/usr/bin/patroni"


@functools.cache
def patronictl_path() -> str:
    """The patronictl executable, installed with patroni."""
    return str(Path(patroni_path()).with_name("patronictl"))


def child_env() -> dict[str, str]:
    """The server user's environment without variables that would override the files."""
    env = server_user().env()
    return {name: value for name, value in env.items() if not name.startswith(FOREIGN_ENV_PREFIXES)}


def _spawn(command: list[str], *, cwd: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` as the server user in a session of its own, logging to ``log_path``."""
    user = server_user()
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=child_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # keep terminal Ctrl-C away; teardown stops it
            **user.popen_kwargs(),
        )


def _end(
    process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 20
) -> None:
    """Send ``sig`` to ``process`` and wait; SIGKILL it if it outlives ``timeout``."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _get_json(url: str, timeout: float = 2.0) -> tuple[int, Any]:
    """GET ``url``; return its status and JSON body (whatever the status)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def _wait(
    condition: Callable[[], Any], what: str, timeout: float, log_path: Path | None = None
) -> Any:
    """Poll ``condition`` until it returns something true; return that."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if result := condition():
                return result
        except (OSError, ValueError, KeyError) as exc:  # not answering (as expected) yet
            last_error = exc
        time.sleep(0.1)
    message = f"{what} after {timeout:g}s" + (f" (last error: {last_error})" if last_error else "")
    raise HarnessError(with_log_tail(message, log_path) if log_path else message)


# --------------------------------------------------------------------------- etcd


class EtcdMember(Server):
    """One etcd member of an :class:`Etcd` cluster (started by the cluster)."""

    kind = "etcd"

    def __init__(self, name: str, token: str) -> None:
        super().__init__()
        self.name = name
        self.token = token
        self.peer_port = 0
        self.initial_cluster = ""
        self.log_path = self.workdir / "etcd.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @property
    def client_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        """Launch the member; :meth:`Etcd.start` waits until the cluster has a quorum."""
        if self._process is not None:
            return
        self._log_offset = file_size(self.log_path)
        self._process = _spawn(
            [
                etcd_path(),
                f"--name={self.name}",
                f"--data-dir={self.workdir / 'data'}",
                f"--listen-client-urls={self.client_url}",
                f"--advertise-client-urls={self.client_url}",
                f"--listen-peer-urls={self.peer_url}",
                f"--initial-advertise-peer-urls={self.peer_url}",
                f"--initial-cluster={self.initial_cluster}",
                "--initial-cluster-state=new",
                f"--initial-cluster-token={self.token}",
                # See the module docstring: a starved member must not start elections.
                "--heartbeat-interval=200",
                "--election-timeout=2000",
                "--logger=zap",
                "--log-outputs=stderr",
            ],
            cwd=self.workdir,
            log_path=self.log_path,
        )

    def healthy(self) -> bool:
        """True once this member answers and the cluster has a leader."""
        if self._process is None or self._process.poll() is not None:
            if "address already in use" in read_text(self.log_path, self._log_offset):
                raise PortTaken(self.port)
            raise HarnessError(with_log_tail(f"etcd {self.name} exited", self.log_path))
        status, body = _get_json(f"{self.client_url}/health")
        return status == 200 and body.get("health") == "true"

    def stop(self) -> None:
        process, self._process = self._process, None
        _end(process)

    def _kill(self) -> None:
        process, self._process = self._process, None
        _end(process, signal.SIGKILL)


class Etcd:
    """A ``size``-member etcd cluster on loopback (three by default: see the module docstring).

    ``hosts`` is the comma-separated ``host:port`` list Patroni's ``etcd3.hosts`` takes.
    """

    def __init__(self, size: int = 3) -> None:
        self.members: list[EtcdMember] = []
        try:
            for _ in range(PORT_ATTEMPTS):
                self._create(size)
                try:
                    self.start()
                except PortTaken:
                    self._close_members()
                    continue
                return
            raise HarnessError("etcd: every port tried was taken")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def hosts(self) -> str:
        return ",".join(f"{member.host}:{member.port}" for member in self.members)

    def start(self) -> None:
        """Start every member and wait until each answers with the cluster healthy."""
        for member in self.members:
            member.start()
        for member in self.members:
            _wait(member.healthy, f"etcd {member.name} not healthy", START_TIMEOUT, member.log_path)

    def close(self) -> None:
        """Stop every member and remove their directories. Safe to call twice."""
        self._close_members()

    def _create(self, size: int) -> None:
        token = f"harness-{secrets.token_hex(4)}"
        self.members = [EtcdMember(f"etcd{number}", token) for number in range(1, size + 1)]
        for member in self.members:
            member.port, member.peer_port = pick_port(), pick_port()
        initial = ",".join(f"{member.name}={member.peer_url}" for member in self.members)
        for member in self.members:
            member.initial_cluster = initial

    def _close_members(self) -> None:
        members, self.members = self.members, []
        for member in members:
            member.close()


# --------------------------------------------------------------------------- configuration


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: tree}


def changed_keys(shipped: Mapping[str, Any], local: Mapping[str, Any]) -> set[str]:
    """The dotted key paths whose values differ between two configurations, including keys
    present in only one of them. pg_hba counts as changed only if a line differs in more
    than its address, or (on a ``local`` line) the role."""
    before, after = _flatten(dict(shipped)), _flatten(dict(local))
    changed = {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
    if "postgresql.pg_hba" in changed and _hba_rules(before["postgresql.pg_hba"]) == _hba_rules(
        after["postgresql.pg_hba"]
    ):
        changed.discard("postgresql.pg_hba")
    return changed


def _hba_rules(lines: list[str]) -> list[list[str]]:
    """pg_hba lines with addresses masked and the local superuser line's role dropped."""
    rules = []
    for line in lines:
        fields = ["ADDRESS" if _is_network(field) else field for field in line.split()]
        if fields[0] == "local":
            fields[2] = "SUPERUSER"
        rules.append(fields)
    return rules


def _is_network(field: str) -> bool:
    try:
        ipaddress.ip_network(field, strict=False)
    except ValueError:
        return False
    return "/" in field


def local_config(
    shipped: Mapping[str, Any],
    *,
    name: str,
    directory: Path,
    port: int,
    api_port: int,
    etcd_hosts: str,
    passwords: Mapping[str, str],
) -> dict[str, Any]:
    """Return the shipped Patroni configuration changed only where this machine must differ.

    The member is called ``name`` and listens on the loopback address, PostgreSQL on ``port``
    and the REST API on ``api_port``; ``etcd3.hosts`` becomes ``etcd_hosts``; the data
    directory, sockets, pgpass file, TLS key and certificate move into ``directory``, and the
    binaries are the harness's (:func:`~devtools.harness.host.pg_bindir`); every password is
    the one in ``passwords`` (``restapi`` and each of :data:`PASSWORD_KEYS`); pg_hba's
    networks become the loopback address. The superuser authenticates by peer over the Unix
    socket, so it is named after the account the servers run as (``postgres`` as root).
    Nothing else changes: the test suite checks it (:data:`SUBSTITUTED_KEYS`).
    """
    config = copy.deepcopy(dict(shipped))
    config["name"] = name
    restapi = config["restapi"]
    restapi["listen"] = restapi["connect_address"] = f"{LOOPBACK}:{api_port}"
    restapi["authentication"]["password"] = passwords["restapi"]
    config["etcd3"]["hosts"] = etcd_hosts
    postgresql = config["postgresql"]
    postgresql["listen"] = postgresql["connect_address"] = f"{LOOPBACK}:{port}"
    postgresql["data_dir"] = str(directory / "data")
    postgresql["bin_dir"] = str(pg_bindir())
    postgresql["pgpass"] = str(directory / "pgpass")
    authentication = postgresql["authentication"]
    for role in PASSWORD_KEYS:
        authentication[role]["password"] = passwords[role]
    superuser = authentication["superuser"]["username"]
    authentication["superuser"]["username"] = server_user().name
    parameters = postgresql["parameters"]
    parameters["unix_socket_directories"] = str(directory)
    for setting in ("ssl_cert_file", "ssl_key_file"):
        parameters[setting] = str(directory / PurePosixPath(parameters[setting]).name)
    postgresql["pg_hba"] = [
        _local_hba_line(line, superuser, server_user().name) for line in postgresql["pg_hba"]
    ]
    return config


def _local_hba_line(line: str, superuser: str, account: str) -> str:
    fields = line.split()
    if fields[0] == "local" and fields[2] == superuser:
        fields[2] = account
    network = f"{LOOPBACK}/32"
    return " ".join(network if _is_network(field) else field for field in fields)


# --------------------------------------------------------------------------- patroni


class PatroniMember(Server):
    """One Patroni member of a :class:`PatroniCluster`, managing its own PostgreSQL.

    ``port`` is PostgreSQL's, ``api_port`` the REST API's. ``start()`` returns once the
    member runs PostgreSQL as the leader or as a standby; ``kill()`` ends Patroni and
    PostgreSQL at once with SIGKILL, as a machine that loses power.
    """

    kind = "patroni"

    def __init__(self, cluster: PatroniCluster, name: str) -> None:
        super().__init__()
        self.cluster = cluster
        self.name = name
        self.api_port = 0
        self.config_path = self.workdir / "patroni.yml"
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "patroni.log"
        self._process: subprocess.Popen[bytes] | None = None
        with self._closing_on_error():
            shipped = cluster.shipped["postgresql"]["parameters"]
            self_signed_certificate(
                self.workdir / PurePosixPath(shipped["ssl_key_file"]).name,
                self.workdir / PurePosixPath(shipped["ssl_cert_file"]).name,
            )
            self._start_on_free_port()

    # Connection details ------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    def status(self) -> dict[str, Any]:
        """GET /patroni: the member's own view (role, state, timeline, replication...)."""
        _, body = _get_json(f"{self.api_url}/patroni")
        return body

    def psql(self, statement: str, dbname: str = "postgres") -> str:
        """Run ``statement`` with psql as the superuser over the Unix socket; return its output.

        The superuser logs in by peer authentication only (the shipped pg_hba), hence psql
        run as the server user rather than a connection from this process.
        """
        return run(
            [
                str(pg_bindir() / "psql"), "--no-psqlrc", "--tuples-only", "--no-align",
                "--set=ON_ERROR_STOP=1", f"--host={self.workdir}", f"--port={self.port}",
                f"--username={server_user().name}", f"--dbname={dbname}", f"--command={statement}",
            ],
            cwd=self.workdir,
        )  # fmt: skip

    # Lifecycle -----------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """Patroni's process id, or None when it is not running."""
        return self._process.pid if self._process else None

    @property
    def postgres_pid(self) -> int | None:
        """The postmaster's process id (started by Patroni, not its child), or None when it
        is not running. A pid file that a killed postmaster left is not believed: its pid
        may belong to another process by now."""
        first_line = read_text(self.data_dir / "postmaster.pid").partition("\n")[0]
        if not first_line.strip():
            return None
        pid = int(first_line)
        command = read_text(Path(f"/proc/{pid}/cmdline")).split("\0")
        return pid if str(self.data_dir) in command else None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start Patroni; return once its PostgreSQL runs as the leader or a standby."""
        if self._process is not None:
            return
        log_offset = file_size(self.log_path)
        self._process = _spawn(
            [patroni_path(), str(self.config_path)], cwd=self.workdir, log_path=self.log_path
        )
        try:
            _wait(lambda: self._running(log_offset), f"{self.name} not running", timeout)
        except BaseException as exc:
            self._kill()
            if isinstance(exc, PortTaken):
                raise
            if isinstance(exc, HarnessError):
                raise HarnessError(with_log_tail(str(exc), self.log_path)) from exc
            raise

    def stop(self) -> None:
        """Stop Patroni, which stops its PostgreSQL first (a clean shutdown)."""
        process, self._process = self._process, None
        _end(process, timeout=60)

    def kill(self) -> None:
        """SIGKILL Patroni and every PostgreSQL process of this member at once."""
        doomed = process_tree(self.pid) + process_tree(self.postgres_pid)
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self._process is not None:
            self._process.wait()
            self._process = None

    def _running(self, log_offset: int) -> bool:
        if self._process is None or self._process.poll() is not None:
            if "Address already in use" in read_text(self.log_path, log_offset):
                raise PortTaken(self.api_port)
            raise HarnessError(f"patroni {self.name} exited")
        status = self.status()
        return status.get("state") == "running" and status.get("role") in (
            "master",
            "primary",
            "replica",
        )

    def _kill(self) -> None:
        # Patroni (and whatever it runs, pg_basebackup or pg_rewind) first, so that it does
        # not restart PostgreSQL; then PostgreSQL, stopped at once but by pg_ctl, which leaves
        # no shared memory behind as a SIGKILL would.
        postgres = set(process_tree(self.postgres_pid))
        for pid in process_tree(self.pid):
            if pid not in postgres:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        process, self._process = self._process, None
        if process is not None:
            process.wait()
        if self.postgres_pid is not None:
            with contextlib.suppress(HarnessError):  # it died meanwhile: nothing to stop
                pg_ctl = str(pg_bindir() / "pg_ctl")
                run([pg_ctl, "stop", "-D", str(self.data_dir), "-m", "immediate"], cwd=self.workdir)

    def _start_on_free_port(self) -> None:
        for _ in range(PORT_ATTEMPTS):
            self.port, self.api_port = pick_port(), pick_port()
            self._configure()
            try:
                self.start()
            except PortTaken:
                shutil.rmtree(self.data_dir, ignore_errors=True)
                continue
            return
        raise HarnessError(with_log_tail(f"{self.name}: every port tried was taken", self.log_path))

    def _configure(self) -> None:
        config = local_config(
            self.cluster.shipped,
            name=self.name,
            directory=self.workdir,
            port=self.port,
            api_port=self.api_port,
            etcd_hosts=self.cluster.etcd.hosts,
            passwords=self.cluster.passwords,
        )
        write_file(self.config_path, yaml.safe_dump(config, sort_keys=False))


class PatroniCluster:
    """Etcd and ``size`` Patroni members run from ``shipped`` (a patroni.yml's text).

    ``db1`` initializes the cluster and leads; the others are cloned from it and stream.
    ``wait_until_synchronous()`` waits for Patroni to name a synchronous standby.
    """

    def __init__(self, shipped: str, *, size: int = 2, etcd_size: int = 3) -> None:
        self.shipped = yaml.safe_load(shipped)
        self.passwords = {key: _new_password() for key in ("restapi", *PASSWORD_KEYS)}
        self.members: list[PatroniMember] = []
        self.etcd: Etcd | None = None
        try:
            self.etcd = Etcd(etcd_size)
            for number in range(1, size + 1):
                self.members.append(PatroniMember(self, f"db{number}"))
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every member, then etcd; remove every directory. Safe to call twice."""
        members, self.members = self.members, []
        try:
            for member in reversed(members):
                member.close()
        finally:
            if self.etcd is not None:
                self.etcd.close()

    # The cluster's state -------------------------------------------------------------

    def member(self, name: str) -> PatroniMember:
        return next(member for member in self.members if member.name == name)

    def topology(self) -> dict[str, Any]:
        """GET /cluster from the first member that answers: every member's role and state."""
        for member in self.members:
            with contextlib.suppress(OSError, ValueError):
                status, body = _get_json(f"{member.api_url}/cluster")
                if status == 200:
                    return body
        raise ConnectionError("no Patroni member answers GET /cluster")

    def leader(self) -> PatroniMember:
        """The member holding the leader key (once one does)."""

        def find() -> PatroniMember | None:
            roles = {m["name"]: m for m in self.topology()["members"]}
            names = [
                name
                for name, m in roles.items()
                if m["role"] == "leader" and m["state"] == "running"
            ]
            return self.member(names[0]) if names else None

        return _wait(find, "no leader", START_TIMEOUT)

    def standbys(self) -> list[PatroniMember]:
        leader = self.leader()
        return [member for member in self.members if member is not leader]

    def wait_until_synchronous(self, timeout: float = START_TIMEOUT) -> PatroniMember:
        """Return the synchronous standby once Patroni has named it in etcd and the leader's
        PostgreSQL waits for it on every commit.

        Only a standby named in etcd may be promoted: PostgreSQL waiting for it is not enough.
        """

        def synchronous() -> PatroniMember | None:
            members = self.topology()["members"]
            named = {m["name"] for m in members if m["role"] == "sync_standby"}
            leaders = [m["name"] for m in members if m["role"] == "leader"]
            if not leaders:
                return None
            leader = self.member(leaders[0])
            rows = leader.status().get("replication") or []
            waited_for = {
                r["application_name"]
                for r in rows
                if r.get("sync_state") == "sync" and r.get("state") == "streaming"
            }
            both = sorted(named & waited_for)
            return self.member(both[0]) if both else None

        return _wait(synchronous, "no synchronous standby", timeout)

    def wait_for_leader(self, name: str, timeout: float = START_TIMEOUT) -> PatroniMember:
        """Return member ``name`` once it is the leader and its PostgreSQL accepts writes."""

        def leads() -> bool:
            status = self.member(name).status()
            return status.get("role") in ("master", "primary") and status.get("state") == "running"

        _wait(leads, f"{name} never led", timeout)
        return self.member(name)

    # Commands ------------------------------------------------------------------------

    def patronictl(self, *args: str, timeout: float = START_TIMEOUT) -> str:
        """Run ``patronictl`` with the first member's configuration; return its output."""
        member = self.members[0]
        command = [patronictl_path(), "--config-file", str(member.config_path), *args]
        try:
            result = subprocess.run(
                command,
                cwd=member.workdir,
                env=child_env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,  # failures are reported below, with the tool's output
                **server_user().popen_kwargs(),
            )
        except subprocess.TimeoutExpired as exc:
            raise HarnessError(f"`{shlex.join(command)}` timed out after {timeout:g}s") from exc
        if result.returncode != 0:
            raise HarnessError(
                f"`{shlex.join(command)}` exited with {result.returncode}:\n"
                f"{result.stdout}{result.stderr}"
            )
        return result.stdout

    def create_database(self, name: str, password: str) -> None:
        """On the leader, the application's role ``name`` and its database ``name``."""
        role = sql.Identifier(name).as_string(None)
        literal = sql.Literal(password).as_string(None)
        leader = self.leader()
        leader.psql(f"CREATE ROLE {role} LOGIN PASSWORD {literal}")
        leader.psql(f"CREATE DATABASE {role} OWNER {role}")

    def url(self, user: str, password: str, dbname: str, **params: str) -> str:
        """A multi-host ``postgres://`` URL naming every member, with libpq ``params``."""

        def quote(part: str) -> str:
            return urllib.parse.quote(part, safe="")

        hosts = ",".join(f"{member.host}:{member.port}" for member in self.members)
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return f"postgres://{quote(user)}:{quote(password)}@{hosts}/{quote(dbname)}{query}"

    def conninfo(self, user: str, password: str, dbname: str, **params: str) -> str:
        """The same as :meth:`url` as a libpq conninfo string, for psycopg."""
        hosts = ",".join(member.host for member in self.members)
        ports = ",".join(str(member.port) for member in self.members)
        return psycopg.conninfo.make_conninfo(
            host=hosts, port=ports, user=user, password=password, dbname=dbname, **params
        )


def _new_password() -> str:
    # Characters that YAML, pgpass and URLs must quote make sure the harness quotes them.
    return secrets.token_urlsafe(18) + ":@'#"
