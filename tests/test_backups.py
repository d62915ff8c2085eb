"""The backups a baked project ships, restored: docs/backups.md's restore of a copy next to the
running database and its way of bringing rows back, followed as written.

A primary, one of Debian's clusters made with ``pg_createcluster``, archives its WAL with the
baked ``deploy/backup/archiving.conf`` in its conf.d; pgBackRest runs with the baked
``pgbackrest.conf`` and takes its backups with the command of the baked systemd unit. The
doc's marked blocks run as written, its ``pg_createcluster``, ``pg_ctlcluster`` and
``pg_dropcluster`` included, with only cluster names, the copy's port, pgBackRest's
configuration path and the values a reader fills in changed (``devtools/backups.py``).
Standbys are Debian clusters too, cloned from the primary or restored from the backup. The
backup files depend on no option, so one project (with read replicas, for the standby
rebuild) serves all. The tests run in the file's order: the step that brings the rows back
drops the copy. The in-place rollback and the restore onto a new server have modules of their
own: test_backup_rollback.py and test_backup_new_server.py.
"""

import re
import shlex
import time
from dataclasses import dataclass
from typing import NamedTuple

import pytest
from psycopg.conninfo import make_conninfo

from devtools.backups import TABLE, Site, batches, create_table, now, write_batch
from devtools.debian import OWNER, SOCKETS, available, standby

# One worker runs the whole module: its module-scoped project and servers are set up once.
pytestmark = [
    pytest.mark.xdist_group("backups"),
    pytest.mark.skipif(bool(available()), reason=available() or ""),
]

BASE_ROWS = 400_000  # in the full backup
BATCH_ROWS = 1_000  # each written after it, a moment apart
PAUSE = 0.3  # seconds between a batch and the recovery target, on either side
DELETED = 1  # the batch a wrong DELETE removes after the target
NEW = 4  # the batch written once the deleted rows are back
REBUILT = 5  # the row written while the rebuilt standby streams


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
def site():
    site = Site()
    yield site
    site.close()


@pytest.fixture(scope="module")
def machine(site):
    """The database server as "Set it up" leaves it: archiving, the stanza created."""
    machine = site.machine(archiving=True)
    machine.backrest.run("stanza-create")
    return machine


def timed_backup(machine, timer):
    started = time.monotonic()
    machine.backrest.backup(timer)
    seconds = time.monotonic() - started
    newest = machine.backrest.info()["backup"][-1]
    return Backup(seconds, newest["info"]["repository"]["delta"] / 1e6)


@pytest.fixture(scope="module")
def drill(site, machine):
    """Backups and batches of rows: a full backup, a batch, a differential backup, another
    batch, the recovery target, the mistake (batch 1 deleted) and a batch written after it,
    the WAL of all of them archived."""
    primary, database = machine.main, site.database
    create_table(primary, database)
    write_batch(primary, database, 0, BASE_ROWS)
    database_mb = primary.execute("SELECT pg_database_size(%s)", [database])[0][0] / 1e6
    full = timed_backup(machine, "pgbackrest-full.timer")
    write_batch(primary, database, 1, BATCH_ROWS)
    diff = timed_backup(machine, "pgbackrest-diff.timer")
    _, last_before = write_batch(primary, database, 2, BATCH_ROWS)
    time.sleep(PAUSE)
    target = now(primary)
    time.sleep(PAUSE)
    primary.execute(f"DELETE FROM {TABLE} WHERE batch = %s", [DELETED], dbname=database)
    first_after, _ = write_batch(primary, database, 3, BATCH_ROWS)
    machine.run("archive-now")  # a commit after the target, its WAL archived
    return Drill(target, last_before, first_after, database_mb, full, diff)


def filled_in(drill):
    """What a reader writes in place of the doc's example target and table."""
    return {"2026-03-14 09:59:00+00": drill.target, "orders_order": TABLE}


@pytest.fixture(scope="module")
def copy(machine, drill):
    """The doc's "restore a copy next to the running database", as written: the copy (Debian's
    cluster ``pitr``) and how long each command took."""
    timings = machine.run("restore-a-copy", filled_in(drill))
    return machine.clusters["pitr"], timings


@pytest.fixture(scope="module")
def rows_back(machine, drill, copy):
    """The doc's way of bringing the rows back from the copy, as written; it drops the copy."""
    return machine.run("copy-rows-back", filled_in(drill))


def test_the_timers_take_a_full_then_a_differential_backup(machine, drill):
    assert [backup["type"] for backup in machine.backrest.info()["backup"]] == ["full", "diff"]


