"""Shared pytest fixtures.

The database server fixtures are session-scoped and lazy: a server starts the first time
a test asks for it and stops when the session (or the xdist worker) ends. All the work
happens in ``devtools/harness/``, which is usable without pytest.
"""

import os
import time
from collections.abc import Iterator

import pytest

from devtools.bakery import ROOT
from devtools.harness import PgBouncer, Primary, Replica

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
def pgbouncer(pg_primary: Primary) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode in front of ``pg_primary`` (default_pool_size=5)."""
    with PgBouncer(pg_primary) as server:
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
