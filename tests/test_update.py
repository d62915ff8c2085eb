"""Baked projects take the template's later commits with cruft, as the generated README says.

The module clones this repository: its HEAD is the "old" template the projects are baked from,
and one commit made on top is the "new" one (a line of a doc, and a tighter dependency range in
pyproject.toml with the locks' matching specifier: the template's side of a lock change). A
user's project then has its own model, setting, doc line, test and dependency range (the user's
side of a lock change, relocked with ``uv lock``), and ``cruft update`` brings it to the new
commit: the template's change applies, the user's survive, the README's relock makes
``uv sync --locked`` work, and the project's own suite passes against a real PostgreSQL.
"""

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cookiecutter.main import cookiecutter

from devtools.bakery import (
    ROOT,
    UV,
    combination_id,
    combinations,
    interpreter,
    load_hook,
    project_env,
    project_python,
    run,
    uv_env,
)
from devtools.readme import steps

pytestmark = [pytest.mark.xdist_group("update"), pytest.mark.quick]

CRUFT = Path(sys.executable).with_name("cruft")
README_CRUFT = "uvx cruft@2.16.0"  # how the generated README runs cruft
PROJECT = "{{cookiecutter.project_slug}}"
GIT_USER = ["-c", "user.name=Template Tests", "-c", "user.email=tests@example.com"]
TEMPLATE_FIX = "A line the template's newer commit adds."
USER_DOC = "A line the project's own team wrote."
# The newer template tightens a range the shipped locks already satisfy (python-dotenv 1.2.x).
TEMPLATE_RANGE = ('"python-dotenv>=1.0,<2"', '"python-dotenv>=1.1,<2"')
LOCK_RANGE = ('name = "python-dotenv", specifier = ">=1.0,<2"', ">=1.1,<2")
USER_RANGE = ('"pytest>=8",', '"pytest>=8.3",')  # far from the template's line

post_gen = load_hook("post_gen_project")
OPTION_COMBINATIONS = combinations(sorted({option for option, _ in post_gen.MANIFEST}))
DEFAULT = {"use_pgbouncer": False, "use_read_replica": False, "ci": "github"}
FULL = {"use_pgbouncer": True, "use_read_replica": True, "ci": "github"}


def git(cwd, *args):
    return run(["git", *GIT_USER, *args], cwd=cwd).stdout.strip()


def bake_with_cookiecutter(template, answers, output_dir):
    """A bake as ``cookiecutter <template>`` makes it: the hook writes .cruft.json."""
    output_dir.mkdir(parents=True, exist_ok=True)
    extra = {"project_name": "Shop Front", **answers}
    return Path(
        cookiecutter(str(template), no_input=True, extra_context=extra, output_dir=str(output_dir))
    )


def commit_all(project, message):
    if not (project / ".git").exists():
        git(project, "init", "--quiet", "--initial-branch", "main")
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "--message", message)


class Template:
    def __init__(self, path, old, new):
        self.path, self.old, self.new = path, old, new
        self.baked_old = {}  # name -> project baked at the old commit by cookiecutter


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A clone of this repository: projects baked at its HEAD (old), then one commit (new)."""
    base = tmp_path_factory.mktemp("update")
    clone = base / "template"
    run(["git", "clone", "--quiet", ROOT, clone])
    old = git(clone, "rev-parse", "HEAD")
    made = Template(clone, old, None)
    wanted = {f"tree-{combination_id(c)}": c for c in OPTION_COMBINATIONS}
    wanted |= {"user": DEFAULT, "add-pgbouncer": DEFAULT}
    for name, answers in wanted.items():
        made.baked_old[name] = bake_with_cookiecutter(clone, answers, base / "old" / name)

    template_dir = clone / PROJECT
    doc = template_dir / "docs" / "dependencies.md"
    doc.write_text(f"{doc.read_text()}\n{TEMPLATE_FIX}\n")
    replace(template_dir / "pyproject.toml", *TEMPLATE_RANGE)
    for lock in sorted((clone / "templates" / "locks").glob("*.uv.lock")):
        replace(lock, LOCK_RANGE[0], LOCK_RANGE[0].replace(">=1.0,<2", LOCK_RANGE[1]))
    git(clone, "commit", "--quiet", "--all", "--message", "A newer template")
    made.new = git(clone, "rev-parse", "HEAD")
    return made


def replace(path, old, new):
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new))


def readme_update_lines(project):
    """The README's template-update step, the cruft of requirements-dev.txt in place of uvx."""
    commands = [
        line.partition("#")[0].strip()
        for line in steps(project / "README.md")["template-update"].splitlines()
    ]
    return {
        command.split()[2 if command.startswith(README_CRUFT) else 1]: command.replace(
            README_CRUFT, str(CRUFT)
        )
        for command in commands
        if command
    }


