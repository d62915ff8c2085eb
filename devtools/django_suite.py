"""Django's own test suite, run against a baked project's database settings.

:func:`tests_dir` fetches Django's ``tests/`` directory for the exact Django a bake's
``uv.lock`` pins (the sdist the lock names, its sha256 checked) and keeps it under
``.cache/django-suite/``. :func:`run` runs Django's ``tests/runtests.py`` with the bake's
Python against a real PostgreSQL, with settings built from the bake's own
``config.database.databases()`` (``devtools/django_suite_inside/``), and returns each test's
outcome. Run once with Django's backend and once with ours, everything else the same, the
tests that fail only with ours are what our backend broke (:func:`failing_only_with`).
"""

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import tomllib
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from devtools import bakery

CACHE = bakery.ROOT / ".cache" / "django-suite"
# The settings module and test runner runtests loads; this directory goes on its path.
INSIDE = Path(__file__).with_name("django_suite_inside")
SETTINGS = "django_suite_settings"

STOCK = "django.db.backends.postgresql"
OURS = "config.backends.postgresql"
REPLICA = "config.replicas.backend"

# Django's test apps whose subject is the database backend: connections, transactions,
# on_commit hooks, row locks, the SQL queries build, the test case classes' transactions and
# fixtures, the model basics and the async ORM.
APPS = (
    "backends",
    "transactions",
    "transaction_hooks",
    "select_for_update",
    "queries",
    "test_utils",
    "basic",
    "async",
)
# The apps for the replica shape: those whose tests use ``other`` by name (routing, multi-db
# test cases, assertNumQueries(using=...)), where a mirror's reads move through our replicas'
# backend; the rest of APPS would only run ``default`` again. Not multiple_database nor
# prefetch_related (Django 6.1): some of their tests write through both aliases in two
# transactions, which with a mirror wait for ever on each other's row locks, Django's own
# backend included.
MIRROR_APPS = ("backends", "test_utils", "queries", "contenttypes_tests")
# Two processes: the machine, like CI's, has two cores. Each clones its own test databases.
PARALLEL = 2
DOWNLOAD_ATTEMPTS = 4
RUN_TIMEOUT = 600  # seconds; a run takes under a minute
# The outcomes that make a run fail (django_suite_runner.py records them).
FAILING = frozenset({"failure", "error", "unexpected success"})


@dataclass(frozen=True)
class Shape:
    """The two aliases Django's suite uses: each one's ENGINE, and whether ``other`` is a
    ``TEST MIRROR`` of ``default`` (its connection reads the same test database)."""

    default: str
    other: str
    mirror: bool = False


@dataclass(frozen=True)
class SuiteRun:
    """What one run of Django's suite gave: how many tests had an outcome (runtests' "Ran N
    tests" leaves out the tests of a class skipped whole), how many failed, errored or were
    skipped, each failing test id (a failing subtest fails its test) with its traceback, and
    the wall time."""

    label: str
    tests: int
    failures: int
    errors: int
    skipped: int
    failing: frozenset[str]
    seconds: float
    details: dict[str, str] = field(default_factory=dict, repr=False)

    def summary(self):
        """One line, e.g. ``stock: 3120 tests, 0 failures, 2 errors, 95 skipped in 81.2 s``."""
        return (
            f"{self.label}: {self.tests} tests, {self.failures} failures, {self.errors} errors, "
            f"{self.skipped} skipped in {self.seconds:.1f} s"
        )


def traceback_summary(text, lines=4):
    """The last frames' and exception's lines of a formatted traceback, as one string."""
    kept = [line.strip() for line in text.strip().splitlines() if line.strip("^~ ")]
    return " | ".join(kept[-lines:])


def failing_only_with(ours, stock):
    """The test ids that fail in run ``ours`` and not in run ``stock``, sorted."""
    return sorted(ours.failing - stock.failing)


def locked_django(project):
    """The version, sdist URL and sha256 of the Django ``project``'s uv.lock pins."""
    lock = tomllib.loads((Path(project) / "uv.lock").read_text(encoding="utf-8"))
    (django,) = (package for package in lock["package"] if package["name"] == "django")
    algorithm, _, digest = django["sdist"]["hash"].partition(":")
    assert algorithm == "sha256", f"uv.lock gives Django's sdist a {algorithm} hash"
    return django["version"], django["sdist"]["url"], digest


def tests_dir(project):
    """Django's ``tests/`` directory for the Django ``project``'s uv.lock pins.

    Downloaded once (the sdist from PyPI, retried, its sha256 checked against the lock) and
    extracted under ``.cache/django-suite/django-<version>/``; pytest-xdist workers share it.
    """
    version, url, sha256 = locked_django(project)
    target = CACHE / f"django-{version}"
    with _locked(CACHE / f"django-{version}.lock"):
        if not (target / "tests" / "runtests.py").is_file():
            with tempfile.TemporaryDirectory(dir=CACHE) as scratch:
                sdist = Path(scratch) / "django.tar.gz"
                _download(url, sha256, sdist)
                _extract_tests(sdist, f"django-{version}/tests/", Path(scratch) / "tree")
                shutil.rmtree(target, ignore_errors=True)
                (Path(scratch) / "tree").rename(target)
    return target / "tests"


