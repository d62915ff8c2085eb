"""docs/read-replicas.md's "Set up a replica" followed as written, on a primary of its own.

Its blocks run with only addresses, ports, paths and the password changed for this machine:
the role's SQL as the primary's superuser, the pg_hba.conf line and the reload, and
pg_basebackup as the server account; the harness then starts the copy (the doc's ``pg_ctl``
line, on a port of its own) and it must stream.
"""

import re
import secrets
import subprocess

import pytest

from devtools.bakery import bake
from devtools.harness import Primary, Replica, pg_bindir
from devtools.harness.host import run

pytestmark = pytest.mark.xdist_group("replica-integration")

FENCE = re.compile(r"^(?P<indent> *)```\w*\n(?P<body>.*?)^(?P=indent)```", re.MULTILINE | re.DOTALL)
PASSWORD = secrets.token_hex(16)  # needs no quoting in SQL or a shell word


def block(text, marker):
    """The one code block of ``text`` containing ``marker``, its indentation removed."""
    blocks = [
        re.sub(rf"^{match['indent']}", "", match["body"], flags=re.MULTILINE)
        for match in FENCE.finditer(text)
        if marker in match["body"]
    ]
    assert len(blocks) == 1, f"{len(blocks)} code blocks contain {marker!r}"
    return blocks[0]


@pytest.fixture(scope="module")
def doc(tmp_path_factory):
    project = bake({"use_read_replica": True}, tmp_path_factory.mktemp("replica-docs"))
    return (project / "docs" / "read-replicas.md").read_text()


@pytest.fixture(scope="module")
def primary():
    with Primary() as server:
        yield server


def as_here(text, primary, data_dir=None):
    """``text`` with this machine's primary, password, paths and binaries for the doc's."""
    text = re.sub(r"/etc/postgresql/\d+/main/", f"{primary.data_dir}/", text)
    values = {
        "'PASSWORD'": f"'{PASSWORD}'",
        "PGPASSWORD=PASSWORD": f"PGPASSWORD={PASSWORD}",
        "--host=localhost --port=5432": f"--host={primary.host} --port={primary.port}",
        "--pgdata=/var/lib/postgresql/replica": f"--pgdata={data_dir}",
        'psql -c "': f'{pg_bindir()}/psql "{primary.superuser_conninfo()}" -c "',
        "pg_basebackup ": f"{pg_bindir()}/pg_basebackup ",
    }
    for written, here in values.items():
        text = text.replace(written, here)
    return text


def test_the_documented_setup_makes_a_streaming_replica(doc, primary):
    role = block(doc, "CREATE ROLE")
    subprocess.run(
        [str(pg_bindir() / "psql"), "-X", "-v", "ON_ERROR_STOP=1", primary.superuser_conninfo()],
        input=as_here(role, primary),
        check=True,
        capture_output=True,
        text=True,
    )
    hba = as_here(block(doc, "pg_hba.conf"), primary)
    run(["bash", "-euo", "pipefail", "-c", hba], cwd=primary.workdir)

    def documented_copy(data_dir):
        command = as_here(block(doc, "pg_basebackup").strip(), primary, data_dir)
        run(["bash", "-euo", "pipefail", "-c", command], cwd=primary.workdir, timeout=120)

    primary.execute("CREATE TABLE written_before (n int)", dbname="app")
    with Replica(primary, clone=documented_copy) as replica:
        primary.execute("CREATE TABLE written_after (n int)", dbname="app")
        replica.wait_for_replay(primary)
        rows = replica.execute(
            "SELECT pg_is_in_recovery(), to_regclass('written_before') IS NOT NULL, "
            "to_regclass('written_after') IS NOT NULL",
            dbname="app",
        )
    assert rows == [(True, True, True)]
