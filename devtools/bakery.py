"""Bake the template and run commands inside a baked project.

Baked projects run in one virtual environment per Django and Python version (under
``.cache/venvs/``), made with that Python and synced by uv from the bake's own ``uv.lock``,
hashes checked: a project's suite then costs seconds instead of a fresh install, and runs on
exactly what the project's users install.
"""

import contextlib
import fcntl
import glob
import importlib.util
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from cookiecutter.environment import StrictEnvironment
from cookiecutter.generate import generate_context
from cookiecutter.main import cookiecutter
from cookiecutter.prompt import prompt_for_config

from devtools.harness import LOOPBACK, pick_port

ROOT = Path(__file__).resolve().parent.parent
VENVS = Path(os.environ.get("BAKE_VENVS", ROOT / ".cache" / "venvs"))
# The PgBouncer configuration a use_pgbouncer project ships, relative to the project.
PGBOUNCER_INI = Path("deploy", "pgbouncer", "pgbouncer.ini")
# The uv of the template's virtualenv (requirements-dev.txt pins it).
UV = Path(sys.executable).with_name("uv")


class MissingInterpreter(RuntimeError):
    """This machine has no Python of the version a bake asks for."""


def interpreter(version):
    """A Python ``version`` ("3.11") of this machine that runs: the one running this code if
    it is that version, else pyenv's (its shims refuse versions not selected, so the
    interpreters under ``versions/`` are used directly, as scripts/lib.sh does), else
    ``python<version>`` on ``PATH``. Raise :class:`MissingInterpreter` if there is none."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return Path(getattr(sys, "_base_executable", sys.executable))
    pyenv_root = os.environ.get("PYENV_ROOT") or str(Path.home() / ".pyenv")
    if shutil.which("pyenv"):
        answer = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=False)
        pyenv_root = answer.stdout.strip() or pyenv_root
    candidates = sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python3"), reverse=True)
    candidates.append(shutil.which(f"python{version}"))
    check = "import sys, venv; print(f'{sys.version_info.major}.{sys.version_info.minor}')"
    for candidate in filter(None, candidates):
        try:
            result = subprocess.run(
                [candidate, "-c", check], capture_output=True, text=True, timeout=30
            )
        except OSError:
            continue
        if result.returncode == 0 and result.stdout.strip() == version:
            return Path(candidate)
    raise MissingInterpreter(
        f"no Python {version} with venv on this machine (looked in {pyenv_root}/versions/ "
        f"and for python{version} on PATH)"
    )


def uv_env(**variables):
    """The environment uv runs in: never a Python it downloads, never the caller's virtualenv."""
    env = {name: value for name, value in os.environ.items() if name != "VIRTUAL_ENV"}
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env.update(variables)
    return env


def cookiecutter_json():
    """The template's cookiecutter.json, as written."""
    return json.loads((ROOT / "cookiecutter.json").read_text(encoding="utf-8"))


# Every answer each choice and yes/no prompt allows, in cookiecutter.json's order.
CHOICES = {
    name: [False, True] if isinstance(default, bool) else default
    for name, default in cookiecutter_json().items()
    if not name.startswith("_") and isinstance(default, bool | list)
}
# The option prompts whose full cartesian product is baked and tested.
OPTIONS = ("django_version", "use_pgbouncer", "use_read_replica", "ci")


def combinations(options=OPTIONS):
    """Every combination of answers to ``options``, each a dict."""
    values = itertools.product(*(CHOICES[option] for option in options))
    return [dict(zip(options, combination, strict=True)) for combination in values]


def _version(text):
    return tuple(int(part) for part in text.split("."))


def other_python_combinations():
    """One combination for each python_version but the default (cookiecutter.json's first),
    with the newest Django that supports it and every option on, so that each Python a bake
    may have runs a bake's checks and suite under itself."""
    pre_gen = load_hook("pre_gen_project")
    return [
        {
            "python_version": python,
            "django_version": max(
                (
                    d
                    for d in CHOICES["django_version"]
                    if pre_gen.check_python_for_django(python, d) is None
                ),
                key=_version,
            ),
            "use_pgbouncer": True,
            "use_read_replica": True,
            "ci": CHOICES["ci"][0],
        }
        for python in CHOICES["python_version"][1:]
    ]


def combination_id(answers):
    """A readable test id, e.g. ``django_version_5.2-pgbouncer-no_read_replica-ci_github``."""
    parts = []
    for name, value in answers.items():
        if isinstance(value, bool):
            option = name.removeprefix("use_")
            parts.append(option if value else f"no_{option}")
        else:
            parts.append(f"{name}_{value}")
    return "-".join(parts)


def bake(answers, output_dir):
    """Generate a project from the template with ``answers``; return its directory."""
    return Path(
        cookiecutter(
            str(ROOT),
            no_input=True,
            extra_context={"project_name": "Shop Front", **answers},
            output_dir=str(output_dir),
        )
    )