@contextlib.contextmanager
def _locked(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _download(url, sha256, destination):
    """Fetch ``url`` into ``destination``; a broken or altered download is fetched again."""
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        try:
            with urllib.request.urlopen(url, timeout=60) as answer:
                data = answer.read()
            if hashlib.sha256(data).hexdigest() == sha256:
                destination.write_bytes(data)
                return
            problem = "its sha256 is not the one uv.lock names"
        except OSError as error:
            problem = str(error)
        if attempt < DOWNLOAD_ATTEMPTS:
            time.sleep(2**attempt)
    raise RuntimeError(f"could not download {url} ({DOWNLOAD_ATTEMPTS} attempts): {problem}")


def _extract_tests(sdist, prefix, destination):
    """Extract the members of ``sdist`` under ``prefix`` into ``destination/tests``."""
    with tarfile.open(sdist) as archive:
        members = [member for member in archive.getmembers() if member.name.startswith(prefix)]
        for member in members:
            member.name = "tests/" + member.name.removeprefix(prefix)
        archive.extractall(destination, members=members, filter="data")


def clashes(tests, project):
    """Top-level module names both Django's ``tests`` and ``project`` provide.

    runtests puts its own directory first on the path, so such a name would hide the
    project's module (its ``config`` above all) from the backend.
    """

    def names(directory):
        return {
            path.stem
            for path in Path(directory).iterdir()
            if path.suffix == ".py" or (path / "__init__.py").is_file()
        }

    return sorted(names(tests) & names(project))


def run(python, project, tests, database_url, shape, *, label, directory, apps=APPS):
    """Run Django's suite (``tests``, for ``apps``) with ``python`` against ``database_url``,
    the settings built from ``project``'s own, the aliases in ``shape``; return a
    :class:`SuiteRun`. Its console output and results are kept in ``directory``.

    A run that outlasts :data:`RUN_TIMEOUT` is stopped, its workers too, and raises: a test
    that waits for a lock its own other connection holds would otherwise wait for ever.
    """
    clashing = clashes(tests, project)
    assert not clashing, f"Django's tests and the project both have {clashing}"
    results, log = Path(directory, f"{label}.json"), Path(directory, f"{label}.log")
    results.unlink(missing_ok=True)
    env = bakery.project_env(
        PYTHONPATH=os.pathsep.join([str(INSIDE), str(project)]),
        DJANGO_SUITE_DATABASE_URL=database_url,
        DJANGO_SUITE_DEFAULT_ENGINE=shape.default,
        DJANGO_SUITE_OTHER_ENGINE=shape.other,
        DJANGO_SUITE_OTHER_MIRRORS_DEFAULT="1" if shape.mirror else "0",
        DJANGO_SUITE_RESULTS=str(results),
        PYTHONDONTWRITEBYTECODE="1",  # nothing written into the shared tests tree
    )
    command = [python, "runtests.py", f"--settings={SETTINGS}", f"--parallel={PARALLEL}"]
    command += ["--noinput", "--verbosity=1", *apps]
    started = time.monotonic()
    with log.open("w") as output:
        output.write(f"$ {' '.join(map(str, command))}\n")
        output.flush()
        process = subprocess.Popen(
            [str(part) for part in command],
            cwd=tests,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # stopped as a group: runtests and its workers
        )
        try:
            process.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            bakery.stop_group(process)
            raise AssertionError(
                f"Django's suite ({label}) still running after {RUN_TIMEOUT} s, stopped; "
                f"see {log}:\n{_tail(log)}"
            ) from None
    seconds = time.monotonic() - started
    if not results.is_file():
        raise AssertionError(
            f"runtests ({label}) exited {process.returncode} without results; see {log}:\n"
            f"{_tail(log)}"
        )
    return parse(json.loads(results.read_text()), label=label, seconds=seconds)


def _tail(path, characters=6000):
    return path.read_text(errors="replace")[-characters:]


def parse(record, *, label, seconds):
    """A :class:`SuiteRun` from the record ``django_suite_runner`` wrote."""
    outcomes = record["outcomes"]

    def count(*kinds):
        return sum(outcome in kinds for outcome in outcomes.values())

    return SuiteRun(
        label=label,
        tests=len(outcomes),
        failures=count("failure", "unexpected success"),
        errors=count("error"),
        skipped=count("skipped"),
        failing=frozenset(test for test, outcome in outcomes.items() if outcome in FAILING),
        seconds=seconds,
        details=record["details"],
    )
