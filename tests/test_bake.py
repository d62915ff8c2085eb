"""Every combination of options bakes into a clean project whose own suite passes."""

import os
import re
import shutil

import pytest

from devtools.bakery import (
    CHOICES,
    COMBINATIONS,
    MissingInterpreter,
    bake,
    combination_id,
    load_hook,
    project_env,
    project_python,
    run,
)

CACHE_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"}
SECRET_KEY = "x7Gk2pQv9sLm4Rt8Wz1Yc6Hn3Jb5Df0Ae7Ui2Oo9Pl4Kk8Mm1Nn6Bb3Vv5Cc0Xx"

# Files whose text must carry no Jinja at all once rendered.
STRICT_SUFFIXES = {".py", ".toml", ".ini", ".cfg", ".txt", ".md", ".example", ".service"}
JINJA = re.compile(r"\{%|\{#|\{\{")
# In workflow files only GitHub's own ${{ }} expressions are legitimate.
JINJA_OUTSIDE_GITHUB_EXPRESSIONS = re.compile(r"\{%|\{#|(?<!\$)\{\{")


post_gen = load_hook("post_gen_project")


class Baked:
    def __init__(self, answers, path):
        self.answers = answers
        self.path = path
        self.python = project_python(path, answers["django_version"])

    def files(self):
        """The generated files (not the caches that running the checks leaves behind)."""
        return sorted(
            path
            for path in self.path.rglob("*")
            if path.is_file() and not CACHE_DIRS.intersection(path.relative_to(self.path).parts)
        )

    def run(self, *args, **env):
        return run([self.python, *args], cwd=self.path, env=project_env(**env))

    def deploy_env(self, settings_name):
        env = {
            "DJANGO_SETTINGS_MODULE": f"config.settings.{settings_name}",
            "DJANGO_SECRET_KEY": SECRET_KEY,
            "DJANGO_ALLOWED_HOSTS": "shop.example.com",
            "DATABASE_URL": "postgres://shop:pw@db.example.com:5432/shop",
            "DATABASE_SSLMODE": "verify-full",  # as the README's Deploy section sets it
        }
        if self.answers["use_pgbouncer"]:
            env["DATABASE_URL"] = "postgres://shop:pw@pgbouncer.example.com:6432/shop"
            env["DATABASE_DIRECT_URL"] = "postgres://shop:pw@db.example.com:5432/shop"
        if self.answers["use_read_replica"]:
            env["DATABASE_REPLICA_URLS"] = "postgres://shop:pw@replica.example.com:5432/shop"
        return env


