"""docs/backups.md's "roll the whole database back", followed as written, and the clean-up after
it: what the rollback restores, what it leaves in postgresql.auto.conf, and why that must go.

The machine is set up as in test_backups.py (``devtools/backups.py``): Debian's clusters, the
shipped files, the doc's marked blocks run as written (its ``systemctl stop|start
postgresql@V-main`` doing what the unit does, ``pg_ctlcluster``) with only cluster names,
pgBackRest's configuration path and the target changed. The replicas are Debian clusters
cloned with ``pg_basebackup``. The tests run in the file's order, on one database: those
before the clean-up see what it removes.
"""

import re
import time

import pytest

from devtools.backups import TABLE, Site, batches, create_table, now, write_batch
from devtools.debian import available, standby

# One worker runs the whole module: its module-scoped project and servers are set up once.
pytestmark = [
    pytest.mark.xdist_group("backup-rollback"),
    pytest.mark.skipif(bool(available()), reason=available() or ""),
]

BASE_ROWS = 400_000  # as in test_backups.py: the doc's figures come from both
BATCH_ROWS = 1_000
PAUSE = 0.3  # seconds between the last batch and the target, and the target and the mistake
RECOVERY_SETTING = re.compile(r"^\s*(restore_command|recovery_target\w*)\s*=", re.M)


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
    """A full backup taken by hand as the doc shows, a batch written after it, the recovery
    target, then the destructive migration, and the WAL of all of it archived."""
    primary, database = machine.main, site.database
    create_table(primary, database)
    write_batch(primary, database, 0, BASE_ROWS)
    machine.run("backup-by-hand")
    # pgBackRest keeps a backup's stop time in whole seconds, and restores to a target from a
    # backup that stopped before it: the target must fall in a later second.
    time.sleep(1)
    write_batch(primary, database, 1, BATCH_ROWS)
    time.sleep(PAUSE)
    target = now(primary)
    time.sleep(PAUSE)
    primary.execute(f"DROP TABLE {TABLE}", dbname=database)  # the mistake
    primary.execute("CREATE TABLE written_after (n int)", dbname=database)
    machine.run("archive-now")  # the doc's step before a restore to a point in time
    return target


@pytest.fixture(scope="module")
def rolled_back(machine, target):
    """The doc's rollback, as written; how long each command took."""
    return machine.run("roll-back", {"2026-03-14 09:59:00+00": target})


@pytest.fixture(scope="module")
def cleaned_up(machine, rolled_back):
    """The doc's clean-up after the rollback, as written: the restore's settings reset, a
    full backup on the new timeline."""
    return machine.run("after-roll-back")


def auto_conf(machine):
    return (machine.main.data_dir / "postgresql.auto.conf").read_text()


def in_recovery(server):
    return server.execute("SELECT pg_is_in_recovery()")[0][0]


def test_a_rollback_has_exactly_what_was_written_before_the_target(site, machine, rolled_back):
    primary = machine.main
    print(f"\nrolled back in place ({BASE_ROWS:,} rows) in {sum(rolled_back.values()):.1f} s")
    after = primary.execute("SELECT to_regclass('written_after')", dbname=site.database)
    assert batches(primary, site.database) == {0: BASE_ROWS, 1: BATCH_ROWS}
    assert after == [(None,)]
    assert not in_recovery(primary)


def test_a_rollback_leaves_its_recovery_settings_in_postgresql_auto_conf(machine, rolled_back):
    names = RECOVERY_SETTING.findall(auto_conf(machine))
    assert sorted(names) == ["recovery_target_action", "recovery_target_time", "restore_command"]


def test_a_replica_cloned_before_the_clean_up_promotes_itself_at_its_first_commit(
    site, machine, rolled_back
):
    primary = machine.main
    # Archiving off (no archiving.conf in its conf.d): the replica that promotes itself must
    # not archive into the stanza.
    with standby(primary) as replica:
        primary.execute("CREATE TABLE written_after_the_clone (n int)", dbname=site.database)
        deadline = time.monotonic() + 30
        while in_recovery(replica) and time.monotonic() < deadline:
            time.sleep(0.1)
        promoted = not in_recovery(replica)
        log = replica.log_text()
    assert promoted
    assert "recovery stopping before commit" in log


def test_the_clean_up_leaves_no_recovery_settings_in_postgresql_auto_conf(machine, cleaned_up):
    assert RECOVERY_SETTING.findall(auto_conf(machine)) == []


def test_after_the_clean_up_the_server_restarts_without_recovering(site, machine, cleaned_up):
    main = machine.main
    main.ctl("stop")
    offset = len(main.log_text())
    main.ctl("start")
    since_restart = main.log_text()[offset:]
    assert not in_recovery(main)
    assert "database system is ready to accept connections" in since_restart
    assert "point-in-time recovery" not in since_restart
    assert "archive recovery" not in since_restart
    write_batch(main, site.database, 2, BATCH_ROWS)


def test_a_replica_cloned_after_the_clean_up_stays_a_replica(site, machine, cleaned_up):
    primary = machine.main
    with standby(primary) as replica:
        primary.execute("CREATE TABLE written_after_the_clean_up (n int)", dbname=site.database)
        replica.wait_for_replay(primary, timeout=30)
        assert in_recovery(replica)


def test_the_full_backup_after_the_rollback_is_on_the_new_timeline(machine, cleaned_up):
    newest = machine.backrest.info()["backup"][-1]
    assert newest["type"] == "full"
    assert newest["archive"]["start"].startswith("00000002")  # timeline 2
