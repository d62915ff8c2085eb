"""A throwaway PgBouncer in front of a primary."""

import re
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
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
    server_user,
    write_file,
)
from devtools.harness.ports import LOOPBACK
from devtools.harness.postgres import APP_DB, APP_USER, Primary, connection_url
from devtools.harness.server import Server, with_log_tail


def _quote_userlist(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


class PgBouncer(Server):
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
        return connection_url(user, self.primary.password(user), self.host, self.port, dbname)

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
