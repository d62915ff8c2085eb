"""``manage.py connection_budget`` counts what an app server under load really opens.

A default bake with the drills' read view (``devtools/drill_app.py``) is served by gunicorn from
its environment, against the harness's primary, in three shapes: sync workers with persistent
connections, sync workers with the pool, and threads. ``devtools/load.py`` loads it with more
clients than it serves at once while the test counts the application role's backends in
``pg_stat_activity``: the highest count is the figure the command gives for ``default`` in the
same environment (its ``/readyz/`` line is left out: the load sends no probe). A pool shared by
threads stays within its figure; through PgBouncer (the shipped pgbouncer.ini), the figure is
PgBouncer's clients, and the primary sees no more than the file's pool.
"""

import re
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from devtools import drill_app
from devtools.harness import APP_DB, APP_USER
from devtools.load import failed, load
from devtools.projects import Project, create_database

# One worker runs the whole module: its module-scoped projects are set up once.
pytestmark = pytest.mark.xdist_group("connection-budget")

DATABASE = "budget"
SECRET_KEY = "budget-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGH"
# How each shape is asked for: the variables gunicorn.conf.py and gunicorn itself read, so
# the command sees what gunicorn runs.
SHAPES = {
    "persistent": {"WEB_CONCURRENCY": "3"},
    "pool": {"WEB_CONCURRENCY": "3", "DATABASE_POOL": "true"},
    "threads": {"WEB_CONCURRENCY": "2", "GUNICORN_CMD_ARGS": "--threads 3"},
}
# A pool shared by threads: whether it opens its one extra connection (while its first ones
# are still connecting, a request waits and it grows) depends on how many threads ask at once.
POOLED_THREADS = {
    "WEB_CONCURRENCY": "2",
    "GUNICORN_CMD_ARGS": "--threads 3",
    "DATABASE_POOL": "true",
}
# The application's server connections: its role, on its database, in client backends.
BACKENDS = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE usename = %s AND datname = %s AND backend_type = 'client backend'"
)


def make_project(answers, tmp_path_factory, **variables):
    """A bake of ``answers`` serving the drills' read view, migrated."""
    project = Project.bake(
        answers,
        tmp_path_factory.mktemp("budget"),
        modules=drill_app.MODULES,
        DJANGO_SETTINGS_MODULE=drill_app.SETTINGS_MODULE,
        DJANGO_SECRET_KEY=SECRET_KEY,
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DJANGO_SECURE_SSL_REDIRECT="false",
        DATABASE_SSLMODE="disable",  # the harness's primary has no certificate
        **variables,
    )
    project.manage("migrate", "--no-input")
    return project


@pytest.fixture(scope="module")
def project(tmp_path_factory, pg_primary):
    """The default bake, on a database of its own."""
    create_database(pg_primary, DATABASE)
    return make_project({}, tmp_path_factory, DATABASE_URL=pg_primary.url(dbname=DATABASE))


@pytest.fixture(scope="module")
def pooled_project(tmp_path_factory, pg_primary, pgbouncer):
    """``use_pgbouncer``: through the harness's PgBouncer, which routes only its own database
    and requires TLS (hence the URL's own ``sslmode``)."""
    return make_project(
        {"use_pgbouncer": True},
        tmp_path_factory,
        DATABASE_URL=pgbouncer.url() + "?sslmode=require",
        DATABASE_DIRECT_URL=pg_primary.url(dbname=pgbouncer.database),
    )


def budget_figures(project, env):
    """What ``connection_budget`` says one app server opens for ``default``, and the most
    server connections its pooler opens (``None`` without one)."""
    report = project.manage("connection_budget", env=env).stdout
    figure = int(re.search(r"^\s+default\s+(\d+)\s", report, re.M).group(1))
    pooler = re.search(r"which opens at most (\d+) to the server", report)
    return figure, pooler and int(pooler.group(1))


def peaks_under_load(server, count, *, clients, seconds=5.0):
    """Load ``server``'s read view; return the highest of each figure ``count()`` returns
    while it ran, and the load's records."""
    peaks = None
    with ThreadPoolExecutor(max_workers=1) as runner:
        records = runner.submit(
            load, server.base, "/read/", clients=clients, seconds=seconds,
            max_requests=1_000_000, write=False,
        )  # fmt: skip
        while not records.done():
            counts = count()
            peaks = counts if peaks is None else tuple(map(max, peaks, counts))
            time.sleep(0.01)
        return peaks, records.result()


def backends(watcher, database):
    """The application's backends on ``database``, counted on a superuser's ``watcher``."""
    return watcher.execute(BACKENDS, [APP_USER, database]).fetchone()[0]


def measure(project, primary, name, variables):
    """The command's figure and the peak under load, for gunicorn run with ``variables``."""
    env = project.env(**variables)
    figure, _ = budget_figures(project, env)
    with (
        project.serve(env) as server,
        psycopg.connect(primary.superuser_conninfo(), autocommit=True) as watcher,
    ):
        (peak,), records = peaks_under_load(
            server, lambda: (backends(watcher, DATABASE),), clients=4 * figure
        )
    print(f"{name}: the command says {figure}, pg_stat_activity peaked at {peak}, "
          f"{len(records)} requests")  # fmt: skip
    assert failed(records) == []
    return figure, peak


@pytest.mark.parametrize("shape", SHAPES)
def test_the_budget_is_the_most_connections_an_app_server_opens_under_load(
    project, pg_primary, shape
):
    figure, peak = measure(project, pg_primary, shape, SHAPES[shape])
    assert peak == figure


def test_the_budget_bounds_a_pool_shared_by_threads(project, pg_primary):
    figure, peak = measure(project, pg_primary, "pooled threads", POOLED_THREADS)
    assert (figure, 2 * 3 <= peak <= figure) == (2 * 4, True)  # each thread's, at most max_size


def test_through_pgbouncer_the_budget_is_its_clients_and_the_pool_bounds_the_primary(
    pooled_project, pg_primary, pgbouncer
):
    env = pooled_project.env(WEB_CONCURRENCY="3")
    figure, pool = budget_figures(pooled_project, env)

    def count(watcher):
        clients = [client for client in pgbouncer.show("CLIENTS") if client["database"] == APP_DB]
        return len(clients), backends(watcher, APP_DB)

    with (
        pooled_project.serve(env) as server,
        psycopg.connect(pg_primary.superuser_conninfo(), autocommit=True) as watcher,
    ):
        (peak, on_primary), records = peaks_under_load(
            server, lambda: count(watcher), clients=4 * figure
        )
    print(f"PgBouncer: the command says {figure} clients and at most {pool} on the primary; "
          f"measured {peak} clients and {on_primary} on the primary")  # fmt: skip
    assert failed(records) == []
    assert (figure, peak) == (3, 3)
    assert on_primary <= pool == 20 + 5  # the shipped default_pool_size + reserve_pool_size
