"""Shared pytest fixtures.

The database server fixtures are session-scoped and lazy: a server starts the first time
a test asks for it and stops when the session (or the xdist worker) ends. All the work
happens in ``devtools/harness/``, which is usable without pytest.

``bake_cli`` runs cookiecutter's command line in-process, for the hooks' specifications;
the ``e2e_*`` fixtures serve the read-replica end-to-end app (``devtools/replica_e2e.py``).
"""

import functools
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from click.testing import CliRunner
from cookiecutter.cli import main as cookiecutter_cli

from devtools.bakery import PGBOUNCER_INI, ROOT, bake
from devtools.harness import APP_DB, Primary, Replica, ShippedPgBouncer
from devtools.replica_e2e import DJANGO_VERSIONS, bake_e2e_project, serving, shell_json, urls

ARTIFACTS = ROOT / "artifacts"  # screenshots and such, kept out of git
STARTED = time.time()


@pytest.fixture(scope="session")
def pg_primary() -> Iterator[Primary]:
    """A PostgreSQL primary with role ``app`` (CREATEDB) owning database ``app``."""
    with Primary() as server:
        yield server


@pytest.fixture(scope="session")
def pg_replica(pg_primary: Primary) -> Iterator[Replica]:
    """A hot standby streaming from ``pg_primary``."""
    with Replica(pg_primary) as server:
        yield server


@pytest.fixture(scope="session")
def pgbouncer(
    pg_primary: Primary, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ShippedPgBouncer]:
    """PgBouncer in front of ``pg_primary``, run from a baked project's shipped pgbouncer.ini.

    The project's slug is ``app``, the harness's role and database, so the file routes
    ``app`` and ``test_app`` and lets role ``app`` read ``SHOW POOLS``. Clients must use TLS
    (a throwaway certificate), as the file says.
    """
    project = bake({"use_pgbouncer": True, "project_slug": APP_DB}, tmp_path_factory.mktemp("ini"))
    with ShippedPgBouncer(pg_primary, (project / PGBOUNCER_INI).read_text()) as server:
        yield server


@pytest.fixture(scope="module", params=DJANGO_VERSIONS, ids=lambda version: f"django{version}")
def e2e_project(request, tmp_path_factory, pg_primary, pg_replica):
    """A ``use_read_replica`` project with the e2e app, at ``pg_primary`` and ``pg_replica``,
    migrated and replayed on the replica; once per Django version."""
    version = request.param
    output_dir = tmp_path_factory.mktemp(f"replica-e2e-{version}")
    project = bake_e2e_project(version, output_dir, pg_primary, pg_replica)
    pg_replica.wait_for_replay(pg_primary)
    return project


@pytest.fixture(scope="module")
def e2e_shell(e2e_project, pg_primary, pg_replica):
    """Run code in ``e2e_project``'s ``manage.py shell``, its connections named e2e_shell;
    return the JSON it printed last."""
    env = e2e_project.env(**urls(pg_primary, pg_replica, "e2e_shell"))
    return functools.partial(shell_json, e2e_project, env)


@pytest.fixture(scope="module")
def e2e_server(e2e_project):
    """The base URL of ``e2e_project`` served with the lag limit off."""
    # Tests pause replay for as long as they run; the lag limit has its own server
    # (``strict_server`` in test_replica_lag.py).
    lag_limit_off = {
        "DATABASE_REPLICA_MAX_LAG_SECONDS": "3600",
        "DATABASE_REPLICA_PIN_SECONDS": "3700",
    }
    with serving(e2e_project, DATABASE_REPLICA_COOLDOWN_SECONDS="1", **lag_limit_off) as base:
        yield base


@pytest.fixture
def user_config(tmp_path):
    """A cookiecutter user config that keeps replay files and clones out of the home directory.

    One per test: a replay another test wrote (from another template copy) is not this one's.
    """
    home = tmp_path / "cookiecutter-home"
    home.mkdir()
    config = home / "config.yaml"
    config.write_text(
        f"cookiecutters_dir: {home / 'cookiecutters'}\nreplay_dir: {home / 'replay'}\n"
    )
    return config


