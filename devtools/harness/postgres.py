"""A throwaway PostgreSQL primary, its streaming replicas and servers restored from backups."""

import secrets
import time
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.abc import Params, Query
from psycopg.conninfo import make_conninfo

from devtools.harness.errors import HarnessError, PortTaken
from devtools.harness.host import START_TIMEOUT, file_size, pg_bindir, read_text, run, write_file
from devtools.harness.ports import LOOPBACK
from devtools.harness.server import Server, with_log_tail

SUPERUSER = "postgres"
APP_USER = "app"
APP_DB = "app"
REPLICATION_USER = "replicator"


def connection_url(user: str, password: str, host: str, port: int, dbname: str) -> str:
    """A ``postgres://`` URL with every part quoted."""

    def quote(part: str) -> str:
        return urllib.parse.quote(part, safe="")

    return f"postgres://{quote(user)}:{quote(password)}@{host}:{port}/{quote(dbname)}"


def _new_password() -> str:
    # Characters that need URL quoting make sure url() callers exercise the quoting.
    return secrets.token_urlsafe(18) + "/@:%"


def _pg_setting(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


class _Postgres(Server):
    """A PostgreSQL data directory run with ``pg_ctl``; base of Primary, Restored and Replica."""

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
        return connection_url(user, self.password(user), self.host, self.port, dbname)

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
        first_line = read_text(self.data_dir / "postmaster.pid").partition("\n")[0]
        return int(first_line) if first_line.strip() else None

    # Lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the server on its current port (no-op when it is running)."""
        if self._running:
            return
        log_offset = file_size(self.log_path)
        try:
            self._pg_ctl("start", "-l", str(self.log_path), "-t", str(int(START_TIMEOUT)))
        except HarnessError as exc:
            if "Address already in use" in read_text(self.log_path, log_offset):
                raise PortTaken(self.port) from exc
            message = f"{self.kind} failed to start on port {self.port}"
            raise HarnessError(with_log_tail(message, self.log_path)) from exc
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
        run(
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
        write_file(self.data_dir / "harness.conf", "\n".join(lines) + "\n")


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
        run(
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
        write_file(
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


class Restored(_Postgres):
    """A server started from the data directory that ``restore(data_dir)`` makes.

    ``restore`` is typically a backup tool's restore, run as the server user with
    ``devtools.harness.host.run``; ``data_dir`` does not exist yet. The server has
    ``primary``'s roles (they come with the data) and starts on a fresh port with the
    harness's settings plus ``settings``. Whatever recovery the restore set up (signal files,
    ``postgresql.auto.conf``) starts with it: see ``wait_until_writable``.
    """

    kind = "restored"

    def __init__(
        self,
        primary: Primary,
        restore: Callable[[Path], object],
        settings: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(settings)
        self.primary = primary
        with self._closing_on_error():
            restore(self.data_dir)
            self._start_on_free_port()

    def password(self, user: str = APP_USER) -> str:
        """The password of login role ``user`` (roles are restored with the data)."""
        return self.primary.password(user)

    def wait_until_writable(self, timeout: float = START_TIMEOUT) -> None:
        """Block until recovery has ended, e.g. a point-in-time recovery reached its target.

        With ``hot_standby`` on, ``start()`` returns once the server is consistent and
        accepts reads, which may be long before the end of the WAL it has to replay.
        """
        deadline = time.monotonic() + timeout
        while self.execute("SELECT pg_is_in_recovery()")[0][0]:
            if time.monotonic() > deadline:
                message = f"{self.kind} still in recovery after {timeout:g}s"
                raise HarnessError(with_log_tail(message, self.log_path))
            time.sleep(0.05)


class Replica(Restored):
    """A hot standby streaming from ``primary``, cloned with ``pg_basebackup``.

    ``clone(data_dir)`` replaces ``pg_basebackup`` (e.g. a backup tool's standby restore);
    it must leave ``standby.signal`` and a ``primary_conninfo`` reaching ``primary``.
    """

    kind = "replica"

    def __init__(
        self,
        primary: Primary,
        settings: Mapping[str, object] | None = None,
        *,
        clone: Callable[[Path], object] | None = None,
    ) -> None:
        # A standby needs max_connections & co. >= the primary's, so inherit its settings.
        settings = {**primary.settings, **(settings or {})}
        super().__init__(primary, clone or self._base_backup, settings)

    def wait_for_replay(self, primary: Primary | None = None, timeout: float = 10.0) -> None:
        """Block until everything written on the primary so far has been replayed here."""
        self._wait_for_wal("pg_last_wal_replay_lsn", "replayed", primary, timeout)

    def wait_for_receive(self, primary: Primary | None = None, timeout: float = 10.0) -> None:
        """Block until everything written on the primary so far has reached this replica.

        Unlike ``wait_for_replay`` this also returns while replay is paused.
        """
        self._wait_for_wal("pg_last_wal_receive_lsn", "received", primary, timeout)

    def promote(self) -> None:
        """End recovery here, as a failover does: this server becomes a primary."""
        self._pg_ctl("promote")
        self.wait_until_writable()

    def pause_replay(self) -> None:
        """Stop applying WAL; new changes on the primary stay invisible here."""
        self.execute("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        """Apply WAL again after ``pause_replay()``."""
        self.execute("SELECT pg_wal_replay_resume()")

    def _base_backup(self, data_dir: Path) -> None:
        primary = self.primary
        run(
            [
                str(pg_bindir() / "pg_basebackup"),
                "--host",
                primary.host,
                "--port",
                str(primary.port),
                "--username",
                REPLICATION_USER,
                "--pgdata",
                str(data_dir),
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
                    raise HarnessError(with_log_tail(message, self.log_path))
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
