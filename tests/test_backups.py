"""The backups a baked project ships, restored: a point-in-time recovery drill.

A primary archives its WAL with the baked ``deploy/backup/archiving.conf``; pgBackRest runs
with the baked ``pgbackrest.conf`` and takes its backups with the command of the baked systemd
unit. Only paths, ports and the passphrase differ from the shipped files. The backup files
depend on no option, so one project (with read replicas, for the standby rebuild) serves all.
"""

import configparser
import json
import re
import secrets
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import pytest
from psycopg.conninfo import make_conninfo

from devtools.bakery import bake
from devtools.harness import REPLICATION_USER, Primary, Replica, Restored, server_user
from devtools.harness.host import make_workdir, run, write_file

# One worker runs the whole module: its module-scoped projects are set up once.
pytestmark = pytest.mark.xdist_group("backups")

BASE_ROWS = 400_000  # in the full backup
BATCH_ROWS = 1_000  # each written after it, a moment apart
PAUSE = 0.3  # seconds between a batch and the recovery target, on either side


class PgBackRest:
    """pgBackRest configured by the baked project's ``deploy/backup/``, run as the server user.

    Its configuration directory is a temporary one (``--config-path``): ``pgbackrest.conf``
    as shipped with this machine's paths and ports, and ``conf.d/secret.conf`` holding a fresh
    passphrase, where the docs tell operators to put it.
    """

    def __init__(self, project: Path) -> None:
        self.deploy = project / "deploy" / "backup"
        self.stanza = project.name  # named after the project's slug
        self.path = make_workdir("pgbackrest")
        self.repo_path = self.path / "repo"
        for directory in (self.path / "conf.d", self.repo_path, self.path / "log"):
            directory.mkdir()
            server_user().chown(directory)
        passphrase = secrets.token_urlsafe(48)
        write_file(
            self.path / "conf.d" / "secret.conf", f"[global]\nrepo1-cipher-pass={passphrase}\n"
        )

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def archive_settings(self) -> dict[str, str]:
        """The shipped archiving.conf, its ``pgbackrest`` pointed at this configuration."""
        text = (self.deploy / "archiving.conf").read_text()
        settings = {
            name: value[1:-1].replace("''", "'") if value.startswith("'") else value
            for name, value in re.findall(r"^(\w+)\s*=\s*('(?:[^']|'')*'|[^\s#]+)", text, re.M)
        }
        command = settings["archive_command"]
        assert command.startswith("pgbackrest "), command
        settings["archive_command"] = command.replace("pgbackrest", self._executable(), 1)
        return settings

    def configure(self, primary: Primary) -> None:
        """Write the shipped pgbackrest.conf with this machine's paths and ``primary``'s port:
        nothing else changes."""
        config = configparser.ConfigParser(interpolation=None)
        config.optionxform = str  # option names are case-sensitive
        config.read_string((self.deploy / "pgbackrest.conf").read_text())
        config["global"].update(
            {"repo1-path": str(self.repo_path), "log-path": str(self.path / "log")}
        )
        config["global"]["lock-path"] = str(self.path)  # the default is shared by test workers
        config[self.stanza].update(
            {
                "pg1-path": str(primary.data_dir),
                "pg1-port": str(primary.port),
                "pg1-socket-path": str(primary.socket_dir),
            }
        )
        with (self.path / "pgbackrest.conf").open("w") as conf:
            config.write(conf)
        server_user().chown(self.path / "pgbackrest.conf")

    def run(self, *args: str, timeout: float = 300) -> str:
        """Run ``pgbackrest`` with ``args`` on the shipped stanza; return its output."""
        command = shlex.split(self._executable())
        return run([*command, f"--stanza={self.stanza}", *args], cwd=self.path, timeout=timeout)

    def backup(self, timer: str) -> str:
        """Run the backup that ``timer`` starts, as its unit runs it, plus ``--start-fast``
        (production waits for the next checkpoint instead)."""
        (unit,) = re.findall(r"^Unit=(.+)$", (self.deploy / timer).read_text(), re.M)
        template, instance = re.fullmatch(r"(.+@)(.+)\.service", unit).groups()
        service = (self.deploy / f"{template}.service").read_text()
        (command,) = re.findall(r"^ExecStart=(.*)$", service, re.M)
        program, *args = shlex.split(command.replace("%i", instance))
        assert Path(program).name == "pgbackrest", command
        command = [program, f"--config-path={self.path}", "--start-fast", *args]
        return run(command, cwd=self.path, timeout=300)

    def restore(self, data_dir: Path, *options: str) -> str:
        """Restore the repository's backups into ``data_dir``."""
        return self.run(f"--pg1-path={data_dir}", *options, "restore")

    def _executable(self) -> str:
        return f"pgbackrest --config-path={self.path}"


class Backup(NamedTuple):
    seconds: float
    repository_mb: float  # compressed and encrypted


@dataclass
class Drill:
    """What the drill wrote and when, by the primary's clock, and what its backups cost."""

    target: str  # between the last batch restored and the first one not restored
    last_before: str  # when the last row before the target was written
    first_after: str  # when the first row after it was written
    database_mb: float
    full: Backup
    diff: Backup


@pytest.fixture(scope="module")
def backrest(tmp_path_factory):
    project = bake({"use_read_replica": True}, tmp_path_factory.mktemp("backups"))
    backrest = PgBackRest(project)
    yield backrest
    backrest.close()