@pytest.fixture(scope="session", params=COMBINATIONS, ids=combination_id)
def baked(request, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp(combination_id(request.param))
    try:
        return Baked(request.param, bake(request.param, output_dir))
    except MissingInterpreter as error:  # a python_version this machine lacks (CI has all)
        pytest.skip(str(error))


def test_no_unrendered_template_syntax(baked):
    problems = []
    for path in baked.files():
        relative = path.relative_to(baked.path)
        if "cookiecutter" in str(relative) or JINJA.search(str(relative)):
            problems.append(f"{relative}: template syntax in the file name")
        text = path.read_text()
        if "cookiecutter." in text:
            problems.append(f"{relative}: a cookiecutter variable")
        suffix = path.suffix or path.name
        if suffix in STRICT_SUFFIXES and JINJA.search(text):
            problems.append(f"{relative}: Jinja syntax")
        if suffix in {".yml", ".yaml"} and JINJA_OUTSIDE_GITHUB_EXPRESSIONS.search(text):
            problems.append(f"{relative}: Jinja syntax outside GitHub expressions")
    assert problems == []


def test_pruned_paths_are_absent(baked):
    present = [p for p in post_gen.paths_to_remove(baked.answers) if (baked.path / p).exists()]
    assert present == []


def test_kept_paths_are_present(baked):
    missing = [p for p in post_gen.paths_to_keep(baked.answers) if not (baked.path / p).exists()]
    assert missing == []


# PostgreSQL's own replication and failover concern every bake: these files name standbys,
# replication and poolers whatever the options picked.
HIGH_AVAILABILITY = ("docs/high-availability.md", "deploy/patroni/patroni.yml")
# The record of every answer, picked or not, that cruft reads to update the project.
ANSWERS_RECORD = ".cruft.json"


def test_unpicked_options_leave_no_trace(baked):
    unwanted = []
    if not baked.answers["use_pgbouncer"]:
        unwanted += ["pgbouncer"]
    if not baked.answers["use_read_replica"]:
        unwanted += ["replica"]
    if baked.answers["ci"] == "none":
        unwanted += ["github"]
    traces = [
        f"{path.relative_to(baked.path)}: {word}"
        for path in baked.files()
        if str(path.relative_to(baked.path)) not in (*HIGH_AVAILABILITY, ANSWERS_RECORD)
        for word in unwanted
        if word.lower() in f"{path.relative_to(baked.path)}\n{path.read_text()}".lower()
    ]
    assert traces == []


def test_ruff_check_is_clean(baked):
    baked.run("-m", "ruff", "check", ".")


def test_ruff_format_is_clean(baked):
    baked.run("-m", "ruff", "format", "--check", ".")


def test_mypy_is_clean(baked):
    baked.run("-m", "mypy", ".")


def test_pre_commit_hooks_pass(baked, tmp_path):
    """The hooks run offline with the virtualenv's tools, as after `pre-commit install`."""
    project = shutil.copytree(
        baked.path, tmp_path / "project", ignore=shutil.ignore_patterns(*CACHE_DIRS)
    )
    run(["git", "init", "--quiet"], cwd=project)
    run(["git", "add", "--all"], cwd=project)
    env = project_env(
        PATH=f"{baked.python.parent}{os.pathsep}{os.environ['PATH']}",
        PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"),
    )
    run([baked.python, "-m", "pre_commit", "run", "--all-files"], cwd=project, env=env)


# How the settings read a variable: env.string("NAME", ...), env.boolean("NAME"), ...
ENV_READ = re.compile(r"\benv\.\w+\(\s*\"([A-Z][A-Z0-9_]*)\"")


def variables_read(project):
    return {
        name
        for path in (project / "config").rglob("*.py")
        for name in ENV_READ.findall(path.read_text())
    }


def test_env_example_lists_every_variable_the_settings_read(baked):
    listed = set(
        re.findall(r"^# ?([A-Z][A-Z0-9_]*)=", (baked.path / ".env.example").read_text(), re.M)
    )
    assert sorted(variables_read(baked.path) - listed) == []


def test_readme_documents_every_variable_the_settings_read(baked):
    documented = set(
        re.findall(r"^\| `([A-Z][A-Z0-9_]*)`", (baked.path / "README.md").read_text(), re.M)
    )
    assert sorted(variables_read(baked.path) - documented) == []


def test_system_checks_pass(baked):
    baked.run("manage.py", "check", "--fail-level", "WARNING")


def test_no_missing_migrations(baked):
    baked.run(
        "manage.py", "makemigrations", "--check", "--dry-run", DATABASE_URL="postgres:///absent"
    )


@pytest.mark.parametrize("settings_name", ["staging", "production"])
def test_deploy_checks_pass(baked, settings_name):
    baked.run(
        "manage.py",
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        **baked.deploy_env(settings_name),
    )


def test_project_suite_passes_against_postgresql(baked, pg_primary, request):
    env = {"DATABASE_URL": pg_primary.url()}
    if baked.answers["use_pgbouncer"]:
        # Tests run through PgBouncer; the test database is made on the direct connection.
        env = {
            "DATABASE_URL": request.getfixturevalue("pgbouncer").url(),
            "DATABASE_DIRECT_URL": pg_primary.url(),
        }
    result = baked.run("-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", **env)
    assert " passed" in result.stdout
    assert "skipped" not in result.stdout


def test_the_project_runs_on_the_python_version_it_was_baked_with(baked):
    """Its checks and suite above ran under that Python: the environment is made with it."""
    wanted = baked.answers.get("python_version", CHOICES["python_version"][0])
    result = baked.run("-c", "import sys; print('%d.%d' % sys.version_info[:2])")
    assert result.stdout.strip() == wanted
