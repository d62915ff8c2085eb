"""Debian's own PostgreSQL clusters for the runbooks' tests: made with ``pg_createcluster``
(configuration in /etc/postgresql/V/NAME, data in /var/lib/postgresql/V/NAME, log in
/var/log/postgresql/), started and stopped with ``pg_ctlcluster``, dropped with
``pg_dropcluster``, exactly as an operator's host has them.

Each test run names its clusters uniquely (``main`` is the machine's own, on 5432, and is
never touched: :class:`Shell` refuses a command naming it) and puts them on ports outside the
ephemeral range. The doc's blocks run as root through :class:`Shell`, with ``sudo -u USER`` a
stand-in that switches user (a fresh Debian has no sudo), ``PGPORT`` set to the cluster the doc
calls ``main`` (as 5432 is on a host), and only cluster names, ports and passwords replaced in
their text (:func:`here`). Without systemd (a container), ``pg_ctlcluster`` runs ``pg_ctl``
itself, as Debian's wrapper does wherever /run/systemd/system is missing, and ``systemctl``
is a stand-in that does what the cluster's unit does, ``pg_ctlcluster V NAME start|stop|
restart``, for ``systemctl start|stop|restart postgresql@V-NAME`` and fails on anything else.

The tests read a cluster with :meth:`Cluster.execute`: psycopg as ``postgres`` over the
socket in /var/run/postgresql, authenticated by Debian's ``peer`` rule as ``sudo -u postgres
psql`` is (the process's effective uid is postgres's while it connects).
"""

import atexit
import contextlib
import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Self

import psycopg

from devtools.harness import pg_bindir
from devtools.harness.ports import pick_port

# ``--start`` leaves no window between the cluster's creation and its first start.
CREATE_TIMEOUT = 120
SOCKETS = "/var/run/postgresql"  # every cluster's socket, and libpq's default on Debian
OWNER = "postgres"  # the clusters' account and superuser
AS_OWNER = ["setpriv", f"--reuid={OWNER}", f"--regid={OWNER}", "--init-groups", "--"]
# The stand-in for ``sudo -u USER COMMAND...``: COMMAND as USER, with USER's home and the
# caller's environment (the test's stand-ins for the server's defaults).
SUDO = """#!/bin/sh
[ "$1" = -u ] && [ $# -ge 3 ] || { echo "the tests' sudo knows only -u USER COMMAND" >&2; exit 2; }
user=$2; shift 2
HOME=$(getent passwd "$user" | cut -d: -f6); export HOME
[ "$(id -u)" = "$(id -u "$user")" ] && exec "$@"
exec setpriv --reuid="$(id -u "$user")" --regid="$(id -g "$user")" --init-groups -- "$@"
"""
# The stand-in for ``systemctl start|stop|restart postgresql@V-NAME``: what the unit runs.
SYSTEMCTL = """#!/bin/sh
unit=${2#postgresql@}; unit=${unit%.service}
case "$#:$1:$2" in 2:start:postgresql@*-*|2:stop:postgresql@*-*|2:restart:postgresql@*-*) ;;
*) echo "the tests' systemctl knows only start|stop|restart postgresql@V-NAME" >&2; exit 2;; esac
exec pg_ctlcluster "${unit%%-*}" "${unit#*-}" "$1"
"""


def version() -> str:
    """The PostgreSQL major version whose packages are installed (the harness's)."""
    return pg_bindir().parent.name


def available() -> str | None:
    """Why packaged clusters cannot be made here, or None."""
    if os.geteuid() != 0:
        return "pg_createcluster and pg_dropcluster need root"
    if not shutil.which("pg_createcluster"):
        return "postgresql-common is not installed (./run-tests installs it)"
    return None


def unique_name(role: str) -> str:
    """A cluster name no other test run or xdist worker uses."""
    return f"t{secrets.token_hex(4)}_{role}"