def load_hook(name, hooks_dir=ROOT / "hooks"):
    """Import a hook file as a module (it is valid Python before rendering)."""
    spec = importlib.util.spec_from_file_location(name, Path(hooks_dir) / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The full product of OPTIONS at the default python_version, then one bake per other one.
COMBINATIONS = combinations() + other_python_combinations()


def no_input_answers(**overrides):
    """The answers cookiecutter gives the hooks for ``--no-input`` with these overrides."""
    context = generate_context(str(ROOT / "cookiecutter.json"), extra_context=overrides)
    return dict(prompt_for_config(context, no_input=True))


def template_context(**overrides):
    """cookiecutter.json as cookiecutter passes it to hooks (``_cookiecutter``)."""
    return {k: v for k, v in cookiecutter_json().items() if not k.startswith("_")} | overrides


def rendered_hook(hook, directory, answers, template):
    """Render hook ``hook`` into ``directory`` as cookiecutter does, with ``answers`` and
    ``template`` (see :func:`template_context`), and import it."""
    context = {"cookiecutter": answers, "_cookiecutter": template}
    source = (ROOT / "hooks" / f"{hook}.py").read_text(encoding="utf-8")
    rendered = StrictEnvironment(context=context).from_string(source).render(**context)
    (Path(directory) / f"{hook}.py").write_text(rendered, encoding="utf-8")
    return load_hook(hook, hooks_dir=directory)


def error_lines(text):
    """The lines a hook printed for a refusal (cookiecutter's own log lines excluded)."""
    return [
        line
        for line in text.splitlines()
        if line.startswith("ERROR:") and not line.startswith("ERROR: Stopping generation")
    ]


def everything_under(directory):
    """Every file and directory under ``directory``, as sorted relative POSIX paths."""
    return sorted(path.relative_to(directory).as_posix() for path in Path(directory).rglob("*"))


def python_version_of(project):
    """The ``python_version`` a project was baked with (its ``requires-python`` floor)."""
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    return pyproject["project"]["requires-python"].removeprefix(">=")


def locked_versions(lock):
    """``name==version`` of every package a uv.lock (its text) pins from an index, sorted:
    what it installs, whatever the project's name (the one thing that differs between the
    locks of bakes of the same versions)."""
    packages = tomllib.loads(lock)["package"]
    return sorted(
        f"{package['name']}=={package['version']}"
        for package in packages
        if "registry" in package.get("source", {})
    )


@contextmanager
def _locked(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # pytest-xdist workers share the environments
        yield


def project_python(project, django_version):
    """Return a Python whose environment holds exactly what ``project``'s uv.lock pins.

    The environment is shared by the bakes of one Django and Python version (their locks
    differ only in the project's name) and made with that Python (:func:`interpreter`;
    :class:`MissingInterpreter` if this machine has none). ``uv sync --locked`` fills it from
    the bake's lock, the ``asgi`` extra and the dev group included, checking every file's
    sha256, and fails if the lock no longer matches the bake's pyproject.toml.
    """
    python_version = python_version_of(project)
    venv = VENVS / f"django-{django_version}-python-{python_version}"
    python = venv / "bin" / "python"
    wanted = locked_versions((project / "uv.lock").read_text())
    stamp = venv / "bake-lock.json"
    with _locked(VENVS / f"{venv.name}.lock"):
        if not python.exists():
            run([interpreter(python_version), "-m", "venv", str(venv)])
        if not stamp.exists() or json.loads(stamp.read_text()) != wanted:
            sync = [UV, "sync", "--locked", "--all-extras", "--quiet", "--python", python]
            run(sync, cwd=project, env=uv_env(UV_PROJECT_ENVIRONMENT=str(venv)), timeout=900)
            stamp.write_text(json.dumps(wanted))
    return python


def run(command, *, cwd=None, env=None, check=True, timeout=600):
    """Run ``command``; on failure raise with its output, so the test shows why."""
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, command))} exited {result.returncode}\n"
            f"--- stdout ---\n{result.stdout[-6000:]}\n--- stderr ---\n{result.stderr[-6000:]}"
        )
    return result


def project_env(**variables):
    """The current environment without the project's settings variables, plus ``variables``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "DATABASE_", "PYTEST_"))
    }
    env.update(variables)
    return env


def stop_group(process, timeout=15):
    """Stop ``process`` and its process group (started with ``start_new_session=True``).

    SIGTERM first, SIGKILL if the group has not ended within ``timeout`` seconds.
    """
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class AppServer:
    """gunicorn serving a baked project on a free loopback port, in a process group of its own.

    ``app`` and ``options`` go to gunicorn; its log is kept in the project directory for
    error messages. Use it as a context manager (waits until ``/healthz/`` answers) or call
    :meth:`wait_ready` and :meth:`stop` yourself.
    """

    def __init__(self, python, project, env, *, app="config.wsgi:application", options=()):
        self.port = pick_port()
        self.base = f"http://{LOOPBACK}:{self.port}"
        self.log_path = Path(project) / f"gunicorn-{self.port}.log"
        command = [python, "-m", "gunicorn", app, f"--bind={LOOPBACK}:{self.port}", *options]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(part) for part in command],
                cwd=project,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # stopped as a group: the master and its workers
            )

    def wait_ready(self, path="/healthz/", timeout=60.0):
        """Return once ``path`` answers 2xx; raise with the server log if it never does."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"app server exited on startup:\n{self.log_tail()}")
            try:
                urllib.request.urlopen(self.base + path, timeout=5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"app server not ready after {timeout:g}s:\n{self.log_tail()}"
                    ) from None
                time.sleep(0.1)

    def log_tail(self, lines=40):
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self):
        stop_group(self.process)

    def __enter__(self):
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info):
        self.stop()
