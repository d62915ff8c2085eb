"""Every bake ships a uv.lock that pins every package it installs, each file with its sha256,
matches the pyproject.toml it is baked with, and depends on no answer but the Django and
Python versions; installing a bake from it gives exactly the locked versions, hashes checked.

The locks live in ``templates/locks/``, one per Django and Python version (devtools/locks.py);
``./relock`` remakes them.
"""

import json
import os
import re
import sys
import tomllib

import pytest

from devtools import locks
from devtools.bakery import (
    ROOT,
    UV,
    MissingInterpreter,
    bake,
    interpreter,
    load_hook,
    locked_versions,
    no_input_answers,
    project_env,
    run,
    uv_env,
)
from devtools.readme import code_block, steps

PAIRS = locks.pairs()
SHA256 = re.compile(r"sha256:[0-9a-f]{64}")


def pair_id(pair):
    return f"django_{pair[0]}-python_{pair[1]}"


def python_or_skip(version):
    """This machine's Python ``version``; the test skips (saying why) when there is none."""
    try:
        return interpreter(version)
    except MissingInterpreter as error:
        pytest.skip(str(error))


def bake_pair(pair, output_dir, **answers):
    django_version, python_version = pair
    return bake(
        {"django_version": django_version, "python_version": python_version, **answers},
        output_dir,
    )


def lock_check(project, python_version):
    command = [UV, "lock", "--check", "--python", python_or_skip(python_version)]
    return run(command, cwd=project, env=uv_env(), check=False, timeout=300)


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_each_shipped_lock_matches_the_pyproject_it_is_baked_with(pair, tmp_path):
    project = bake_pair(pair, tmp_path)

    result = lock_check(project, pair[1])

    stored = locks.lock_path(*pair).relative_to(ROOT)
    assert result.returncode == 0, (
        f"{stored} does not lock the pyproject.toml it is baked with: run ./relock\n"
        f"{result.stdout}{result.stderr}"
    )


def test_a_pyproject_changed_without_a_new_lock_fails_the_check(tmp_path):
    project = bake_pair(PAIRS[0], tmp_path)
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace("dependencies = [\n", 'dependencies = [\n    "six>=1",\n')
    )

    result = lock_check(project, PAIRS[0][1])

    assert result.returncode != 0
    assert "needs to be updated" in result.stderr


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_every_locked_file_carries_its_sha256(pair):
    lock = locks.rendered(locks.lock_path(*pair).read_text(), "any-project")
    packages = [
        package for package in tomllib.loads(lock)["package"] if "registry" in package["source"]
    ]
    assert packages
    unhashed = [
        f"{package['name']} {package['version']}: {file.get('url')}"
        for package in packages
        for file in [*([package["sdist"]] if "sdist" in package else []), *package["wheels"]]
        if not SHA256.fullmatch(file.get("hash", ""))
    ]
    no_files = [package["name"] for package in packages if not package.get("wheels")]
    assert unhashed == []
    assert no_files == []


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_the_lock_covers_every_python_from_the_chosen_one(pair):
    lock = tomllib.loads(locks.rendered(locks.lock_path(*pair).read_text(), "p"))
    assert lock["requires-python"] == f">={pair[1]}"


def test_the_lock_depends_on_no_answer_but_the_django_and_python_versions(tmp_path):
    plain = bake_pair(PAIRS[0], tmp_path / "plain", ci="none")
    other = bake_pair(
        PAIRS[0],
        tmp_path / "other",
        project_name='Ünïcode "Störe" 2',
        project_slug="store",
        description="A shop; with {braces} and 'quotes'.",
        author_name="Zoë O'Brien",
        author_email="zoe@example.com",
        postgresql_version="15",
        use_pgbouncer=True,
        use_read_replica=True,
        ci="github",
    )

    template_lock = locks.lock_path(*PAIRS[0]).read_text()
    assert locks.stored((plain / "uv.lock").read_text(), "shop-front") == template_lock
    assert locks.stored((other / "uv.lock").read_text(), "store") == template_lock


# Run in the fresh virtualenv on `uv export`'s pins: those its markers select for this
# interpreter and platform, and what is installed.
WHAT_IS_INSTALLED = """
import json, sys
from importlib.metadata import distributions
from packaging.markers import Marker
from packaging.utils import canonicalize_name

expected = {}
for line in open(sys.argv[1]).read().splitlines():
    requirement, _, marker = line.partition(";")
    name, _, version = requirement.strip().partition("==")
    if not marker.strip() or Marker(marker).evaluate():
        expected[canonicalize_name(name)] = version
installed = {canonicalize_name(d.metadata["Name"]): d.version for d in distributions()}
print(json.dumps({"expected": expected, "installed": installed}))
"""
# What the install step brings besides the lock: what `python -m venv` seeds (pip, and
# setuptools too up to Python 3.11), which uv sync leaves alone, and uv itself.
BOOTSTRAP = {"pip", "setuptools", "uv"}


