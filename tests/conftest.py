"""Shared pytest fixtures.

The database server fixtures are session-scoped and lazy: a server starts the first time
a test asks for it and stops when the session (or the xdist worker) ends. All the work
happens in ``devtools/harness/``, which is usable without pytest.
"""

import os
import time
from collections.abc import Iterator

import pytest

from devtools.bakery import PGBOUNCER_INI, ROOT, bake
from devtools.harness import APP_DB, Primary, Replica, ShippedPgBouncer

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


def pytest_sessionfinish(session, exitstatus):
    """In CI a skipped test fails the run: every test must really run there."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if os.environ.get("CI") and skipped and exitstatus == 0:
        reporter.write_line(f"CI: {len(skipped)} test(s) skipped; failing the run.", red=True)
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    """List the artifacts this run wrote, so a reader can open them."""
    written = sorted(
        path for path in ARTIFACTS.glob("*") if path.is_file() and path.stat().st_mtime >= STARTED
    )
    if written:
        terminalreporter.section("artifacts")
        for path in written:
            terminalreporter.write_line(str(path))