@pytest.fixture
def _restore_cookiecutter_logging():
    """The CLI points cookiecutter's log handler at click's captured stream: undo it after."""
    logger = logging.getLogger("cookiecutter")
    handlers, level = logger.handlers[:], logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


@dataclass
class Bake:
    """What one ``bake_cli`` run gave."""

    exit_code: int
    output: str  # what cookiecutter and its hooks printed, and any uncaught exception
    exception: BaseException | None


@pytest.fixture
def output_dir(tmp_path):
    """An empty directory for ``bake_cli`` to bake into."""
    directory = tmp_path / "out"
    directory.mkdir()
    return directory


@pytest.fixture
def bake_cli(_restore_cookiecutter_logging, output_dir, user_config, capfd):
    """Run `cookiecutter --no-input TEMPLATE key=value...` (or `--replay`) into output_dir."""

    def bake(*key_values, options=(), template=ROOT, replay=False):
        capfd.readouterr()
        result = CliRunner().invoke(
            cookiecutter_cli,
            [
                "--replay" if replay else "--no-input",
                "--config-file",
                str(user_config),
                "--output-dir",
                str(output_dir),
                *options,
                str(template),
                *key_values,
            ],
        )
        hooks = capfd.readouterr()  # the hooks run as subprocesses writing to the real fds
        exception = None if isinstance(result.exception, SystemExit) else result.exception
        output = "\n".join([result.output, hooks.out, hooks.err, repr(exception)])
        return Bake(result.exit_code, output, exception)

    return bake


# ./run-tests --quick runs the tests marked quick (-m quick): the hooks' and update modules mark
# themselves; of tests/test_bake.py, every check of every combination, and of the bakes' own
# suites only the default bake's and the full bake's (both options); of the docs, the blocks that
# take seconds: the prompts, ./generate, and the README's local and production steps on the
# default bake (the other bakes' blocks, and the runbooks' drills, stay in the full suite).
DEFAULT, FULL = (
    "django_version_5.2-no_pgbouncer-no_read_replica",
    "django_version_5.2-pgbouncer-read_replica",
)
QUICK_TESTS = {
    *(
        f"test_project_suite_passes_against_postgresql[{bake}-ci_github]"
        for bake in (DEFAULT, FULL)
    ),
    f"test_local_steps_with_a_database_url_in_dotenv[{DEFAULT}]",
    f"test_production_steps_on_your_machine[{DEFAULT}]",
}
QUICK_MODULES = {"test_questions.py", "test_generate_script.py", "test_ha_doc_options.py"}


def pytest_collection_modifyitems(items):
    for item in items:
        suite = getattr(item, "originalname", "") == "test_project_suite_passes_against_postgresql"
        if (
            item.path.name in QUICK_MODULES
            or item.name in QUICK_TESTS
            or (item.path.name == "test_bake.py" and not suite)
        ):
            item.add_marker(pytest.mark.quick)


def pytest_sessionfinish(session, exitstatus):
    """In CI a skipped test fails the run: every test must really run there."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if os.environ.get("CI") and skipped and exitstatus == 0:
        reporter.write_line(f"CI: {len(skipped)} test(s) skipped; failing the run.", red=True)
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    """List the artifacts this run wrote, so a reader can open them, and the lines tests
    attached as ``summary`` user properties (counts a passing test should still show)."""
    written = sorted(
        path for path in ARTIFACTS.glob("*") if path.is_file() and path.stat().st_mtime >= STARTED
    )
    if written:
        terminalreporter.section("artifacts")
        for path in written:
            terminalreporter.write_line(str(path))
    summaries = [
        value
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "call"  # xdist sends them to the controller too
        for name, value in getattr(report, "user_properties", ())
        if name == "summary"
    ]
    if summaries:
        terminalreporter.section("summaries")
        for line in summaries:
            terminalreporter.write_line(line)
