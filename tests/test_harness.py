"""Specifications of the throwaway database servers provided by devtools/harness/."""

import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from devtools.harness import (
    EPHEMERAL_PORTS,
    REPLICATION_USER,
    SERVER_PORTS,
    HarnessError,
    PgBouncer,
    Primary,
    Replica,
    Restored,
    ShippedPgBouncer,
    pg_bindir,
    pick_port,
    server_user,
)
from devtools.harness.host import run


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def _process_uid(pid: int | None) -> int:
    assert pid is not None, "server is not running"
    return os.stat(f"/proc/{pid}").st_uid


def _insert(server: Primary | Restored, table: str, row_id: int) -> None:
    query = sql.SQL("INSERT INTO {} VALUES (%s)").format(sql.Identifier(table))
    server.execute(query, [row_id], dbname="app")


def _ids(server: Primary | Restored, table: str) -> list[int]:
    query = sql.SQL("SELECT id FROM {} ORDER BY id").format(sql.Identifier(table))
    return [row_id for (row_id,) in server.execute(query, dbname="app")]


@pytest.fixture
def table(pg_primary: Primary) -> Iterator[str]:
    """A fresh, empty table in database ``app`` on the primary."""
    name = _unique("harness")
    pg_primary.execute(
        sql.SQL("CREATE TABLE {} (id int PRIMARY KEY)").format(sql.Identifier(name)), dbname="app"
    )
    yield name
    pg_primary.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)), dbname="app")


# --------------------------------------------------------------------------- ports


def test_pick_port_stays_outside_the_ephemeral_range() -> None:
    ports = [pick_port() for _ in range(50)]

    assert all(port in SERVER_PORTS and port not in EPHEMERAL_PORTS for port in ports)


def test_servers_listen_outside_the_ephemeral_range(
    pg_primary: Primary, pg_replica: Replica, pgbouncer: PgBouncer
) -> None:
    ports = {pg_primary.port, pg_replica.port, pgbouncer.port}

    assert len(ports) == 3
    assert not ports & set(EPHEMERAL_PORTS)


# --------------------------------------------------------------------------- primary


def test_primary_accepts_the_app_role_over_tcp_with_scram(pg_primary: Primary) -> None:
    with psycopg.connect(pg_primary.url()) as conn:
        row = conn.execute("SELECT current_user, host(inet_server_addr())").fetchone()
    (secret,) = pg_primary.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'app'")[0]

    assert row == ("app", "127.0.0.1")
    assert secret.startswith("SCRAM-SHA-256$")


def test_primary_rejects_a_wrong_password(pg_primary: Primary) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(
            host=pg_primary.host, port=pg_primary.port, user="app", password="wrong", dbname="app"
        )


def test_app_role_can_create_databases_like_djangos_test_runner(pg_primary: Primary) -> None:
    name = sql.Identifier(_unique("test"))
    with psycopg.connect(pg_primary.url(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
        conn.execute(sql.SQL("DROP DATABASE {}").format(name))


def test_primary_runs_as_an_unprivileged_os_user(pg_primary: Primary) -> None:
    uid = _process_uid(pg_primary.pid)

    assert uid != 0
    assert uid == server_user().uid


def test_startup_failure_reports_the_server_log() -> None:
    with pytest.raises(HarnessError, match='unrecognized configuration parameter "no_such_gu'):
        Primary(settings={"no_such_guc": 1})


# --------------------------------------------------------------------------- replica


def test_replica_is_in_recovery(pg_replica: Replica) -> None:
    assert pg_replica.execute("SELECT pg_is_in_recovery()") == [(True,)]


def test_replica_receives_rows_written_on_the_primary(
    pg_primary: Primary, pg_replica: Replica, table: str
) -> None:
    _insert(pg_primary, table, 1)

    pg_replica.wait_for_replay()

    assert _ids(pg_replica, table) == [1]


def test_paused_replay_hides_new_rows_until_resumed(
    pg_primary: Primary, pg_replica: Replica, table: str
) -> None:
    pg_replica.wait_for_replay()  # the table itself must exist on the replica
    pg_replica.pause_replay()
    try:
        _insert(pg_primary, table, 1)
        pg_replica.wait_for_receive()  # the row's WAL has arrived, it is just not applied

        assert _ids(pg_replica, table) == []
    finally:
        pg_replica.resume_replay()
    pg_replica.wait_for_replay()

    assert _ids(pg_replica, table) == [1]


def test_replica_can_be_stopped_and_started(
    pg_primary: Primary, pg_replica: Replica, table: str
) -> None:
    pg_replica.stop()
    try:
        _insert(pg_primary, table, 1)  # written while the replica is down
    finally:
        pg_replica.start()

    pg_replica.wait_for_replay()

    assert _ids(pg_replica, table) == [1]
    assert pg_replica.execute("SELECT pg_is_in_recovery()") == [(True,)]


# --------------------------------------------------------------------------- restored


def test_restored_server_starts_from_its_restore_with_the_primarys_rows_and_its_own(
    pg_primary: Primary, table: str
) -> None:
    _insert(pg_primary, table, 1)

    def copy_without_standby_settings(data_dir: Path) -> None:
        run(
            [str(pg_bindir() / "pg_basebackup"), "--pgdata", str(data_dir),
             "--host", pg_primary.host, "--port", str(pg_primary.port),
             "--username", REPLICATION_USER, "--checkpoint=fast", "--no-sync"],
            cwd=data_dir.parent,
            env={"PGPASSWORD": pg_primary.password(REPLICATION_USER)},
        )  # fmt: skip

    with Restored(pg_primary, copy_without_standby_settings) as restored:
        restored.wait_until_writable()
        _insert(restored, table, 2)

        assert _ids(restored, table) == [1, 2]
    assert _ids(pg_primary, table) == [1]


# --------------------------------------------------------------------------- pgbouncer


@pytest.fixture(scope="module")
def bouncer(pg_primary: Primary) -> Iterator[PgBouncer]:
    """PgBouncer configured by the harness: pool of 5, no reserve, any database routed."""
    with PgBouncer(pg_primary) as server:
        yield server


def test_pgbouncer_answers_queries_with_scram(bouncer: PgBouncer) -> None:
    with psycopg.connect(bouncer.url()) as conn:
        row = conn.execute("SELECT current_user, current_database()").fetchone()

    assert row == ("app", "app")


def test_pgbouncer_rejects_a_wrong_password(bouncer: PgBouncer) -> None:
    # PgBouncer 1.18 words it "SASL authentication failed".
    with pytest.raises(psycopg.OperationalError, match="authentication failed"):
        psycopg.connect(
            host=bouncer.host, port=bouncer.port, user="app", password="wrong", dbname="app"
        )


def test_pgbouncer_pools_in_transaction_mode(bouncer: PgBouncer) -> None:
    modes = {pool["database"]: pool["pool_mode"] for pool in bouncer.show("POOLS")}

    assert modes["app"] == "transaction"


def test_pgbouncer_auth_file_holds_the_scram_secret_not_the_password(
    pg_primary: Primary, bouncer: PgBouncer
) -> None:
    auth_file = bouncer.auth_file.read_text()

    assert auth_file.startswith('"app" "SCRAM-SHA-256$')
    assert pg_primary.password("app") not in auth_file


def test_pgbouncer_routes_any_database_name_to_the_primary(
    pg_primary: Primary, bouncer: PgBouncer
) -> None:
    name = _unique("test_app")
    pg_primary.execute(sql.SQL("CREATE DATABASE {} OWNER app").format(sql.Identifier(name)))
    try:
        with psycopg.connect(bouncer.url(name)) as conn:
            row = conn.execute("SELECT current_database()").fetchone()
    finally:
        # FORCE: PgBouncer keeps its idle server connection to the database open.
        pg_primary.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))

    assert row == (name,)


