"""docs/read-replicas.md's "Set up a replica" followed as written, on Debian's packaged
clusters: a primary made with ``pg_createcluster`` (configuration in /etc/postgresql, none in
its data directory), and the replica the doc makes with ``pg_createcluster`` and
``pg_basebackup``, started with ``pg_ctlcluster``.

The doc's blocks run as root, unchanged but for the clusters' names (``main`` is the
machine's own and never touched; each run names its clusters uniquely), their ports and the
password (``devtools/debian.py``). Both clusters are dropped afterwards.
"""

import secrets

import pytest

from devtools.bakery import bake
from devtools.debian import Cluster, Shell, available, here, version
from devtools.readme import code_block

pytestmark = [
    pytest.mark.xdist_group("replica-integration"),
    pytest.mark.skipif(bool(available()), reason=available() or ""),
]

PASSWORD = secrets.token_hex(16)  # needs no quoting in SQL or a shell word


def commands(text):
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


@pytest.fixture(scope="module")
def doc(tmp_path_factory):
    answers = {"use_read_replica": True, "postgresql_version": version()}
    project = bake(answers, tmp_path_factory.mktemp("replica-docs"))
    return (project / "docs" / "read-replicas.md").read_text()


@pytest.fixture(scope="module")
def clusters():
    """The doc's ``main`` (made here, as Debian's package makes it) and ``replica`` (only
    named: the doc makes it); both dropped at the end."""
    primary = Cluster("main")
    replica = Cluster("replica", create=False)
    shell = Shell(primary.port)
    try:
        yield primary, replica, shell
    finally:
        replica.drop()
        primary.drop()
        shell.close()


def as_here(text, primary, replica):
    """``text`` with this run's cluster names, ports and password for the doc's."""
    v = version()
    return here(
        text,
        {
            f"/etc/postgresql/{v}/main/": f"{primary.etc}/",
            f"{v} replica": f"{v} {replica.name}",
            f"/var/lib/postgresql/{v}/replica": str(replica.data_dir),
            f"/etc/postgresql/{v}/replica/": f"{replica.etc}/",
            "--port=5432": f"--port={primary.port}",
            "--port 5433": f"--port {replica.port}",
            "'PASSWORD'": f"'{PASSWORD}'",
            "PGPASSWORD=PASSWORD": f"PGPASSWORD={PASSWORD}",
        },
    )


def test_the_documented_setup_makes_a_streaming_replica_of_a_packaged_primary(doc, clusters):
    primary, replica, shell = clusters
    assert not (primary.data_dir / "postgresql.conf").exists()  # Debian's: it is in /etc
    role = as_here(code_block(doc, "CREATE ROLE"), primary, replica)
    shell.run(f"sudo -u postgres psql -X -v ON_ERROR_STOP=1 <<'SQL'\n{role}\nSQL")
    for command in commands(as_here(code_block(doc, "pg_hba.conf"), primary, replica)):
        shell.run(command)
    primary.sql("CREATE TABLE written_before (n int)")
    for command in commands(as_here(code_block(doc, "pg_basebackup"), primary, replica)):
        shell.run(command, timeout=120)
    started = as_here(code_block(doc, "pg_ctlcluster"), primary, replica)
    *start, check = commands(started)
    for command in start:
        shell.run(command)
    primary.sql("CREATE TABLE written_after (n int)")
    wait = (
        "SELECT pg_is_in_recovery() AND to_regclass('written_after') IS NOT NULL FROM pg_sleep(0.2)"
    )
    for _ in range(150):  # 30 s
        if replica.sql(wait) == "t":
            break
    else:
        raise AssertionError(
            f"the replica did not replay the primary's write:\n{replica.log_text()}"
        )
    streaming = shell.run(check)
    assert "streaming" in streaming and str(primary.port) in streaming
    assert replica.sql("SELECT to_regclass('written_before') IS NOT NULL") == "t"
    # Its own configuration and data, not the primary's.
    assert replica.sql("SHOW data_directory") == str(replica.data_dir)
    assert replica.sql("SHOW config_file") == str(replica.etc / "postgresql.conf")
    assert replica.sql("SHOW port") == str(replica.port)
