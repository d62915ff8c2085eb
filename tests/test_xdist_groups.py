"""./run-tests relies on ``--dist loadgroup``: a module marked ``xdist_group`` runs on one
worker, so its module-scoped projects and servers are set up once and its tests run in order."""

import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.quick  # ./run-tests --quick

GROUPED = """
import pytest

pytestmark = pytest.mark.xdist_group("one")


@pytest.mark.parametrize("n", range(6))
def test_grouped(n):
    pass
"""


def test_loadgroup_runs_a_group_on_one_worker(tmp_path):
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-n",
            "3",
            "--dist",
            "loadgroup",
            "-v",
            "-p",
            "no:cacheprovider",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    workers = set(re.findall(r"^\[(gw\d+)\].*PASSED", result.stdout, re.M))
    assert len(workers) == 1, result.stdout
