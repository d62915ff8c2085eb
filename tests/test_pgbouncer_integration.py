"""A project baked with use_pgbouncer, against a real PgBouncer in transaction pooling mode.

PgBouncer runs from the project's shipped deploy/pgbouncer/pgbouncer.ini (``pgbouncer``, or
one of its own from the same file), except where a pool of two server connections shows
what transaction pooling breaks. Each test shows one failure that transaction pooling
causes, the template's guard against it, or one documented step working as written.
"""

import json
import re
import threading
import time
import urllib.request

import psycopg
import pytest
from psycopg import sql

from devtools.harness import APP_USER, HarnessError, PgBouncer, ShippedPgBouncer
from devtools.projects import Project, create_database

# One worker runs the whole module: its module-scoped project and servers are set up once.
pytestmark = pytest.mark.xdist_group("pgbouncer-integration")

ANSWERS = {"use_pgbouncer": True, "django_version": "6.1"}
SLUG = "shop_front"  # bake()'s project name is "Shop Front"
SMALL_POOL = 2
ROWS = 3000


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The baked project, on the local settings."""
    return Project.bake(
        ANSWERS,
        tmp_path_factory.mktemp("pgbouncer"),
        DJANGO_SETTINGS_MODULE="config.settings.local",
    )


def urls(bouncer, primary, dbname):
    """DATABASE_URL at ``bouncer`` and DATABASE_DIRECT_URL at ``primary``, both for ``dbname``."""
    return {"DATABASE_URL": bouncer.url(dbname), "DATABASE_DIRECT_URL": primary.url(dbname=dbname)}


@pytest.fixture(scope="module")
def small_bouncer(pg_primary):
    """PgBouncer lending at most two server connections per database.

    Configured by the harness, not the shipped file: two connections show the limit and
    what breaks when transactions change connections with a handful of clients, where the
    shipped pool (20, plus 5 in reserve) would need dozens. It routes any database name.
    """
    with PgBouncer(pg_primary, default_pool_size=SMALL_POOL) as bouncer:
        yield bouncer


@pytest.fixture(scope="module")
def shop(project, pg_primary, small_bouncer):
    """Database "shop", migrated through the primary and holding ROWS auth groups."""
    create_database(pg_primary, "shop")
    env = project.env(**urls(small_bouncer, pg_primary, "shop"))
    project.manage("migrate", "--verbosity=0", env=env)
    project.shell(
        "from django.contrib.auth.models import Group; "
        f"Group.objects.bulk_create(Group(name=f'g{{i}}') for i in range({ROWS}))",
        no_imports=True,
        env=env,
    )
    return env


# migrate and serving ------------------------------------------------------------------


def test_migrate_runs_on_the_primary_even_with_pgbouncer_down(project, pg_primary, pgbouncer):
    create_database(pg_primary, "migrated")
    env = project.env(**urls(pgbouncer, pg_primary, "migrated"))
    pgbouncer.stop()
    try:
        project.manage("migrate", "--verbosity=0", env=env)
    finally:
        pgbouncer.start()
    applied = pg_primary.execute("SELECT count(*) FROM django_migrations", dbname="migrated")
    assert applied[0][0] > 10


@pytest.fixture
def server(project, pg_primary, pgbouncer):
    """The project served by gunicorn through PgBouncer, stopped after the test."""
    env = project.env(**urls(pgbouncer, pg_primary, pgbouncer.database))
    with project.serve(env) as app_server:
        yield app_server.base


def get(url):
    """GET ``url``; return its status and JSON body, whatever the status."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_readyz_is_served_through_pgbouncer_over_tls(server):
    # The shipped file refuses clients without TLS, so "default" is fine only over TLS.
    status, body = get(f"{server}/readyz/")
    assert status == 200
    assert body["databases"]["default"]["ok"] is True


# .iterator() outside atomic() -----------------------------------------------------------

# Worker threads keep both server connections busy with short transactions while the main
# thread walks ROWS groups with .iterator() in autocommit mode, chunk by chunk.
ITERATE = """
import threading, time
from django.contrib.auth.models import Group
from django.db import connection, connections, transaction

SERVER_SIDE_CURSORS = {server_side_cursors}
if SERVER_SIDE_CURSORS:
    connection.settings_dict["DISABLE_SERVER_SIDE_CURSORS"] = False

stop = threading.Event()

def work():
    while not stop.is_set():
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(0.002)")
    connections.close_all()

workers = [threading.Thread(target=work) for _ in range(4)]
for worker in workers:
    worker.start()
try:
    seen = 0
    for group in Group.objects.order_by("id").iterator(chunk_size=50):
        seen += 1
        if seen % 50 == 0:
            time.sleep(0.003)
    print("ITERATED", seen)
finally:
    stop.set()
    for worker in workers:
        worker.join()
"""


def test_iterator_outside_atomic_works_while_others_use_the_pool(project, shop):
    result = project.shell(ITERATE.format(server_side_cursors=False), no_imports=True, env=shop)
    assert f"ITERATED {ROWS}" in result.stdout


def test_iterator_breaks_when_server_side_cursors_are_switched_back_on(project, shop):
    # What DISABLE_SERVER_SIDE_CURSORS prevents: Django declares the cursor WITH HOLD in
    # one transaction and fetches from it in the next, on another server connection.
    result = project.shell(
        ITERATE.format(server_side_cursors=True), no_imports=True, env=shop, check=False
    )
    assert result.returncode != 0
    # psycopg describes the cursor right after DECLARE: the first statement to land on
    # the other server connection reports the portal, a later FETCH the cursor.
    assert re.search(r'(cursor|portal) "_django_curs_\w+" does not exist', result.stderr)


