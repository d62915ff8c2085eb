"""docs/backups.md's "re-create a cluster" block, on a cluster made with ``pg_createcluster``:
``pg_dropcluster`` leaves the ``conf.d/archiving.conf`` installed by hand, so a cluster
re-created under the same name archives from its first start (into a stanza whose system
identifier is not its own), unless the block's ``rm`` runs in between.

The test first shows the trap (drop and re-create without the ``rm``: the new cluster
archives), then runs the doc's block as written but for the cluster's name and port
(``main`` is the machine's own, never touched): the re-created cluster starts without
archiving. The cluster is dropped afterwards, with whatever it left in /etc.
"""

import re

import pytest

from devtools.bakery import bake
from devtools.debian import Cluster, Shell, available, here, version
from devtools.readme import steps

pytestmark = pytest.mark.skipif(bool(available()), reason=available() or "")


def commands(text):
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


@pytest.fixture
def cluster():
    cluster = Cluster("main")
    try:
        yield cluster
    finally:
        cluster.drop()


def test_a_cluster_recreated_as_the_doc_says_starts_without_the_old_archiving(tmp_path, cluster):
    project = bake({"postgresql_version": version()}, tmp_path)
    v, shell = version(), Shell(cluster.port, cwd=project)
    leftover = cluster.etc / "conf.d" / "archiving.conf"

    def install_archiving():
        # As "Set it up" does, with this cluster's directory for main's.
        shell.run(f"install -m 644 deploy/backup/archiving.conf {cluster.etc}/conf.d/")
        cluster.ctl("restart")
        assert cluster.sql("SHOW archive_mode") == "on"

    try:
        install_archiving()
        # The trap: dropped and re-created without the rm, the new cluster archives.
        shell.run(f"pg_dropcluster --stop {v} {cluster.name}")
        assert leftover.exists()
        shell.run(f"pg_createcluster --port {cluster.port} --start {v} {cluster.name}")
        assert cluster.sql("SHOW archive_mode") == "on"

        install_archiving()
        block = steps(project / "docs" / "backups.md")["recreate-cluster"]
        text = here(
            block,
            {
                f"/etc/postgresql/{v}/main/": f"{cluster.etc}/",
                f"--stop {v} main": f"--stop {v} {cluster.name}",
                f"--start {v} main": f"--port {cluster.port} --start {v} {cluster.name}",
            },
        )
        assert cluster.name in text and not re.search(r"\bmain\b", text)
        for command in commands(text):
            shell.run(command, timeout=180)
        assert not leftover.exists()
        assert cluster.sql("SHOW archive_mode") == "off"
        assert cluster.sql("SHOW archive_command") in ("", "(disabled)")
    finally:
        shell.close()