def test_scheduled_backups_wait_for_a_spread_checkpoint_instead_of_forcing_one(machine):
    deploy = machine.backrest.deploy
    (command,) = re.findall(
        r"^ExecStart=(.*)$", (deploy / "pgbackrest-backup@.service").read_text(), re.M
    )
    assert "--start-fast" not in shlex.split(command)
    assert re.search(r"^start-fast=n$", (deploy / "pgbackrest.conf").read_text(), re.M)


def test_the_backup_unit_runs_on_a_primary_skips_a_standby_and_fails_without_a_server(machine):
    # With Patroni every member has the timers; a backup on a standby would fail every night.
    primary = machine.main
    with standby(primary) as replica:  # no archiving.conf in its conf.d: not archiving
        on_standby = machine.backrest.condition(replica)
    assert machine.backrest.condition(primary) == 0
    assert on_standby == 1  # skipped, the unit not failed
    assert machine.backrest.condition(None) == 255  # failed: a missed backup must show


def test_every_file_in_the_repository_is_encrypted(site, drill):
    files = [path for path in site.repository.rglob("*") if path.is_file()]
    plain = [path for path in files if path.read_bytes()[:8] != b"Salted__"]  # OpenSSL's header
    assert files
    assert plain == []


def test_a_copy_restored_next_to_production_has_exactly_the_rows_written_before_the_target(
    site, drill, copy
):
    cluster, timings = copy
    counts = batches(cluster, site.database)
    query = f"SELECT max(written_at)::text FROM {TABLE}"
    newest = cluster.execute(query, dbname=site.database)[0][0]
    print(
        f"\ndatabase {drill.database_mb:.0f} MB ({BASE_ROWS:,} rows + 3 x {BATCH_ROWS:,});"
        f" full backup {drill.full.seconds:.1f} s, {drill.full.repository_mb:.1f} MB"
        f" in the repository; diff {drill.diff.seconds:.1f} s,"
        f" {drill.diff.repository_mb:.1f} MB; copy restored and recovered"
        f" {sum(timings.values()) - creating(timings):.1f} s"
        f" (+ {creating(timings):.1f} s for the empty cluster)"
        f"\ntarget {drill.target}: newest restored row {newest},"
        f" next row written {drill.first_after} (not restored)"
    )
    assert counts == {0: BASE_ROWS, 1: BATCH_ROWS, 2: BATCH_ROWS}
    assert newest == drill.last_before


def creating(timings):
    """The seconds ``pg_createcluster`` took to make the empty cluster."""
    return sum(seconds for command, seconds in timings.items() if command.startswith("pg_create"))


def test_the_rows_copied_back_from_the_copy_are_in_the_live_table_again(site, machine, rows_back):
    print(f"\nrows copied back from the copy in {sum(rows_back.values()):.1f} s")
    counts = batches(machine.main, site.database)
    assert counts == {0: BASE_ROWS, 1: BATCH_ROWS, 2: BATCH_ROWS, 3: BATCH_ROWS}
    assert not machine.clusters["pitr"].exists  # the copy is dropped


def test_new_rows_get_new_ids_after_the_rows_came_back(site, machine, rows_back):
    primary = machine.main
    write_batch(primary, site.database, NEW, BATCH_ROWS)  # no duplicate key
    query = (
        f"SELECT min(id) FILTER (WHERE batch = %s), max(id) FILTER (WHERE batch <> %s) FROM {TABLE}"
    )
    first_new, last_old = primary.execute(query, [NEW, NEW], dbname=site.database)[0]
    assert first_new > last_old


def test_a_standby_rebuilt_from_the_backup_streams_from_the_primary(site, machine, drill):
    primary = machine.main
    # Over the socket, as postgres: Debian's ``local replication all peer`` lets it in.
    conninfo = make_conninfo(host=SOCKETS, port=primary.port, user=OWNER)
    options = ("--type=standby", f"--recovery-option=primary_conninfo={conninfo}")
    restore = machine.backrest.restore
    with standby(primary, clone=lambda data_dir: restore(data_dir, *options)) as rebuilt:
        primary.execute(
            f"INSERT INTO {TABLE} (batch, payload) VALUES (%s, 'rebuilt')",
            [REBUILT],
            dbname=site.database,
        )
        rebuilt.wait_for_replay(primary, timeout=60)
        receiver = rebuilt.execute("SELECT status, sender_port FROM pg_stat_wal_receiver")
        query = f"SELECT count(*) FROM {TABLE} WHERE batch = %s"
        rows = rebuilt.execute(query, [REBUILT], dbname=site.database)
    assert receiver == [("streaming", primary.port)]
    assert rows == [(1,)]
