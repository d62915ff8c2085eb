"""A throwaway PgBouncer in front of a primary: configured by the harness, or run from a
project's shipped ``deploy/pgbouncer/pgbouncer.ini``."""

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from devtools.harness.errors import HarnessError, PortTaken
from devtools.harness.host import (
    START_TIMEOUT,
    file_size,
    pgbouncer_path,
    read_text,
    self_signed_certificate,
    server_user,
    write_file,
)
from devtools.harness.ports import LOOPBACK
from devtools.harness.postgres import APP_DB, APP_USER, Primary, Replica, connection_url
from devtools.harness.server import Server, with_log_tail

# Settings whose value is a file on the PgBouncer host.
FILE_SETTINGS = frozenset(
    {
        "auth_file",
        "auth_hba_file",
        "client_tls_ca_file",
        "client_tls_cert_file",
        "client_tls_key_file",
        "logfile",
        "pidfile",
        "server_tls_ca_file",
        "server_tls_cert_file",
        "server_tls_key_file",
    }
)
_SECTION = re.compile(r"\s*\[(?P<name>[^\]]*)\]\s*$")
_SETTING = re.compile(r"\s*(?P<key>[A-Za-z_][\w.]*)\s*=[ \t]*(?P<value>.*?)\s*$")
_ADDRESS = re.compile(r"(?<!\S)(?P<key>host|port)=\S*")


def ini_settings(text: str) -> dict[str, dict[str, str]]:
    """The settings of a pgbouncer.ini, by section then key."""
    sections: dict[str, dict[str, str]] = {}
    section = sections.setdefault("", {})
    for line in text.splitlines():
        if match := _SECTION.match(line):
            section = sections.setdefault(match["name"].strip(), {})
        elif match := _SETTING.match(line):
            section[match["key"]] = match["value"]
    return sections


def local_ini(shipped: str, *, directory: Path, port: int, primary_port: int) -> str:
    """Return the pgbouncer.ini ``shipped`` changed only where this machine must differ.

    ``listen_addr`` becomes the loopback address (nothing here listens on other interfaces)
    and ``listen_port`` becomes ``port``; ``unix_socket_dir`` becomes ``directory``, and so
    does the directory of every file (``auth_file``, the TLS key and certificate...); each
    ``[databases]`` entry gets the loopback address and ``primary_port`` as host and port.
    Every other line (pool sizes, timeouts, modes, console users, comments) is kept as is.
    """
    server = {"host": LOOPBACK, "port": str(primary_port)}
    listen = {"listen_addr": LOOPBACK, "listen_port": str(port), "unix_socket_dir": str(directory)}

    def local(section: str, key: str, value: str) -> str:
        if section == "databases":
            return _ADDRESS.sub(lambda match: f"{match['key']}={server[match['key']]}", value)
        if section != "pgbouncer":
            return value
        if key in FILE_SETTINGS and value:
            return str(relocated(value, directory))
        return listen.get(key, value)

    lines = []
    section = ""
    for line in shipped.splitlines(keepends=True):
        if match := _SECTION.match(line):
            section = match["name"].strip()
        elif match := _SETTING.match(line):
            value = local(section, match["key"], match["value"])
            line = line[: match.start("value")] + value + line[match.end("value") :]
        lines.append(line)
    return "".join(lines)


def relocated(path: str, directory: Path) -> Path:
    """Where the harness keeps the file that the shipped configuration names ``path``."""
    return directory / PurePosixPath(path).name


