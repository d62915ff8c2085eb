"""The template's ``./generate``: run from inside its clone, the project goes next to the clone,
not into it (where ``git init`` would nest a repository in the template's); run from anywhere
else, into the current directory; ``--output-dir`` wins over both.

The script runs from a copy of the template in a temporary directory (so nothing is written
next to the real clone), sharing the real clone's virtualenv.
"""

import os
import shutil
import subprocess

import pytest

from devtools.bakery import ROOT

TEMPLATE_FILES = ("generate", "cookiecutter.json", "requirements-dev.txt")
TEMPLATE_DIRS = ("scripts", "hooks", "templates", "{{cookiecutter.project_slug}}")


@pytest.fixture
def clone(tmp_path):
    """A copy of the template at ``tmp_path/template`` using the real clone's virtualenv."""
    copy = tmp_path / "template"
    copy.mkdir()
    for name in TEMPLATE_FILES:
        shutil.copy2(ROOT / name, copy / name)
    for name in TEMPLATE_DIRS:
        shutil.copytree(ROOT / name, copy / name)
    (copy / ".venv").symlink_to(ROOT / ".venv")
    return copy


def nothing_added(clone):
    return {path.name for path in clone.iterdir()} == {*TEMPLATE_FILES, *TEMPLATE_DIRS, ".venv"}


def generate(clone, cwd, *args):
    env = {name: value for name, value in os.environ.items() if name != "PYTHON"}
    result = subprocess.run(
        [str(clone / "generate"), "--no-input", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_generate_puts_the_project_next_to_its_clone_when_run_inside_it(clone):
    generate(clone, clone, "project_name=Next Door")
    assert (clone.parent / "next_door" / "manage.py").exists()
    assert not (clone / "next_door").exists()
    # From a directory inside the clone too.
    generate(clone, clone / "scripts", "project_name=From Scripts")
    assert (clone.parent / "from_scripts" / "manage.py").exists()
    assert nothing_added(clone)


def test_generate_uses_the_current_directory_elsewhere_and_output_dir_first(clone, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    generate(clone, elsewhere, "project_name=Here")
    assert (elsewhere / "here" / "manage.py").exists()
    chosen = tmp_path / "chosen"
    generate(clone, clone, "--output-dir", str(chosen), "project_name=Chosen")
    assert (chosen / "chosen" / "manage.py").exists()
    generate(clone, clone, "-o", str(chosen), "project_name=Short Option")
    assert (chosen / "short_option" / "manage.py").exists()
    assert nothing_added(clone)
