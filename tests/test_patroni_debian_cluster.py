"""docs/high-availability.md's step that hands Debian's own cluster to Patroni, on a cluster
made with ``pg_createcluster``: after it, Debian's systemd generator no longer starts the
cluster at boot.

No systemd runs here, so the test does what it would: ``systemctl disable --now
postgresql@V-NAME`` stops the cluster with ``pg_ctlcluster`` (disabling removes links the
generator puts back), and a boot is Debian's generator
(/lib/systemd/system-generators/postgresql-generator, which systemd runs at every boot) run
into a directory of the test's: a cluster it links under ``postgresql.service.wants`` is
started at boot. The doc's block runs as written but for the cluster's name (``main`` is the
machine's own, never touched); the cluster is dropped afterwards.
"""

import shlex
import subprocess

import pytest

from devtools.bakery import bake
from devtools.debian import Cluster, Shell, available, here, version
from devtools.readme import code_block

pytestmark = pytest.mark.skipif(bool(available()), reason=available() or "")

GENERATOR = "/lib/systemd/system-generators/postgresql-generator"


def started_at_boot(cluster, tmp_path, boot):
    """Whether Debian's generator, run as at a boot, makes systemd start ``cluster``."""
    generated = tmp_path / f"boot{boot}"
    subprocess.run(
        [GENERATOR, generated, generated, generated], check=True, capture_output=True, timeout=30
    )
    unit = f"postgresql@{cluster.version}-{cluster.name}.service"
    return (generated / "postgresql.service.wants" / unit).is_symlink()


@pytest.fixture
def cluster():
    cluster = Cluster("main")  # Debian's package makes and starts a cluster on install
    try:
        yield cluster
    finally:
        cluster.drop()


def test_debians_cluster_handed_to_patroni_is_not_started_at_boot(tmp_path, cluster):
    project = bake({"postgresql_version": version()}, tmp_path)
    doc = (project / "docs" / "high-availability.md").read_text()
    v = version()
    text = here(
        code_block(doc, "start.conf"),
        {f"{v}-main": f"{v}-{cluster.name}", f"{v}/main/": f"{v}/{cluster.name}/"},
    )
    shell = Shell(cluster.port)
    try:
        for line in (line for line in text.splitlines() if line.strip()):
            words = shlex.split(line, comments=True)
            if words[:3] == ["systemctl", "disable", "--now"]:
                assert words[3:] == [f"postgresql@{v}-{cluster.name}"], line
                cluster.ctl("stop")  # --now; what `disable` removes, the generator restores
                assert started_at_boot(cluster, tmp_path, 1)  # the trap: disabled, yet started
            else:
                shell.run(line)
    finally:
        shell.close()
    assert (cluster.etc / "start.conf").read_text().split("#")[0].strip() == "manual"
    assert not started_at_boot(cluster, tmp_path, 2)
