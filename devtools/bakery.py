"""Bake the template and run commands inside a baked project.

Baked projects run in one virtual environment per Django version (under
``.cache/venvs/``), with the dependencies read from the baked ``pyproject.toml``:
a project's suite then costs seconds instead of a fresh install.
"""

import contextlib
import fcntl
import importlib.util
import itertools
import json
import os
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


COMBINATIONS = combinations()


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


def requirements(project):
    """The runtime dependencies and the dev group, as written in the project's pyproject."""
    pyproject = tomllib.loads((project / "pyproject.toml").read_text())
    return sorted(pyproject["project"]["dependencies"] + pyproject["dependency-groups"]["dev"])


@contextmanager
def _locked(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # pytest-xdist workers share the environments
        yield


def project_python(project, django_version):
    """Return a Python whose environment has everything ``project`` declares."""
    venv = VENVS / f"django-{django_version}"
    python = venv / "bin" / "python"
    wanted = requirements(project)
    stamp = venv / "bake-requirements.json"
    with _locked(VENVS / f"django-{django_version}.lock"):
        if not python.exists():
            run([sys.executable, "-m", "venv", str(venv)])
            run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
        if not stamp.exists() or json.loads(stamp.read_text()) != wanted:
            run([str(python), "-m", "pip", "install", "--quiet", *wanted])
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