def sh(project, line, **env):
    path = f"{UV.parent}{os.pathsep}{os.environ['PATH']}"  # the pinned uv, as the README's
    env = {"UV_PYTHON": str(interpreter("3.12")), **env}  # never a pyenv shim
    return run(
        ["bash", "-c", f"set -euo pipefail\n{line}"],
        cwd=project,
        env=uv_env(PATH=path, **env),
        timeout=900,
    )


def make_venv(project, python_version):
    run([interpreter(python_version), "-m", "venv", project / ".venv"])


def user_changes(project, django_version):
    """What a team adds after the bake: a model with its migration, a setting, a doc line, a
    test of its own, and a tighter dependency range relocked with ``uv lock``."""
    models = project / "users" / "models.py"
    replace(
        models,
        "from django.contrib.auth.models import AbstractUser\n",
        "from django.contrib.auth.models import AbstractUser\nfrom django.db import models\n",
    )
    models.write_text(
        models.read_text() + "\n\nclass Note(models.Model):\n    text = models.TextField()\n"
    )
    settings = project / "config" / "settings" / "base.py"
    settings.write_text(settings.read_text() + "\nNOTES_PER_PAGE = 20\n")
    doc = project / "docs" / "migrations.md"
    doc.write_text(f"{doc.read_text()}\n{USER_DOC}\n")
    (project / "tests" / "test_notes.py").write_text(
        "import pytest\nfrom django.conf import settings\n\nfrom users.models import Note\n\n\n"
        "@pytest.mark.django_db\ndef test_a_note_is_stored():\n"
        '    Note.objects.create(text="kept")\n'
        '    assert Note.objects.get().text == "kept"\n'
        "    assert settings.NOTES_PER_PAGE == 20\n"
    )
    python = project_python(project, django_version)
    run(
        [python, "manage.py", "makemigrations", "users", "--name", "note"],
        cwd=project,
        env=project_env(),
    )
    replace(project / "pyproject.toml", *USER_RANGE)
    sh(project, "uv lock --quiet")
    commit_all(project, "Our notes")


def take_update(project, template, *options):
    """``cruft update`` as the README runs it (with ``options``); then the lock is stale."""
    line = readme_update_lines(project)["update"]
    sh(project, f"{line} --allow-untracked-files {' '.join(options)}")
    state = json.loads((project / ".cruft.json").read_text())
    assert state["commit"] == template.new
    assert state["template"] == str(template.path)
    assert not list(project.rglob("*.rej"))
    assert "U" not in {
        code for line in git(project, "status", "--porcelain").splitlines() for code in line[:2]
    }


def relock_and_sync(project, python_version):
    """The README's relock line; ``uv sync --locked`` installs the merged project into .venv."""
    stale = run([UV, "lock", "--check"], cwd=project, env=uv_env(), check=False)
    make_venv(project, python_version)
    sh(project, readme_update_lines(project)["lock"])
    run([UV, "lock", "--check"], cwd=project, env=uv_env())
    return stale.returncode != 0, project / ".venv" / "bin" / "python"


def suite_passes(project, python, primary, pooler=None, *, with_user_test=True):
    """The project's suite passes against ``primary`` (through ``pooler``), and includes the
    user's own test when the user changed the project (:func:`user_changes`)."""
    env = {"DATABASE_URL": primary.url()}
    if pooler is not None:
        env = {"DATABASE_URL": pooler.url(), "DATABASE_DIRECT_URL": primary.url()}
    result = run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"],
        cwd=project,
        env=project_env(**env),
        timeout=900,
    )
    assert " passed" in result.stdout
    assert "skipped" not in result.stdout
    assert not with_user_test or (
        "test_notes.py"
        in run(
            [python, "-m", "pytest", "--collect-only", "-q"], cwd=project, env=project_env(**env)
        ).stdout
    )


