"""Least privilege, proven: a baked project on the two roles docs/database-roles.md creates.

The doc's block runs as written (``sudo -u postgres`` is the harness's superuser; the two
passwords filled in). The project migrates as the owner through ``DATABASE_DIRECT_URL``, serves
its admin and passes its own suite as the application's role, which cannot change the schema.
Then the server-side bounds the same SQL sets: a query the application gave up on stops on
the server, directly and through PgBouncer, and what it burns there is measured. Last, a
setting changed on the role as the doc writes it reaches PgBouncer's pooled server
connections only after the doc's console command.
"""

import os
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from devtools.bakery import PGBOUNCER_INI, run
from devtools.harness import SUPERUSER, ShippedPgBouncer, pg_bindir
from devtools.harness.host import run as run_as_server_user
from devtools.harness.postgres import connection_url
from devtools.projects import Project
from devtools.readme import Browser, steps

pytestmark = pytest.mark.xdist_group("roles")

SLUG = "ledger"
OWNER = f"{SLUG}_owner"
SECRET_KEY = "roles-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFGH"
SLOW_URLS = """\
from django.db import connection
from django.http import JsonResponse
from django.urls import path

from config.urls import urlpatterns


def slow(request):
    with connection.cursor() as cursor:
        cursor.execute(request.GET["sql"])
    return JsonResponse({})


urlpatterns = [*urlpatterns, path("slow/", slow)]
"""
SLOW_SETTINGS = """\
from config.settings.production import *  # noqa: F403

ROOT_URLCONF = "slow_urls"
"""
SLEEP = "SELECT pg_sleep(60)"
SPIN = "SELECT count(*) FROM generate_series(1, 10000000000)"  # minutes of CPU


@pytest.fixture(scope="module")
def passwords():
    return {"owner": secrets.token_urlsafe(12), "app": secrets.token_urlsafe(12)}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return Project.bake(
        {"project_slug": SLUG, "use_pgbouncer": True},
        tmp_path_factory.mktemp("roles"),
        modules={"slow_settings": SLOW_SETTINGS, "slow_urls": SLOW_URLS},
        DJANGO_SETTINGS_MODULE="slow_settings",
        DJANGO_SECRET_KEY=SECRET_KEY,
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DJANGO_SECURE_SSL_REDIRECT="false",
        DATABASE_SSLMODE="disable",
    )


def drop_everything(primary):
    for database in (SLUG, f"test_{SLUG}"):
        primary.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )
    for role in (SLUG, OWNER):
        primary.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture(scope="module")
def roles(pg_primary, project, passwords):
    """The doc's block, run as written against the harness's primary; then CREATEDB for the
    owner, as the doc says the test suite needs. Returns the two roles' URLs."""
    drop_everything(pg_primary)
    (block,) = [text for name, text in steps(project.path / "docs/database-roles.md").items()
                if name == "create-roles"]  # fmt: skip
    command = block.strip().removeprefix("sudo -u postgres ")
    command = command.replace("OWNER_PASSWORD", passwords["owner"])
    command = command.replace("APP_PASSWORD", passwords["app"])
    run(["bash", "-c", command], cwd=project.path, env=superuser_env(pg_primary))
    pg_primary.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(OWNER)))
    urls = {
        "app": connection_url(SLUG, passwords["app"], pg_primary.host, pg_primary.port, SLUG),
        "owner": connection_url(OWNER, passwords["owner"], pg_primary.host, pg_primary.port, SLUG),
    }
    yield urls
    drop_everything(pg_primary)


def superuser_env(primary):
    """What `sudo -u postgres psql` reaches: the superuser, over the server's socket."""
    return {
        **os.environ,
        "PATH": f"{pg_bindir()}{os.pathsep}{os.environ['PATH']}",
        "PGHOST": str(primary.socket_dir),
        "PGPORT": str(primary.port),
        "PGUSER": SUPERUSER,
    }


@pytest.fixture(scope="module")
def migrated(project, roles):
    project.manage("migrate", "--no-input", env=split_env(project, roles))
    project.manage("collectstatic", "--no-input", env=split_env(project, roles))  # the admin's
    return roles


def split_env(project, roles, **variables):
    """The project's environment on the two roles (``variables`` win)."""
    urls = {"DATABASE_URL": roles["app"], "DATABASE_DIRECT_URL": roles["owner"]}
    return project.env(**{**urls, **variables})


def owners(primary):
    rows = primary.execute(
        "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'", dbname=SLUG
    )
    return {owner for (owner,) in rows}


# --------------------------------------------------------------------------- the two roles


def test_the_docs_sql_makes_a_database_owned_by_the_owner_and_an_application_role(
    pg_primary, roles
):
    rows = pg_primary.execute(
        "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles "
        "WHERE rolname = ANY(%s) ORDER BY rolname",
        [[SLUG, OWNER]],
    )
    assert rows == [(SLUG, False, False, False), (OWNER, False, False, True)]
    (owner,) = pg_primary.execute(
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", [SLUG]
    )[0]
    assert owner == OWNER