# Server connections -------------------------------------------------------------------

CLIENTS = """
import threading
from django.contrib.auth.models import Group
from django.db import connections, transaction

def work():
    for _ in range(15):
        with transaction.atomic():
            Group.objects.filter(name__startswith="g1").count()
            Group.objects.raw("SELECT id, pg_sleep(0.005) FROM auth_group LIMIT 1")[0]
    connections.close_all()

threads = [threading.Thread(target=work) for _ in range(20)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print("DONE")
"""


def test_many_clients_never_hold_more_server_connections_than_the_pool(project, shop, pg_primary):
    samples = []
    done = threading.Event()

    def sample():
        with psycopg.connect(pg_primary.superuser_conninfo(), autocommit=True) as conn:
            while not done.is_set():
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = 'shop' AND usename = %s",
                    [APP_USER],
                ).fetchone()
                samples.append(row[0])
                time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = project.shell(CLIENTS, no_imports=True, env=shop)
    finally:
        done.set()
        sampler.join()
    assert "DONE" in result.stdout
    assert max(samples) == SMALL_POOL  # 20 clients, 2 server connections
    assert len(samples) > 20


# Startup options ----------------------------------------------------------------------

OPTIONS = "options=-c%20statement_timeout%3D5s"


def test_pgbouncer_rejects_startup_options(pgbouncer):
    # What the settings guard against: the connection fails at login, on every request.
    with pytest.raises(psycopg.OperationalError, match="unsupported startup parameter"):
        psycopg.connect(pgbouncer.url(), options="-c statement_timeout=5s").close()


def test_startup_options_are_refused_by_manage_py_check(project, pg_primary, pgbouncer):
    env = project.env(**urls(pgbouncer, pg_primary, "app"))
    env["DATABASE_URL"] += f"?{OPTIONS}"
    result = project.manage("check", env=env, check=False)
    assert result.returncode != 0
    assert "ImproperlyConfigured: DATABASE_URL sets options" in result.stderr
    assert pg_primary.password() not in result.stderr


# TLS ----------------------------------------------------------------------------------


def test_pgbouncer_refuses_clients_without_tls(pgbouncer):
    with pytest.raises(psycopg.OperationalError, match="SSL required"):
        psycopg.connect(pgbouncer.url(), sslmode="disable").close()


def test_pgbouncer_serves_clients_over_tls(pgbouncer):
    with psycopg.connect(pgbouncer.url(), sslmode="require") as conn:
        assert conn.pgconn.ssl_in_use


# userlist.txt -------------------------------------------------------------------------


@pytest.fixture
def stored_app_secret(pg_primary):
    """Read the app role's stored SCRAM secret; put the original back afterwards, for the
    PgBouncers shared by other tests."""
    query = "SELECT rolpassword FROM pg_authid WHERE rolname = %s"
    secret = pg_primary.execute(query, [APP_USER])[0][0]
    yield lambda: pg_primary.execute(query, [APP_USER])[0][0]
    pg_primary.execute(
        sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(APP_USER), sql.Literal(secret))
    )


def use_auth_file(bouncer, text):
    """Give ``bouncer`` this userlist.txt and restart it (start() waits for a login)."""
    bouncer.stop()
    bouncer.auth_file.write_text(text)
    bouncer.start()


def test_generated_userlist_lets_pgbouncer_log_in(
    project, pg_primary, pgbouncer, stored_app_secret
):
    output = project.path / "userlist.txt"
    env = project.env(**urls(pg_primary, pg_primary, "app"))  # the URLs only lend user and password
    project.manage("pgbouncer_userlist", "--set-role-password", f"--output={output}", env=env)
    text = output.read_text()
    assert text == f'"{APP_USER}" "{stored_app_secret()}"\n'
    with ShippedPgBouncer(pg_primary, pgbouncer.shipped) as bouncer:
        use_auth_file(bouncer, text)
        with psycopg.connect(bouncer.url(), autocommit=True) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (APP_USER,)


def test_userlist_with_a_secret_of_its_own_fails_the_server_login(
    project, pg_primary, pgbouncer, stored_app_secret, monkeypatch
):
    # Why --set-role-password exists: PgBouncer accepts the client, but PostgreSQL refuses
    # PgBouncer's login, because the salts differ.
    env = project.env(**urls(pg_primary, pg_primary, "app"))
    text = project.manage("pgbouncer_userlist", env=env).stdout
    # PgBouncer.start() retries a failing login for START_TIMEOUT seconds.
    monkeypatch.setattr("devtools.harness.pgbouncer.START_TIMEOUT", 3.0)
    with (
        ShippedPgBouncer(pg_primary, pgbouncer.shipped) as bouncer,
        pytest.raises(HarnessError, match="password authentication failed"),
    ):
        use_auth_file(bouncer, text)


# The generated suite ------------------------------------------------------------------


def assert_passed(suite):
    """The project's pytest run had passes and nothing else."""
    assert " passed" in suite.stdout
    assert " failed" not in suite.stdout
    assert "error" not in suite.stdout.lower()


def test_generated_suite_passes_through_pgbouncer(project, pg_primary, pgbouncer):
    env = project.env(**urls(pgbouncer, pg_primary, "app"))
    assert_passed(project.run("-m", "pytest", "-q", "-p", "no:cacheprovider", env=env))


# docs/pgbouncer.md, as written ----------------------------------------------------------