def check_user_and_template_changes(project):
    assert TEMPLATE_FIX in (project / "docs" / "dependencies.md").read_text()
    assert USER_DOC in (project / "docs" / "migrations.md").read_text()
    pyproject = (project / "pyproject.toml").read_text()
    assert TEMPLATE_RANGE[1] in pyproject and USER_RANGE[1] in pyproject
    assert "class Note(" in (project / "users" / "models.py").read_text()
    assert (project / "users" / "migrations" / "0002_note.py").is_file()
    assert "NOTES_PER_PAGE = 20" in (project / "config" / "settings" / "base.py").read_text()


def test_cruft_check_sees_the_newer_commit(template):
    project = template.baked_old["user"]
    result = run([CRUFT, "check"], cwd=project, check=False)
    assert result.returncode != 0, result.stdout
    assert "out of date" in result.stdout


def test_a_cookiecutter_bake_takes_an_update_and_keeps_the_users_changes(template, pg_primary):
    project = template.baked_old["user"]
    user_changes(project, "5.2")

    take_update(project, template)

    check_user_and_template_changes(project)
    lock_was_stale, python = relock_and_sync(project, "3.12")
    assert lock_was_stale  # uv.lock is skipped: the README's relock is what makes it match
    commit_all(project, "Template update")
    suite_passes(project, python, pg_primary)
    assert run([CRUFT, "check"], cwd=project).returncode == 0


def test_a_cruft_create_bake_with_every_option_takes_an_update(
    template, pg_primary, pgbouncer, tmp_path
):
    options = [f"--extra-context={json.dumps({'project_name': 'Shop Front', **FULL})}"]
    run(
        [
            CRUFT,
            "create",
            template.path,
            "--checkout",
            template.old,
            "--no-input",
            "--output-dir",
            tmp_path,
            *options,
        ]
    )
    project = tmp_path / "shop_front"
    assert json.loads((project / ".cruft.json").read_text())["commit"] == template.old
    user_changes(project, "5.2")

    take_update(project, template)

    check_user_and_template_changes(project)
    _, python = relock_and_sync(project, "3.12")
    suite_passes(project, python, pg_primary, pgbouncer)


def tree(project):
    """Every file but git's, the cruft record and the virtualenv: path -> text (uv.lock's
    text left out: an update skips it)."""
    return {
        path.relative_to(project).as_posix(): "" if path.name == "uv.lock" else path.read_text()
        for path in project.rglob("*")
        if path.is_file()
        and not {".git", ".venv", "__pycache__"} & set(path.relative_to(project).parts)
        and path.name != ".cruft.json"
    }


@pytest.mark.parametrize("answers", OPTION_COMBINATIONS, ids=combination_id)
def test_an_update_gives_the_tree_of_a_fresh_bake(template, answers, tmp_path):
    project = template.baked_old[f"tree-{combination_id(answers)}"]
    commit_all(project, "Baked")

    take_update(project, template)

    assert tree(project) == tree(bake_with_cookiecutter(template.path, answers, tmp_path))


def test_an_update_turns_pgbouncer_on_as_a_fresh_bake_has_it(
    template, pg_primary, pgbouncer, tmp_path
):
    project = template.baked_old["add-pgbouncer"]
    commit_all(project, "Baked")

    take_update(project, template, "--variables-to-update", shlex_json({"use_pgbouncer": True}))

    fresh = bake_with_cookiecutter(template.path, {**DEFAULT, "use_pgbouncer": True}, tmp_path)
    assert tree(project) == tree(fresh)
    state = json.loads((project / ".cruft.json").read_text())
    assert state["context"]["cookiecutter"]["use_pgbouncer"] is True
    _, python = relock_and_sync(project, "3.12")
    suite_passes(project, python, pg_primary, pgbouncer, with_user_test=False)


def shlex_json(value):
    return shlex.quote(json.dumps(value))


def test_the_update_workflow_passes_actionlint(template, tmp_path):
    project = bake_with_cookiecutter(ROOT, DEFAULT, tmp_path)
    workflow = Path(".github", "workflows", "template-update.yml")
    shellcheck = shutil.which("shellcheck", path=str(CRUFT.parent))
    result = subprocess.run(
        [CRUFT.with_name("actionlint"), f"-shellcheck={shellcheck}", str(workflow)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "uvx cruft@2.16.0 check" in (project / workflow).read_text()


def test_the_readme_runs_the_cruft_of_requirements_dev():
    version = README_CRUFT.rpartition("@")[2]
    assert f"cruft=={version}" in (ROOT / "requirements-dev.txt").read_text().splitlines()