def test_migrations_run_as_the_owner_through_database_direct_url(pg_primary, migrated):
    assert owners(pg_primary) == {OWNER}


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE intruder (id int)",
        "DROP TABLE django_migrations",
        "ALTER TABLE django_migrations ADD COLUMN intruder int",
        "TRUNCATE django_migrations",
    ],
    ids=["create", "drop", "alter", "truncate"],
)
def test_the_application_role_cannot_change_the_schema(migrated, statement):
    with (
        psycopg.connect(migrated["app"], autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute(statement)


def test_the_admin_serves_as_the_application_role(project, migrated, pg_primary):
    env = split_env(project, migrated)
    project.shell(
        "from django.contrib.auth import get_user_model; "
        "get_user_model().objects.create_superuser('boss', 'boss@example.com', 'Qx7-lunar-42')",
        env=env,
    )
    with project.serve(env) as server:
        browser = Browser(server.base)
        url, _ = browser.log_in_to_admin("boss", "Qx7-lunar-42")
        assert url.endswith("/admin/")
        _, _, form = browser.get("/admin/users/user/add/")
        token = form.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]
        fields = {"csrfmiddlewaretoken": token, "username": "clerk"}
        fields |= {
            "password1": "Qx7-orbit-99",
            "password2": "Qx7-orbit-99",
            "usable_password": "true",
        }
        url, _ = browser.post("/admin/users/user/add/", fields)
        assert "/change/" in url
    rows = pg_primary.execute("SELECT username FROM users_user ORDER BY username", dbname=SLUG)
    assert rows == [("boss",), ("clerk",)]
    sessions = pg_primary.execute(
        "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = %s AND usename = %s",
        [SLUG, OWNER],
    )
    assert sessions == []  # the application never connected as the owner


def test_the_projects_own_suite_passes_with_the_two_roles(project, migrated):
    result = project.run(
        "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
        env=split_env(project, migrated, DJANGO_SETTINGS_MODULE="config.settings.test"),
        timeout=600,
    )  # fmt: skip
    assert " passed" in result.stdout
    assert "skipped" not in result.stdout


def deploy_check(project, roles, database_url):
    env = split_env(
        project,
        roles,
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="config.settings.production",
    )
    result = project.manage("check", "--deploy", "--database", "default", env=env, check=False)
    return {code for code in ("config.W003", "config.W004", "config.W005") if code in result.stderr}


def test_the_deploy_database_check_warns_for_a_superuser_and_the_owner(
    pg_primary, project, migrated
):
    socket = urllib.parse.quote(str(pg_primary.socket_dir), safe="")
    superuser = f"postgres://{SUPERUSER}@{socket}:{pg_primary.port}/{SLUG}"
    assert deploy_check(project, migrated, superuser) == {"config.W003", "config.W005"}
    assert deploy_check(project, migrated, migrated["owner"]) == {"config.W004", "config.W005"}


def test_the_deploy_database_check_is_clean_for_the_application_role(project, migrated):
    assert deploy_check(project, migrated, migrated["app"]) == set()


# --------------------------------------------------------------------------- server-side bounds


@pytest.fixture(scope="module")
def pgbouncer(pg_primary, project, migrated, passwords):
    """PgBouncer run from the project's own pgbouncer.ini, logging in as the application."""
    shipped = (project.path / PGBOUNCER_INI).read_text()
    with ShippedPgBouncer(
        pg_primary, shipped, user=SLUG, password=passwords["app"], database=SLUG
    ) as server:
        yield server


def app_url(route, migrated, pgbouncer):
    if route == "pgbouncer":
        return pgbouncer.url() + "?sslmode=require"  # the shipped file wants TLS
    return migrated["app"]


def get(url):
    """GET ``url``; return how long it took and its status."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    return time.monotonic() - started, status


def backends_running(primary, query):
    rows = primary.execute(
        "SELECT pid FROM pg_stat_activity WHERE query = %s AND state = 'active'", [query]
    )
    return [pid for (pid,) in rows]


def cpu_seconds(pid):
    """CPU time the process ``pid`` has used so far (user + system), or None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("route", ["direct", "pgbouncer"])
def test_a_query_the_application_gave_up_on_stops_on_the_server(
    route, project, migrated, pgbouncer, pg_primary
):
    url = app_url(route, migrated, pgbouncer)
    env = split_env(project, migrated, DATABASE_URL=url, DATABASE_QUERY_TIMEOUT="1")
    with project.serve(env) as server:
        took, status = get(server.base + "/slow/?" + urllib.parse.urlencode({"sql": SLEEP}))
        time.sleep(5)
        left = backends_running(pg_primary, SLEEP)
    print(f"\n[roles] pg_sleep(60) with DATABASE_QUERY_TIMEOUT=1, {route}: "
          f"status {status} after {took:.2f}s; still running 5 s later: {len(left)}")  # fmt: skip
    assert status == 500
    assert took < 1 + 1.5
    assert left == []


def burnt(primary, server, seconds=8.0):
    """Send the spinning query; return the CPU seconds its backend burnt on the server, and
    for how long it ran, watched for ``seconds`` at most (then it is terminated)."""
    threading.Thread(
        target=get, args=(server.base + "/slow/?" + urllib.parse.urlencode({"sql": SPIN}),)
    ).start()
    deadline = time.monotonic() + 5
    while not (pids := backends_running(primary, SPIN)):
        assert time.monotonic() < deadline, "the query never started"
        time.sleep(0.02)
    (pid,) = pids
    started, used = time.monotonic(), 0.0
    while time.monotonic() - started < seconds:
        now = cpu_seconds(pid)
        if now is None:
            break
        used = now
        time.sleep(0.05)
    ran = time.monotonic() - started
    primary.execute("SELECT pg_terminate_backend(%s)", [pid])
    return used, ran


def test_a_runaway_query_burns_a_second_of_server_cpu_instead_of_running_on(
    project, migrated, pg_primary
):
    env = split_env(project, migrated, DATABASE_QUERY_TIMEOUT="1")
    app_role = sql.Identifier(SLUG)
    with project.serve(env) as server:
        bounded = burnt(pg_primary, server)
        for setting in ("client_connection_check_interval", "statement_timeout"):
            pg_primary.execute(
                sql.SQL("ALTER ROLE {} RESET {}").format(app_role, sql.Identifier(setting))
            )
        try:
            with project.serve(env) as unbounded_server:  # new sessions, without the bounds
                unbounded = burnt(pg_primary, unbounded_server)
        finally:
            pg_primary.execute(
                sql.SQL("ALTER ROLE {} SET client_connection_check_interval = '1s'").format(
                    app_role
                )
            )
            pg_primary.execute(
                sql.SQL("ALTER ROLE {} SET statement_timeout = '20s'").format(app_role)
            )
    print(
        f"\n[roles] a runaway query, DATABASE_QUERY_TIMEOUT=1: with the role's bounds "
        f"{bounded[0]:.2f} s of server CPU (ran {bounded[1]:.2f} s); without them "
        f"{unbounded[0]:.2f} s, still running when stopped at {unbounded[1]:.2f} s"
    )
    assert bounded[1] < 3.0
    assert unbounded[1] >= 8.0
    assert unbounded[0] > 2 * bounded[0]


# --------------------------------------------------------------------------- changing a role


def test_pgbouncers_pooled_connections_take_a_changed_role_setting_after_the_documented_reconnect(
    project, migrated, pgbouncer, pg_primary
):
    blocks = steps(project.path / "docs/database-roles.md")
    change = blocks["change-role-setting"].strip().removeprefix("sudo -u postgres ")
    # As the account PgBouncer runs as (sudo -u postgres), on the socket and port it has here.
    reconnect = blocks["reconnect-pgbouncer"].strip().removeprefix("sudo -u postgres ")
    reconnect = reconnect.replace("/var/run/postgresql", str(pgbouncer.workdir))
    reconnect = reconnect.replace("-p 6432", f"-p {pgbouncer.port}")
    url = app_url("pgbouncer", migrated, pgbouncer)
    # prepare_threshold=None: as the application, no prepared statement on a pooled connection.
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as client:

        def server_session():
            query = "SELECT pg_backend_pid(), current_setting('statement_timeout')"
            return client.execute(query).fetchone()

        pooled, before = server_session()
        try:
            run(["bash", "-c", change], cwd=project.path, env=superuser_env(pg_primary))
            kept = server_session()
            console = run_as_server_user(
                ["bash", "-c", reconnect],
                cwd=pgbouncer.workdir,
                env={"PATH": f"{pg_bindir()}{os.pathsep}{os.environ['PATH']}"},
            )
            replaced, after = server_session()
        finally:
            restore = sql.SQL("ALTER ROLE {} SET statement_timeout = '20s'")
            pg_primary.execute(restore.format(sql.Identifier(SLUG)))
    (version,) = pgbouncer.show("VERSION")
    print(f"\n[roles] {version['version']}: statement_timeout {before}; after ALTER ROLE, on "
          f"the pooled server connection, {kept[1]}; after RECONNECT {after}")  # fmt: skip
    assert before == "20s"  # roles.sql's
    assert kept == (pooled, "20s")  # the same server connection keeps the old value
    assert console.split() == ["RECONNECT", "WAIT_CLOSE"]
    assert replaced != pooled
    assert after == "5s"
