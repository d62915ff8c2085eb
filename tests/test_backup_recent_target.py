"""docs/backups.md's restore to a point in time when the target is 5 s old: less than
``archive_timeout`` (60 s), so the WAL after it is not in the archive yet.

Followed without the doc's "archive now" step, recovery runs out of archived WAL before the
target and the server stops with ``FATAL: recovery ended before configured recovery target
was reached``: the restore must fail within seconds, saying so, instead of waiting forever.
Followed as written, the copy has exactly the rows written before the target. The machine is
set up as in test_backups.py (``devtools/backups.py``): Debian's clusters, the shipped files,
the doc's marked blocks run as written with only cluster names, the copy's port, pgBackRest's
configuration path and the target changed.
"""

import time

import pytest

from devtools.backups import TABLE, Site, batches, create_table, now, write_batch
from devtools.debian import available

# One worker runs the whole module: its module-scoped project and servers are set up once.
pytestmark = [
    pytest.mark.xdist_group("backup-recent-target"),
    pytest.mark.skipif(bool(available()), reason=available() or ""),
]

ROWS = 1_000
PAUSE = 0.3  # seconds between the last batch and the target, and the target and the mistake
AGE = 5.0  # how old the target is when the restore starts
GIVES_UP_WITHIN = 60.0  # seconds: the restore that cannot reach the target must fail by then


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


@pytest.fixture(scope="module")
def target(site, machine):
    """A full backup, a batch, the target, the mistake (the batch deleted), and the target
    left to age 5 s: nothing after the backup is archived yet."""
    primary, database = machine.main, site.database
    create_table(primary, database)
    write_batch(primary, database, 0, ROWS)
    machine.run("backup-by-hand")
    time.sleep(1)  # the backup's stop time is in whole seconds: the target in a later one
    write_batch(primary, database, 1, ROWS)
    time.sleep(PAUSE)
    target, taken = now(primary), time.monotonic()
    time.sleep(PAUSE)
    primary.execute(f"DELETE FROM {TABLE} WHERE batch = 1", dbname=database)  # the mistake
    time.sleep(max(0.0, AGE - (time.monotonic() - taken)))
    return target


def unarchived(server):
    """Whether the WAL segment being written is not in the archive yet."""
    query = "SELECT last_archived_wal < pg_walfile_name(pg_current_wal_lsn()) FROM pg_stat_archiver"
    return server.execute(query)[0][0]


def test_without_archiving_first_the_restore_fails_within_seconds_saying_why(machine, target):
    assert unarchived(machine.main)  # the trap: the target's WAL is not archived
    started = time.monotonic()
    with pytest.raises(AssertionError) as failure:
        machine.run("restore-a-copy", {"2026-03-14 09:59:00+00": target})
    seconds = time.monotonic() - started
    print(f"\nthe restore to a target {AGE:.0f} s old gave up after {seconds:.1f} s:")
    print(str(failure.value)[:300], "...", str(failure.value)[-300:])
    machine.drop("pitr")
    # The doc's wait stops when the server does (or pg_ctlcluster already failed, if recovery
    # ended before the server accepted connections), with the reason from the server's log.
    assert "recovery ended before configured recovery target was reached" in str(failure.value)
    assert seconds < GIVES_UP_WITHIN


def test_archiving_first_a_restore_to_a_target_5_s_old_has_the_rows_before_it(
    site, machine, target
):
    started = time.monotonic()
    machine.run("archive-now")
    timings = machine.run("restore-a-copy", {"2026-03-14 09:59:00+00": target})
    seconds = time.monotonic() - started
    print(f"\narchived and restored to a target {AGE:.0f} s old in {seconds:.1f} s: {timings}")
    counts = batches(machine.clusters["pitr"], site.database)
    machine.drop("pitr")
    assert counts == {0: ROWS, 1: ROWS}