class Cluster:
    """One of Debian's clusters, made with ``pg_createcluster`` on a port of its own; dropped
    when its ``with`` block ends, at the latest when the process exits."""

    def __init__(self, role: str, *, create: bool = True, start: bool = True) -> None:
        """Make the cluster, started unless ``start`` is false; with ``create`` false only
        its name and port are chosen, for a doc's ``pg_createcluster`` to make it."""
        self.name = unique_name(role)
        self.version = version()
        self.port = pick_port()
        self.etc = Path(f"/etc/postgresql/{self.version}/{self.name}")
        self.data_dir = Path(f"/var/lib/postgresql/{self.version}/{self.name}")
        self.log_path = Path(f"/var/log/postgresql/postgresql-{self.version}-{self.name}.log")
        self.dropped_logs = ""  # the logs of its earlier lives, kept when it was dropped
        _made.append(self)
        args = ["pg_createcluster", "--port", str(self.port), self.version, self.name]
        if create:
            _run([*args, *(["--start"] if start else [])], timeout=CREATE_TIMEOUT)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.drop()

    @property
    def exists(self) -> bool:
        """Whether the cluster has a data directory (made and not dropped)."""
        return self.data_dir.exists()

    def ctl(self, action: str) -> None:
        _run(["pg_ctlcluster", self.version, self.name, action], timeout=CREATE_TIMEOUT)

    def execute(
        self, query: str, params: list[Any] | None = None, dbname: str = "postgres"
    ) -> list[tuple[Any, ...]]:
        """Run one statement as postgres in autocommit mode; return its rows."""
        with _as_owner():
            conn = psycopg.connect(
                host=SOCKETS, port=self.port, user=OWNER, dbname=dbname, autocommit=True
            )
        with conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def sql(self, query: str, dbname: str = "postgres") -> str:
        """Run ``query`` as the postgres superuser over the socket; return psql's output."""
        command = ["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "--port", str(self.port)]
        return _run([*AS_OWNER, *command, "--dbname", dbname, "-c", query], timeout=60).strip()

    def base_backup(self, data_dir: Path) -> None:
        """``pg_basebackup`` of this cluster into ``data_dir``, as postgres over the socket,
        with ``standby.signal`` and a ``primary_conninfo`` reaching this cluster."""
        pg_basebackup = [str(pg_bindir() / "pg_basebackup"), "--host", SOCKETS]
        options = ["--write-recovery-conf", "--checkpoint=fast", "--wal-method=stream"]
        args = ["--port", str(self.port), "--pgdata", str(data_dir), *options]
        _run([*AS_OWNER, *pg_basebackup, *args], timeout=CREATE_TIMEOUT)

    def wait_for_replay(self, primary: "Cluster", timeout: float = 10.0) -> None:
        """Wait until this standby replayed everything ``primary`` committed so far."""
        (lsn,) = primary.execute("SELECT pg_current_wal_lsn()")[0]  # synchronous_commit on
        query = "SELECT coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, false)"
        deadline = time.monotonic() + timeout
        while not self.execute(query, [lsn])[0][0]:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not replay up to {lsn}:\n{self.log_text()}")
            time.sleep(0.05)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def drop(self) -> None:
        """Stopped at once (``-m immediate``: a lost server, and no wait for an archiver that
        keeps failing), ``pg_dropcluster --stop``, then whatever it leaves behind (files it
        did not make, such as a conf.d/archiving.conf installed by hand). Its log is kept."""
        self.dropped_logs += self.log_text()
        for command in (
            ["pg_ctlcluster", "-m", "immediate", self.version, self.name, "stop"],
            ["pg_dropcluster", "--stop", self.version, self.name],
        ):
            subprocess.run(command, capture_output=True, check=False, timeout=CREATE_TIMEOUT)
        for path in (self.etc, self.data_dir):
            shutil.rmtree(path, ignore_errors=True)
        self.log_path.unlink(missing_ok=True)


def standby(primary: Cluster, clone: Callable[[Path], object] | None = None) -> Cluster:
    """A hot standby of ``primary``, made as the replica doc makes one: a cluster of
    ``pg_createcluster`` (its own /etc), its data directory emptied and filled by
    ``clone(data_dir)`` (``primary.base_backup`` unless given; it must leave
    ``standby.signal`` and a ``primary_conninfo``), started with ``pg_ctlcluster``."""
    cluster = Cluster("standby", start=False)
    try:
        for path in cluster.data_dir.iterdir():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        (clone or primary.base_backup)(cluster.data_dir)
        cluster.ctl("start")
    except BaseException:
        cluster.drop()
        raise
    return cluster


def here(text: str, values: Mapping[str, object]) -> str:
    """``text`` with each of ``values``' keys replaced by its value, longest first."""
    pattern = "|".join(map(re.escape, sorted(values, key=len, reverse=True)))
    return re.sub(pattern, lambda match: str(values[match[0]]), text)


class Shell:
    """Runs a doc's commands as root, as an operator types them on the host: in ``cwd``,
    ``PGPORT`` the port of the cluster the doc calls ``main``, and the stand-ins for ``sudo``
    and ``systemctl`` first on ``PATH``."""

    def __init__(self, port: int, cwd: Path | None = None) -> None:
        self.bin = Path(tempfile.mkdtemp(prefix="pgharness-debian-bin-"))
        for name, script in (("sudo", SUDO), ("systemctl", SYSTEMCTL)):
            (self.bin / name).write_text(script)
            (self.bin / name).chmod(0o755)
        self.port = port
        self.cwd = cwd or Path("/")
        self.transcript: list[str] = []

    def run(self, command: str, *, timeout: float = 300, check: bool = True) -> str:
        own = re.escape(version())
        if re.search(rf"(\b{own} |\b{own}/|@{own}-|-{own}-)main\b", command):
            raise AssertionError(f"`{command}` names the machine's own cluster `main`")
        env = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
        env.update(PATH=f"{self.bin}{os.pathsep}{os.environ['PATH']}", PGPORT=str(self.port))
        self.transcript.append(f"$ {command}")
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=self.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        self.transcript.append(result.stdout[-3000:] + result.stderr[-3000:])
        if check and result.returncode != 0:
            log = "\n".join(self.transcript)[-8000:]
            raise AssertionError(f"`{command}` exited with {result.returncode}:\n{log}")
        return result.stdout

    def close(self) -> None:
        shutil.rmtree(self.bin, ignore_errors=True)


@contextlib.contextmanager
def _as_owner() -> Iterator[None]:
    """The process's effective uid postgres's, for a connection that Debian's ``local all
    postgres peer`` lets in (the kernel records the uid when the socket connects)."""
    uid = os.geteuid()
    os.seteuid(pwd.getpwnam(OWNER).pw_uid)
    try:
        yield
    finally:
        os.seteuid(uid)


def _run(command: list[str], *, timeout: float) -> str:
    result = subprocess.run(
        command, cwd="/", capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{command} exited with {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result.stdout


_made: list[Cluster] = []  # every cluster this process made or named, for the safety net
_owner_pid = os.getpid()


@atexit.register
def _drop_leftovers() -> None:
    """Safety net: drop the clusters a test left behind (a forked child leaves them)."""
    if os.getpid() == _owner_pid:
        for cluster in _made:
            if cluster.etc.exists() or cluster.exists:
                cluster.drop()