@pytest.fixture(scope="module")
def primary(backrest):
    with Primary(settings=backrest.archive_settings()) as server:
        backrest.configure(server)
        backrest.run("stanza-create")
        yield server


def write_batch(primary: Primary, batch: int, rows: int) -> tuple[str, str]:
    """Insert ``rows`` rows of ``batch``; return when the first and the last was written."""
    return primary.execute(
        "WITH written AS (INSERT INTO drill (batch, payload)"
        " SELECT %s, md5(i::text) || md5((-i)::text) FROM generate_series(1, %s) AS i"
        " RETURNING written_at) SELECT min(written_at)::text, max(written_at)::text FROM written",
        [batch, rows],
        dbname="app",
    )[0]


def timed_backup(backrest: PgBackRest, timer: str) -> Backup:
    started = time.monotonic()
    backrest.backup(timer)
    seconds = time.monotonic() - started
    (stanza,) = json.loads(backrest.run("info", "--output=json"))
    return Backup(seconds, stanza["backup"][-1]["info"]["repository"]["delta"] / 1e6)


@pytest.fixture(scope="module")
def drill(backrest, primary):
    """Backups and batches of rows: a full backup, a batch, a differential backup, two more
    batches with the recovery target between them, and the WAL of all of them archived."""
    primary.execute(
        "CREATE TABLE drill (id bigserial PRIMARY KEY, batch int NOT NULL,"
        " written_at timestamptz NOT NULL DEFAULT clock_timestamp(), payload text NOT NULL)",
        dbname="app",
    )
    write_batch(primary, 0, BASE_ROWS)
    database_mb = primary.execute("SELECT pg_database_size('app')")[0][0] / 1e6
    full = timed_backup(backrest, "pgbackrest-full.timer")
    write_batch(primary, 1, BATCH_ROWS)
    diff = timed_backup(backrest, "pgbackrest-diff.timer")
    _, last_before = write_batch(primary, 2, BATCH_ROWS)
    time.sleep(PAUSE)
    target = primary.execute("SELECT clock_timestamp()::text")[0][0]
    time.sleep(PAUSE)
    first_after, _ = write_batch(primary, 3, BATCH_ROWS)
    backrest.run("check")  # switches to a new WAL segment and waits until the last is archived
    return Drill(target, last_before, first_after, database_mb, full, diff)


def test_a_point_in_time_restore_has_exactly_the_rows_written_before_that_point(
    backrest, primary, drill
):
    started = time.monotonic()
    options = ("--type=time", f"--target={drill.target}", "--target-action=promote")
    # archive-mode=off: a restored copy must never push its WAL into the primary's archive.
    with Restored(
        primary, lambda data_dir: backrest.restore(data_dir, *options, "--archive-mode=off")
    ) as restored:
        restored.wait_until_writable()
        restore_seconds = time.monotonic() - started
        counts = dict(
            restored.execute("SELECT batch, count(*) FROM drill GROUP BY batch", dbname="app")
        )
        newest = restored.execute("SELECT max(written_at)::text FROM drill", dbname="app")[0][0]
    print(
        f"\ndatabase {drill.database_mb:.0f} MB ({BASE_ROWS:,} rows + 3 x {BATCH_ROWS:,});"
        f" full backup {drill.full.seconds:.1f} s, {drill.full.repository_mb:.1f} MB"
        f" in the repository; diff {drill.diff.seconds:.1f} s,"
        f" {drill.diff.repository_mb:.1f} MB; restore and recovery {restore_seconds:.1f} s"
        f"\ntarget {drill.target}: newest restored row {newest},"
        f" next row written {drill.first_after} (not restored)"
    )
    assert counts == {0: BASE_ROWS, 1: BATCH_ROWS, 2: BATCH_ROWS}
    assert newest == drill.last_before


def test_the_timers_take_a_full_then_a_differential_backup(backrest, drill):
    (stanza,) = json.loads(backrest.run("info", "--output=json"))
    assert [backup["type"] for backup in stanza["backup"]] == ["full", "diff"]


def test_every_file_in_the_repository_is_encrypted(backrest, drill):
    files = [path for path in backrest.repo_path.rglob("*") if path.is_file()]
    plain = [path for path in files if path.read_bytes()[:8] != b"Salted__"]  # OpenSSL's header
    assert files
    assert plain == []


def test_a_standby_rebuilt_from_the_backup_streams_from_the_primary(backrest, primary, drill):
    conninfo = make_conninfo(
        host=primary.host,
        port=primary.port,
        user=REPLICATION_USER,
        password=primary.password(REPLICATION_USER),
    )
    options = ("--type=standby", f"--recovery-option=primary_conninfo={conninfo}")
    with Replica(primary, clone=lambda data_dir: backrest.restore(data_dir, *options)) as standby:
        primary.execute("INSERT INTO drill (batch, payload) VALUES (4, 'rebuilt')", dbname="app")
        standby.wait_for_replay(timeout=60)
        receiver = standby.execute("SELECT status, sender_port FROM pg_stat_wal_receiver")
        rows = standby.execute("SELECT count(*) FROM drill WHERE batch = 4", dbname="app")
    assert receiver == [("streaming", primary.port)]
    assert rows == [(1,)]
