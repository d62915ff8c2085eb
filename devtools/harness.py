"""Throwaway PostgreSQL and PgBouncer servers for the template's tests.

Every server lives in its own temporary directory, listens on 127.0.0.1 on a port
outside the kernel's ephemeral range and is torn down by ``close()`` (or by leaving its
``with`` block, or by an ``atexit`` hook as a last resort).

PostgreSQL and PgBouncer refuse to run as root, so when the tests run as root every
server process is started as an unprivileged account: ``$PG_HARNESS_USER`` if set,
otherwise the ``postgres`` system user.

The module only needs the standard library and psycopg 3, so it can be used from pytest
fixtures, scripts or a REPL alike::

    with Primary() as primary, Replica(primary) as replica, PgBouncer(primary) as bouncer:
        primary.execute("CREATE TABLE t (id int)", dbname="app")
        replica.wait_for_replay()
        print(bouncer.url())
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import pwd
import random
import re
import secrets
import shlex
import shutil
import socket
import stat
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import psycopg
from psycopg import sql
from psycopg.abc import Params, Query
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row

SUPERUSER = "postgres"
APP_USER = "app"
APP_DB = "app"
REPLICATION_USER = "replicator"

LOOPBACK = "127.0.0.1"
# Linux's default net.ipv4.ip_local_port_range. bind(0) and outgoing client sockets take
# ports from here, so a server port picked from it can be stolen under load.
EPHEMERAL_PORTS = range(32768, 61000)
SERVER_PORTS = range(20000, 32000)

START_TIMEOUT = 60.0  # seconds; generous because CI machines running xdist are slow
PORT_ATTEMPTS = 5
LOG_TAIL_LINES = 40

_rng = random.SystemRandom()  # unaffected by tests that seed the global `random`
_ports_handed_out: set[int] = set()


class HarnessError(RuntimeError):
    """A throwaway server could not be set up, started, stopped or queried."""


class _PortTaken(HarnessError):
    """The server could not bind its port because something else grabbed it first."""


# --------------------------------------------------------------------------- discovery


@functools.cache
def pg_bindir() -> Path:
    """Return the directory holding ``initdb``, ``pg_ctl`` and friends.

    Looked up in ``$PG_BIN``, then ``pg_config --bindir`` and finally the newest
    ``/usr/lib/postgresql/*/bin`` (Debian's ``pg_config`` from libpq-dev says /usr/bin,
    which has no server binaries).
    """
    if configured := os.environ.get("PG_BIN"):
        if not (Path(configured) / "initdb").is_file():
            raise HarnessError(f"PG_BIN={configured} does not contain initdb")
        return Path(configured)
    if pg_config := shutil.which("pg_config"):
        result = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        )
        bindir = Path(result.stdout.strip())
        if result.returncode == 0 and (bindir / "initdb").is_file():
            return bindir
    candidates = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").is_file()]
    if not candidates:
        raise HarnessError("no PostgreSQL server binaries found; set PG_BIN")
    return max(candidates, key=lambda p: _version_key(p.parent.name))


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


@functools.cache
def pgbouncer_path() -> str:
    """Return the pgbouncer executable (``$PGBOUNCER``, ``$PATH`` or /usr/sbin)."""
    return os.environ.get("PGBOUNCER") or shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


@dataclass(frozen=True)
class ServerUser:
    """The OS account that server processes run as."""

    name: str
    uid: int
    gid: int
    home: str
    groups: tuple[int, ...]

    @property
    def is_current(self) -> bool:
        """True when no privilege switch is needed."""
        return self.uid == os.geteuid()

    def popen_kwargs(self) -> dict[str, Any]:
        """Arguments making ``subprocess`` run a child as this user."""
        if self.is_current:
            return {}
        # extra_groups replaces root's supplementary groups, which would otherwise leak.
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for a child process running as this user."""
        # Ambient PG* variables (PGHOST, PGOPTIONS, PGSSLMODE...) would silently change
        # what the tools connect to, so children only get the ones we pass explicitly.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(HOME=self.home, USER=self.name, LOGNAME=self.name)
        env.update(extra or {})
        return env

    def chown(self, path: Path) -> None:
        """Hand ``path`` over to this user (no-op without a privilege switch)."""
        if not self.is_current:
            os.chown(path, self.uid, self.gid)


@functools.cache
def server_user() -> ServerUser:
    """Return the account server processes run as (never root)."""
    if os.geteuid() != 0:
        try:
            entry = pwd.getpwuid(os.geteuid())
        except KeyError:  # arbitrary uid without a passwd entry (some containers)
            uid = os.geteuid()
            return ServerUser(str(uid), uid, os.getegid(), os.environ.get("HOME", "/"), ())
    else:
        name = os.environ.get("PG_HARNESS_USER", "postgres")
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise HarnessError(
                f"running as root, but there is no {name!r} user to run the servers as; "
                "create it or set PG_HARNESS_USER to an unprivileged account"
            ) from None
    groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return ServerUser(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, groups)


# --------------------------------------------------------------------------- helpers


def pick_port() -> int:
    """Return a currently free loopback TCP port outside the ephemeral range.

    The port is only *probably* free: another process may bind it before our server
    does, which is why the servers retry with a fresh port when binding fails.
    """
    for _ in range(200):
        port = _rng.choice(SERVER_PORTS)
        if port not in _ports_handed_out and _port_is_bindable(port):
            _ports_handed_out.add(port)
            return port
    raise HarnessError(f"no free port found in {SERVER_PORTS}")


def _port_is_bindable(port: int) -> bool:
    # No SO_REUSEADDR on purpose: a port lingering in TIME_WAIT is skipped as well.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _run(
    cmd: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = START_TIMEOUT,
) -> str:
    """Run ``cmd`` as the server user and return its stdout; raise on failure."""
    user = server_user()
    try:
        result = subprocess.run(
            list(cmd),
            cwd=cwd,  # the caller's cwd (e.g. /root) may not be readable by the server user
            env=user.env(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,  # failures are reported below, with the tool's output
            **user.popen_kwargs(),
        )
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"`{shlex.join(cmd)}` timed out after {timeout:g}s") from exc
    if result.returncode != 0:
        raise HarnessError(
            f"`{shlex.join(cmd)}` exited with {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result.stdout


def _make_workdir(kind: str) -> Path:
    """Create a private temp dir owned by the server user."""
    user = server_user()
    parent = Path(tempfile.gettempdir()).resolve()
    # The server user must be able to reach the directory, and Unix socket paths are
    # limited to ~107 bytes, so fall back to /tmp when $TMPDIR does not fit.
    if len(str(parent)) > 60 or not _traversable_by(parent, user):
        parent = Path("/tmp")
    path = Path(tempfile.mkdtemp(prefix=f"pgharness-{kind}-", dir=parent))
    user.chown(path)
    return path


def _traversable_by(path: Path, user: ServerUser) -> bool:
    if user.is_current:
        return os.access(path, os.X_OK)
    for directory in (path, *path.parents):
        info = directory.stat()
        if info.st_uid == user.uid:
            needed = stat.S_IXUSR
        elif info.st_gid in user.groups:
            needed = stat.S_IXGRP
        else:
            needed = stat.S_IXOTH
        if not info.st_mode & needed:
            return False
    return True


def _write_file(path: Path, text: str) -> None:
    """Write a file readable only by the server user."""
    path.write_text(text)
    path.chmod(0o600)
    server_user().chown(path)


def _read_text(path: Path, offset: int = 0) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _with_log_tail(message: str, log_path: Path) -> str:
    tail = _read_text(log_path).splitlines()[-LOG_TAIL_LINES:]
    return f"{message}\n--- last lines of {log_path} ---\n" + "\n".join(tail)


def _new_password() -> str:
    # Characters that need URL quoting make sure url() callers exercise the quoting.
    return secrets.token_urlsafe(18) + "/@:%"


def _pg_setting(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _quote_userlist(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _url(user: str, password: str, host: str, port: int, dbname: str) -> str:
    def quote(part: str) -> str:
        return urllib.parse.quote(part, safe="")

    return f"postgres://{quote(user)}:{quote(password)}@{host}:{port}/{quote(dbname)}"


# --------------------------------------------------------------------------- lifecycle

_live_servers: dict[int, _Server] = {}
_owner_pid = os.getpid()


@atexit.register
def _close_all() -> None:
    """Safety net for servers whose owner forgot to close them."""
    if os.getpid() != _owner_pid:  # a forked child must not kill its parent's servers
        return
    for server in reversed(list(_live_servers.values())):
        with contextlib.suppress(Exception):  # best effort while the interpreter exits
            server.close()


class _Server:
    """Temp-dir ownership, cleanup and context-manager plumbing shared by all servers."""

    kind = "server"
    log_path: Path

    def __init__(self) -> None:
        self.host = LOOPBACK
        self.port = 0
        self._closed = False
        self.workdir = _make_workdir(self.kind)
        _live_servers[id(self)] = self

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.host}:{self.port} in {self.workdir}>"

    def log_text(self) -> str:
        """The server's log so far, for diagnostics."""
        return _read_text(self.log_path)

    def start(self) -> None:
        """Start the server on its current port (subclasses implement this)."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop the server for good and delete its directory. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        _live_servers.pop(id(self), None)
        try:
            self._kill()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _kill(self) -> None:
        """Stop whatever is running, however it got there (subclasses implement this)."""
        raise NotImplementedError

    @contextlib.contextmanager
    def _closing_on_error(self) -> Iterator[None]:
        """Close a half-built server so a failed constructor leaks nothing."""
        try:
            yield
        except BaseException:
            self.close()
            raise

    def _start_on_free_port(self) -> None:
        """Start on a fresh port, retrying when another process steals it first."""
        for _ in range(PORT_ATTEMPTS):
            self.port = pick_port()
            self._configure()
            try:
                self.start()
            except _PortTaken:
                continue
            return
        raise HarnessError(
            _with_log_tail(f"{self.kind}: every port tried was taken", self.log_path)
        )

    def _configure(self) -> None:
        """Write the configuration for the current port (subclasses implement this)."""
        raise NotImplementedError


# --------------------------------------------------------------------------- PostgreSQL


class _Postgres(_Server):
    """A PostgreSQL data directory run with ``pg_ctl``; base of Primary and Replica."""

    def __init__(self, settings: Mapping[str, object] | None = None) -> None:
        super().__init__()
        self.socket_dir = self.workdir
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "postgres.log"
        self.settings = dict(settings or {})
        self._running = False

    # Connection details ------------------------------------------------------------

    def password(self, user: str = APP_USER) -> str:
        """The password of login role ``user`` (subclasses implement this)."""
        raise NotImplementedError

    def url(self, user: str = APP_USER, dbname: str = APP_DB) -> str:
        """A ``postgres://`` URL reaching the server over TCP with password auth."""
        return _url(user, self.password(user), self.host, self.port, dbname)

    def superuser_conninfo(self, dbname: str = "postgres") -> str:
        """A libpq conninfo for the superuser over the Unix socket (trust auth)."""
        return make_conninfo(
            host=str(self.socket_dir), port=self.port, user=SUPERUSER, dbname=dbname
        )

    def execute(
        self, query: Query, params: Params | None = None, dbname: str = "postgres"
    ) -> list[tuple[Any, ...]]:
        """Run one statement as superuser in autocommit mode and return its rows."""
        with psycopg.connect(self.superuser_conninfo(dbname), autocommit=True) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    @property
    def pid(self) -> int | None:
        """The postmaster's process id, or None when it is not running."""
        first_line = _read_text(self.data_dir / "postmaster.pid").partition("\n")[0]
        return int(first_line) if first_line.strip() else None

    # Lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the server on its current port (no-op when it is running)."""
        if self._running:
            return
        log_offset = _file_size(self.log_path)
        try:
            self._pg_ctl("start", "-l", str(self.log_path), "-t", str(int(START_TIMEOUT)))
        except HarnessError as exc:
            if "Address already in use" in _read_text(self.log_path, log_offset):
                raise _PortTaken(self.port) from exc
            message = f"{self.kind} failed to start on port {self.port}"
            raise HarnessError(_with_log_tail(message, self.log_path)) from exc
        self._running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server, keeping its data for a later ``start()``."""
        if not self._running:
            return
        self._pg_ctl("stop", "-m", mode)
        self._running = False

    def _kill(self) -> None:
        # Also covers a postmaster that outlived a failed `pg_ctl start -w` timeout.
        if (self.data_dir / "postmaster.pid").exists():
            self._pg_ctl("stop", "-m", "immediate")
        self._running = False

    def _pg_ctl(self, action: str, *args: str) -> None:
        _run(
            [str(pg_bindir() / "pg_ctl"), action, "-D", str(self.data_dir), "-w", *args],
            cwd=self.workdir,
        )

    def _configure(self) -> None:
        """(Re)write harness.conf, which postgresql.conf includes last."""
        settings: dict[str, object] = {
            "listen_addresses": LOOPBACK,
            "port": self.port,
            "unix_socket_directories": str(self.socket_dir),
            # Durability is pointless for throwaway data and costs a lot of time.
            "fsync": False,
            "synchronous_commit": False,
            "full_page_writes": False,
            "wal_level": "replica",
            "max_wal_senders": 10,
            # Lets a replica that was stopped for a while catch up without a slot.
            "wal_keep_size": "128MB",
            "hot_standby": True,
            # Replicas reconnect quickly after the primary restarts (default 5s).
            "wal_retrieve_retry_interval": "200ms",
            "max_connections": 200,
            "password_encryption": "scram-sha-256",
            "logging_collector": False,  # pg_ctl -l captures stderr into postgres.log
            "log_line_prefix": "%m [%p] %q%u@%d ",
            **self.settings,
        }
        lines = [f"{name} = {_pg_setting(value)}" for name, value in settings.items()]
        _write_file(self.data_dir / "harness.conf", "\n".join(lines) + "\n")


class Primary(_Postgres):
    """A fresh PostgreSQL cluster, started and ready for the ``app`` role.

    Roles: ``postgres`` (superuser, Unix socket only), ``app`` (CREATEDB, owns database
    ``app``) and ``replicator`` (REPLICATION), the latter two with random passwords and
    SCRAM authentication over TCP. ``settings`` add to or override postgresql.conf.
    """

    kind = "primary"

    def __init__(self, settings: Mapping[str, object] | None = None) -> None:
        super().__init__(settings)
        self._passwords = {APP_USER: _new_password(), REPLICATION_USER: _new_password()}
        with self._closing_on_error():
            self._initdb()
            self._start_on_free_port()
            self._create_roles()

    def password(self, user: str = APP_USER) -> str:
        """The password of login role ``user``."""
        try:
            return self._passwords[user]
        except KeyError:
            raise HarnessError(f"no password known for role {user!r}") from None

    def _initdb(self) -> None:
        _run(
            [
                str(pg_bindir() / "initdb"),
                "--pgdata",
                str(self.data_dir),
                "--username",
                SUPERUSER,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",  # identical behaviour whatever the host's locale is
                "--no-sync",
            ],
            cwd=self.workdir,
        )
        _write_file(
            self.data_dir / "pg_hba.conf",
            "local all all trust\n"
            f"host all all {LOOPBACK}/32 scram-sha-256\n"
            f"host replication all {LOOPBACK}/32 scram-sha-256\n",
        )
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude 'harness.conf'\n")

    def _create_roles(self) -> None:
        statements = [
            sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                sql.Identifier(APP_USER), sql.Literal(self._passwords[APP_USER])
            ),
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(APP_DB), sql.Identifier(APP_USER)
            ),
            sql.SQL("CREATE ROLE {} LOGIN REPLICATION PASSWORD {}").format(
                sql.Identifier(REPLICATION_USER), sql.Literal(self._passwords[REPLICATION_USER])
            ),
        ]
        with psycopg.connect(self.superuser_conninfo(), autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)


class Replica(_Postgres):
    """A hot standby streaming from ``primary``, cloned with ``pg_basebackup``."""

    kind = "replica"

    def __init__(self, primary: Primary, settings: Mapping[str, object] | None = None) -> None:
        # A standby needs max_connections & co. >= the primary's, so inherit its settings.
        super().__init__({**primary.settings, **(settings or {})})
        self.primary = primary
        with self._closing_on_error():
            self._base_backup()
            self._start_on_free_port()

    def password(self, user: str = APP_USER) -> str:
        """The password of login role ``user`` (roles are replicated from the primary)."""
        return self.primary.password(user)

    def wait_for_replay(self, primary: Primary | None = None, timeout: float = 10.0) -> None:
        """Block until everything written on the primary so far has been replayed here."""
        self._wait_for_wal("pg_last_wal_replay_lsn", "replayed", primary, timeout)

    def wait_for_receive(self, primary: Primary | None = None, timeout: float = 10.0) -> None:
        """Block until everything written on the primary so far has reached this replica.

        Unlike ``wait_for_replay`` this also returns while replay is paused.
        """
        self._wait_for_wal("pg_last_wal_receive_lsn", "received", primary, timeout)

    def pause_replay(self) -> None:
        """Stop applying WAL; new changes on the primary stay invisible here."""
        self.execute("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        """Apply WAL again after ``pause_replay()``."""
        self.execute("SELECT pg_wal_replay_resume()")

    def _base_backup(self) -> None:
        primary = self.primary
        _run(
            [
                str(pg_bindir() / "pg_basebackup"),
                "--host",
                primary.host,
                "--port",
                str(primary.port),
                "--username",
                REPLICATION_USER,
                "--pgdata",
                str(self.data_dir),
                "--write-recovery-conf",
                "--checkpoint=fast",  # the default spread checkpoint takes minutes
                "--wal-method=stream",
                "--no-sync",
            ],
            cwd=self.workdir,
            env={"PGPASSWORD": primary.password(REPLICATION_USER)},
        )

    def _wait_for_wal(
        self, function: str, verb: str, primary: Primary | None, timeout: float
    ) -> None:
        target = _committed_wal_lsn(primary or self.primary)
        query = sql.SQL("SELECT coalesce({fn}() >= %s::pg_lsn, false), {fn}()").format(
            fn=sql.Identifier(function)
        )
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.superuser_conninfo(), autocommit=True) as conn:
            while True:
                done, current = conn.execute(query, [target]).fetchone() or (False, None)
                if done:
                    return
                if time.monotonic() > deadline:
                    message = (
                        f"replica has {verb} WAL up to {current} but not {target} "
                        f"after {timeout:g}s (is replay paused? is the primary reachable?)"
                    )
                    raise HarnessError(_with_log_tail(message, self.log_path))
                time.sleep(0.01)


def _committed_wal_lsn(primary: Primary) -> str:
    """The primary's WAL write position, covering every transaction committed so far.

    With synchronous_commit=off a commit returns before its WAL is written, so
    pg_current_wal_lsn() alone can miss it (and pg_current_wal_insert_lsn() may point past
    a page header the replica never reports). A synchronous commit flushes all WAL
    inserted before it, but only for a transaction that wrote WAL itself: hence the
    transactional logical message.
    """
    with psycopg.connect(primary.superuser_conninfo(), autocommit=True) as conn:
        conn.execute("SET synchronous_commit = on")
        conn.execute("SELECT pg_logical_emit_message(true, 'harness', 'flush')")
        row = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
    assert row is not None
    return row[0]


# --------------------------------------------------------------------------- PgBouncer


class PgBouncer(_Server):
    """PgBouncer in front of ``primary``, authenticating ``users`` with SCRAM.

    Every database name is routed to the primary (Django's ``test_<name>`` included).
    The auth file holds the primary's stored SCRAM secrets, never a plaintext password;
    PgBouncer reuses the client's SCRAM proof to log in to the server. The users are also
    admin users, so ``show("POOLS")`` works on the ``pgbouncer`` console database.
    """

    kind = "pgbouncer"

    def __init__(
        self,
        primary: Primary,
        *,
        default_pool_size: int = 5,
        pool_mode: str = "transaction",
        users: Iterable[str] = (APP_USER,),
        settings: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__()
        self.primary = primary
        self.default_pool_size = default_pool_size
        self.pool_mode = pool_mode
        self.users = tuple(users)
        self.settings = dict(settings or {})
        self.ini_path = self.workdir / "pgbouncer.ini"
        self.auth_file = self.workdir / "userlist.txt"
        self.log_path = self.workdir / "pgbouncer.log"
        self._process: subprocess.Popen[bytes] | None = None
        with self._closing_on_error():
            self._write_auth_file()
            self._start_on_free_port()

    def url(self, dbname: str = APP_DB, user: str = APP_USER) -> str:
        """A ``postgres://`` URL reaching ``dbname`` on the primary through PgBouncer."""
        return _url(user, self.primary.password(user), self.host, self.port, dbname)

    def show(self, what: str) -> list[dict[str, Any]]:
        """Run ``SHOW <what>`` (POOLS, CONFIG, CLIENTS...) on the admin console."""
        if not re.fullmatch(r"[A-Za-z_]+", what):
            raise ValueError(f"not a SHOW subject: {what!r}")
        # The admin console only speaks the simple query protocol: hence ClientCursor.
        with (
            psycopg.connect(
                self.url("pgbouncer"), autocommit=True, cursor_factory=psycopg.ClientCursor
            ) as conn,
            conn.cursor(row_factory=dict_row) as cursor,
        ):
            cursor.execute(sql.SQL("SHOW {}").format(sql.SQL(what)))
            return cursor.fetchall()

    @property
    def pid(self) -> int | None:
        """The pgbouncer process id, or None when it is not running."""
        return self._process.pid if self._process else None

    def start(self) -> None:
        """Start PgBouncer on its current port and wait until a query goes through."""
        if self._process is not None:
            return
        user = server_user()
        log_offset = _file_size(self.log_path)
        # A socket left over from an earlier run would fool _wait_until_ready.
        self._socket_path.unlink(missing_ok=True)
        with self.log_path.open("ab") as log:
            # Foreground process (no -d) so we own its lifetime; it logs to stderr.
            self._process = subprocess.Popen(
                [pgbouncer_path(), str(self.ini_path)],
                cwd=self.workdir,
                env=user.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # keep terminal Ctrl-C away; teardown stops it
                **user.popen_kwargs(),
            )
        try:
            self._wait_until_ready(log_offset)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop PgBouncer (its configuration is kept for a later ``start()``)."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()  # SIGTERM is an immediate shutdown in PgBouncer 1.18
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _kill(self) -> None:
        self.stop()

    def _wait_until_ready(self, log_offset: int) -> None:
        assert self._process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._process.poll() is not None:
                message = f"pgbouncer exited with {self._process.returncode} on startup"
                raise HarnessError(_with_log_tail(message, self.log_path))
            # PgBouncer 1.18 only warns when the TCP port is taken and carries on with
            # its Unix socket, so the log is the only way to notice. The socket file
            # appears after the TCP bind was attempted (and logged).
            if self._socket_path.exists():
                if "Address already in use" in _read_text(self.log_path, log_offset):
                    raise _PortTaken(self.port)
                try:
                    with psycopg.connect(self.url(), autocommit=True, connect_timeout=5) as conn:
                        conn.execute("SELECT 1")
                    return
                except psycopg.OperationalError as exc:
                    if time.monotonic() > deadline:
                        message = f"pgbouncer on port {self.port} never answered: {exc}"
                        raise HarnessError(_with_log_tail(message, self.log_path)) from exc
            elif time.monotonic() > deadline:
                message = f"pgbouncer did not open {self._socket_path}"
                raise HarnessError(_with_log_tail(message, self.log_path))
            time.sleep(0.02)

    @property
    def _socket_path(self) -> Path:
        return self.workdir / f".s.PGSQL.{self.port}"

    def _write_auth_file(self) -> None:
        rows = self.primary.execute(
            "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = ANY(%s)",
            [list(self.users)],
        )
        secrets_by_user = dict(rows)
        for user in self.users:
            if not (secrets_by_user.get(user) or "").startswith("SCRAM-SHA-256$"):
                raise HarnessError(f"role {user!r} has no SCRAM secret on the primary")
        lines = [
            f"{_quote_userlist(user)} {_quote_userlist(secrets_by_user[user])}"
            for user in self.users
        ]
        _write_file(self.auth_file, "\n".join(lines) + "\n")

    def _configure(self) -> None:
        settings: dict[str, object] = {
            "listen_addr": LOOPBACK,
            "listen_port": self.port,
            "unix_socket_dir": self.workdir,
            "auth_type": "scram-sha-256",
            "auth_file": self.auth_file,
            "pool_mode": self.pool_mode,
            "default_pool_size": self.default_pool_size,
            # No extra connections beyond default_pool_size, so the limit is exact.
            "reserve_pool_size": 0,
            "max_client_conn": 500,
            "admin_users": ",".join(self.users),
            "ignore_startup_parameters": "extra_float_digits",
            # Retry a failed server login after 1s instead of 15s (e.g. primary restart).
            "server_login_retry": 1,
            **self.settings,
        }
        primary = self.primary
        lines = [
            "[databases]",
            f"* = host={primary.host} port={primary.port}",
            "",
            "[pgbouncer]",
            *(f"{name} = {value}" for name, value in settings.items()),
        ]
        _write_file(self.ini_path, "\n".join(lines) + "\n")