def test_pgbouncer_never_opens_more_server_connections_than_the_pool_size(
    pg_primary: Primary, bouncer: PgBouncer
) -> None:
    # PgBouncer forwards application_name, so it tags the server connections it lends out.
    app_name = _unique("pool")
    done = threading.Event()
    peak = 0

    def watch_server_connections() -> None:
        nonlocal peak
        query = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
        with psycopg.connect(pg_primary.superuser_conninfo(), autocommit=True) as conn:
            while not done.is_set():
                (count,) = conn.execute(query, [app_name]).fetchone() or (0,)
                peak = max(peak, count)
                time.sleep(0.002)

    def one_transaction(_: int) -> None:
        with psycopg.connect(bouncer.url(), application_name=app_name) as conn:
            conn.execute("SELECT pg_sleep(0.05)")  # inside a transaction; committed on exit

    watcher = threading.Thread(target=watch_server_connections)
    watcher.start()
    try:
        with ThreadPoolExecutor(max_workers=20) as clients:
            list(clients.map(one_transaction, range(20)))
    finally:
        done.set()
        watcher.join()

    assert 1 <= peak <= bouncer.default_pool_size


def test_pgbouncer_runs_as_an_unprivileged_os_user(bouncer: PgBouncer) -> None:
    uid = _process_uid(bouncer.pid)

    assert uid != 0
    assert uid == server_user().uid


def test_pgbouncer_moves_to_another_port_when_its_port_is_taken(
    pg_primary: Primary, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken, pick_port()])
        monkeypatch.setattr("devtools.harness.server.pick_port", lambda: next(ports))

        with PgBouncer(pg_primary) as bouncer, psycopg.connect(bouncer.url()) as conn:
            assert bouncer.port != taken
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_close_stops_the_server_and_removes_its_directory(pg_primary: Primary) -> None:
    with PgBouncer(pg_primary) as bouncer:
        workdir, pid = bouncer.workdir, bouncer.pid

    assert not workdir.exists()
    assert not Path(f"/proc/{pid}").exists()


# --------------------------------------------------------------------------- shipped pgbouncer

# What the harness changes in a shipped pgbouncer.ini to run it here.
RUN_HERE = {
    "listen_addr",
    "listen_port",
    "unix_socket_dir",
    "auth_file",
    "client_tls_key_file",
    "client_tls_cert_file",
}
DATABASE_ENTRIES = {"app", "test_app"}


def _key(line: str) -> str | None:
    match = re.match(r"\s*([\w.]+)\s*=", line)
    return match[1] if match else None


def _without_address(entry: str) -> str:
    return re.sub(r"\b(host|port)=\S*", "", entry)


def test_shipped_pgbouncer_changes_only_addresses_ports_and_paths(
    pgbouncer: ShippedPgBouncer,
) -> None:
    lines = zip(
        pgbouncer.shipped.splitlines(), pgbouncer.ini_path.read_text().splitlines(), strict=True
    )
    changed = {(shipped, used) for shipped, used in lines if shipped != used}

    assert {_key(shipped) for shipped, _ in changed} == RUN_HERE | DATABASE_ENTRIES
    entries = [pair for pair in changed if _key(pair[0]) in DATABASE_ENTRIES]
    assert all(_without_address(shipped) == _without_address(used) for shipped, used in entries)


def test_shipped_pgbouncer_listens_on_loopback_only(pgbouncer: ShippedPgBouncer) -> None:
    config = {row["key"]: row["value"] for row in pgbouncer.show("CONFIG")}

    assert config["listen_addr"] == "127.0.0.1"