def _quote_userlist(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


class PgBouncer(Server):
    """PgBouncer in front of ``primary``, authenticating ``users`` with SCRAM.

    Every database name is routed to the primary (Django's ``test_<name>`` included).
    The auth file holds the primary's stored SCRAM secrets, never a plaintext password;
    PgBouncer reuses the client's SCRAM proof to log in to the server. The users are also
    admin users, so ``show("POOLS")`` works on the ``pgbouncer`` console database.
    ``url()`` reaches ``database`` as the first of ``users`` unless told otherwise.
    """

    kind = "pgbouncer"

    def __init__(
        self,
        primary: Primary,
        *,
        default_pool_size: int = 5,
        pool_mode: str = "transaction",
        users: Iterable[str] = (APP_USER,),
        database: str = APP_DB,
        settings: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__()
        self.primary = primary
        self.default_pool_size = default_pool_size
        self.pool_mode = pool_mode
        self.users = tuple(users)
        self.database = database
        self.settings = dict(settings or {})
        self.ini_path = self.workdir / "pgbouncer.ini"
        self.log_path = self.workdir / "pgbouncer.log"
        self._process: subprocess.Popen[bytes] | None = None
        with self._closing_on_error():
            self._write_files()
            self._start_on_free_port()

    @property
    def auth_file(self) -> Path:
        """PgBouncer's userlist.txt."""
        return self.workdir / "userlist.txt"

    def url(self, dbname: str | None = None, user: str | None = None) -> str:
        """A ``postgres://`` URL reaching ``dbname`` on the primary through PgBouncer."""
        user = user or self.users[0]
        return connection_url(
            user, self._password(user), self.host, self.port, dbname or self.database
        )

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
        log_offset = file_size(self.log_path)
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

    def follow(self, primary: Primary | Replica) -> None:
        """Route every database to ``primary`` from now on, as a failover script does:
        rewrite the configuration and reload it (SIGHUP), keeping every client connected."""
        self.primary = primary
        self._configure()
        if self._process is not None:
            os.kill(self._process.pid, signal.SIGHUP)

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
                raise HarnessError(with_log_tail(message, self.log_path))
            # PgBouncer 1.18 only warns when the TCP port is taken and carries on with
            # its Unix socket, so the log is the only way to notice. The socket file
            # appears after the TCP bind was attempted (and logged).
            if self._socket_path.exists():
                if "Address already in use" in read_text(self.log_path, log_offset):
                    raise PortTaken(self.port)
                try:
                    with psycopg.connect(self.url(), autocommit=True, connect_timeout=5) as conn:
                        conn.execute("SELECT 1")
                    return
                except psycopg.OperationalError as exc:
                    # PgBouncer checked the password and asked the server, which has no such
                    # database yet (a test's first step may create it): PgBouncer is up.
                    if f'database "{self.database}" does not exist' in str(exc):
                        return
                    if time.monotonic() > deadline:
                        message = f"pgbouncer on port {self.port} never answered: {exc}"
                        raise HarnessError(with_log_tail(message, self.log_path)) from exc
            elif time.monotonic() > deadline:
                message = f"pgbouncer did not open {self._socket_path}"
                raise HarnessError(with_log_tail(message, self.log_path))
            time.sleep(0.02)

    @property
    def _socket_path(self) -> Path:
        return self.workdir / f".s.PGSQL.{self.port}"

    def _password(self, user: str) -> str:
        return self.primary.password(user)

    def _write_files(self) -> None:
        self._write_auth_file()

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
        write_file(self.auth_file, "\n".join(lines) + "\n")

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
        write_file(self.ini_path, "\n".join(lines) + "\n")


class ShippedPgBouncer(PgBouncer):
    """PgBouncer run from a project's shipped ``deploy/pgbouncer/pgbouncer.ini`` (``shipped``).

    Everything but addresses, ports and paths comes from the file (see :func:`local_ini`):
    pool sizes, timeouts, pool mode, SCRAM authentication, client TLS and console users.
    The file routes the database named after the project (``database``, by default named
    as the role); the role is ``user``, with ``password`` (by default the one the primary
    gave it). The auth file holds the role's SCRAM secret as stored on the primary; the
    client TLS key and certificate are a throwaway self-signed pair.
    """

    def __init__(
        self,
        primary: Primary,
        shipped: str,
        *,
        user: str = APP_USER,
        password: str | None = None,
        database: str | None = None,
    ) -> None:
        self.shipped = shipped
        self.file_settings = ini_settings(shipped).get("pgbouncer", {})
        self._user_password = password
        super().__init__(
            primary,
            default_pool_size=int(self.file_settings.get("default_pool_size", 20)),
            pool_mode=self.file_settings.get("pool_mode", "session"),
            users=(user,),
            database=database or user,
        )

    @property
    def auth_file(self) -> Path:
        """PgBouncer's userlist.txt, where the shipped ``auth_file`` says, in the workdir."""
        return relocated(self.file_settings["auth_file"], self.workdir)

    def _password(self, user: str) -> str:
        if user == self.users[0] and self._user_password is not None:
            return self._user_password
        return super()._password(user)

    def _write_files(self) -> None:
        super()._write_files()
        key, cert = (self.file_settings.get(f"client_tls_{part}_file") for part in ("key", "cert"))
        if key and cert:
            self_signed_certificate(relocated(key, self.workdir), relocated(cert, self.workdir))

    def _configure(self) -> None:
        text = local_ini(
            self.shipped, directory=self.workdir, port=self.port, primary_port=self.primary.port
        )
        write_file(self.ini_path, text)
