"""docs/backups.md's "after losing the server", followed as written: a new server restored from
the repository before its cluster ever runs with archiving, archiving into the same stanza.

The machines are set up as in test_backups.py (``devtools/backups.py``): Debian's clusters,
the shipped files, the doc's marked blocks run as written with only cluster names and
pgBackRest's configuration path changed. The new server shares the lost one's repository and
passphrase, as the doc has the operator bring them.
"""

import time

import pytest

from devtools.backups import Site, batches, create_table, write_batch
from devtools.debian import available

# One worker runs the whole module: its module-scoped project and servers are set up once.
pytestmark = [
    pytest.mark.xdist_group("backup-new-server"),
    pytest.mark.skipif(bool(available()), reason=available() or ""),
]

BASE_ROWS = 400_000  # as in test_backups.py: the doc's figures come from all of them
BATCH_ROWS = 1_000
MISMATCH = "ArchiveMismatchError"


@pytest.fixture(scope="module")
def site():
    site = Site()
    yield site
    site.close()


@pytest.fixture(scope="module")
def lost(site):
    """The server that is lost: archiving, a full backup taken by hand as the doc shows, a
    batch written after it and archived; then every cluster on it gone at once."""
    machine = site.machine(archiving=True)
    primary, database = machine.main, site.database
    machine.backrest.run("stanza-create")
    create_table(primary, database)
    write_batch(primary, database, 0, BASE_ROWS)
    machine.run("backup-by-hand")
    write_batch(primary, database, 1, BATCH_ROWS)
    machine.backrest.run("check")  # switches to a new WAL segment and waits until it is archived
    machine.lose()
    return machine


@pytest.fixture(scope="module")
def new_server(site, lost):
    """A new server, its empty ``main`` cluster running without archiving as Debian's package
    leaves it, pgBackRest set up with the same repository and passphrase; then the doc's
    steps as written."""
    machine = site.machine(archiving=False)
    timings = list(machine.run("new-server").items())
    (wait,) = [i for i, (command, _) in enumerate(timings) if command.startswith("timeout 600 ")]
    restored = sum(seconds for _, seconds in timings[: wait + 1])
    print(f"\nnew server restored and taking writes ({BASE_ROWS:,} rows) in {restored:.1f} s")
    return machine


def test_the_new_server_has_every_row_the_archive_holds(site, new_server):
    assert batches(new_server.main, site.database) == {0: BASE_ROWS, 1: BATCH_ROWS}


def test_the_new_server_takes_writes(site, new_server):
    write_batch(new_server.main, site.database, 2, BATCH_ROWS)


def test_the_new_server_archives_into_the_lost_servers_stanza(new_server):
    server = new_server.main
    (identifier,) = server.execute("SELECT system_identifier FROM pg_control_system()")[0]
    archived, failed = server.execute("SELECT archived_count, failed_count FROM pg_stat_archiver")[
        0
    ]
    stanza = new_server.backrest.info()
    assert [db["system-id"] for db in stanza["db"]] == [identifier]
    assert archived > 0
    assert failed == 0


def test_no_archive_mismatch_is_logged_on_either_server(lost, new_server):
    assert MISMATCH not in lost.logs()
    assert MISMATCH not in new_server.logs()


def test_an_empty_cluster_archiving_into_the_stanza_is_refused(site, new_server):
    # What the steps' order avoids: a new cluster started with archiving.conf before the
    # restore pushes WAL of its own system identifier into the stanza.
    machine = site.machine(archiving=True)
    server = machine.main
    server.execute("CREATE TABLE written_on_the_empty_cluster (n int)")
    server.execute("SELECT pg_switch_wal()")
    deadline = time.monotonic() + 30
    while not server.execute("SELECT failed_count FROM pg_stat_archiver")[0][0]:
        assert time.monotonic() < deadline, "the archiver never tried"
        time.sleep(0.1)
    assert MISMATCH in machine.logs()