@pytest.mark.parametrize("pair", PAIRS, ids=pair_id)
def test_the_readme_install_gives_a_fresh_virtualenv_exactly_the_locked_versions(pair, tmp_path):
    python = python_or_skip(pair[1])
    project = bake_pair(pair, tmp_path / "out")
    bin_dir = tmp_path / "bin"  # nothing but the README's Python on PATH
    bin_dir.mkdir()
    (bin_dir / f"python{pair[1]}").symlink_to(python)
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    install = steps(project / "README.md")["install"]

    run(
        ["bash", "-c", f"set -euo pipefail\n{install}"],
        cwd=project,
        env=project_env(PATH=path, UV_PYTHON_DOWNLOADS="never"),
        timeout=900,
    )

    pins = tmp_path / "pins.txt"  # the dependencies and the dev group, as the step installs
    export = [UV, "export", "--locked", "--no-hashes", "--no-header", "--no-annotate"]
    run([*export, "--no-emit-project", "--output-file", pins], cwd=project, env=uv_env())
    venv_python = project / ".venv" / "bin" / "python"
    report = json.loads(run([venv_python, "-c", WHAT_IS_INSTALLED, pins], cwd=project).stdout)
    expected, installed = report["expected"], report["installed"]
    assert {f"{name}=={version}" for name, version in expected.items()} <= set(
        locked_versions((project / "uv.lock").read_text())
    )
    assert {name: v for name, v in installed.items() if name not in BOOTSTRAP} == expected
    assert "uv" in installed
    assert len(expected) > 30  # the dev group's tools too, not only Django's dependencies


def test_an_install_from_a_lock_whose_hash_does_not_match_installs_nothing(tmp_path):
    project = bake_pair(PAIRS[0], tmp_path / "out")
    lock = project / "uv.lock"
    text = lock.read_text()
    start = text.index('[[package]]\nname = "django"\n')
    end = text.index("[[package]]", start + 1)
    # Every file of Django gets another hash, as if PyPI served other bytes under 5.2.x.
    forged = re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, text[start:end])
    lock.write_text(text[:start] + forged + text[end:])
    venv = project / ".venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])

    result = run([UV, "sync", "--locked"], cwd=project, env=uv_env(), check=False, timeout=600)

    assert result.returncode != 0
    assert "Hash mismatch for `django==" in result.stderr
    assert sorted(path.name for path in (venv / "lib").glob("python3.*/site-packages/*")) == []


# `uv==VERSION` wherever a bake installs uv, and where the hook tells the user to.
UV_PIN = re.compile(r"\buv==([0-9][^\s\"']*)")


def test_the_bake_installs_the_uv_the_template_locks_with(tmp_path):
    template_uv = UV_PIN.search((ROOT / "requirements-dev.txt").read_text())[1]
    project = bake({"use_pgbouncer": True, "use_read_replica": True, "ci": "github"}, tmp_path)
    post_gen = load_hook("post_gen_project")
    next_steps = "\n".join(post_gen.next_steps(no_input_answers(), tmp_path))
    places = {
        "next steps": next_steps,
        **{
            name: (project / name).read_text()
            for name in ("README.md", "docs/dependencies.md", ".github/workflows/ci.yml")
        },
    }

    pins = {name: UV_PIN.findall(text) for name, text in places.items()}

    assert all(pins.values()), pins
    assert {version for found in pins.values() for version in found} == {template_uv}


def test_the_documented_pip_install_gives_a_project_that_runs_without_uv(tmp_path):
    """docs/dependencies.md's block for machines without uv: export with hashes, pip alone."""
    python = python_or_skip(PAIRS[0][1])
    project = bake_pair(PAIRS[0], tmp_path / "out")
    block = code_block((project / "docs" / "dependencies.md").read_text(), "--require-hashes")
    venv = tmp_path / "venv"
    run([python, "-m", "venv", venv])
    path = os.pathsep.join([str(venv / "bin"), str(UV.parent), os.environ["PATH"]])
    env = uv_env(PATH=path, UV_PYTHON=str(python))  # never a pyenv shim
    run(["bash", "-c", f"set -euo pipefail\n{block}"], cwd=project, env=env)
    check = run([venv / "bin" / "python", "manage.py", "check"], cwd=project, env=project_env())
    assert "no issues" in check.stdout
