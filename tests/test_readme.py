"""The generated README takes a new user from nothing to a logged-in admin, step by step.

Each test follows the README's marked blocks as written (see ``devtools/readme.py``) against
the harness's PostgreSQL, on every combination of the options the steps touch. Installing,
and serving with ASGI (the ``asgi`` extra), are followed once from nothing in a fresh
virtualenv; the other tests use the bakery's environments, which hold what the install step
installs.
"""

import os
import re
import sys
import urllib.parse

import pytest
from psycopg import sql

from devtools.bakery import bake, combination_id, combinations, project_env, project_python, run
from devtools.harness import APP_USER, pg_bindir, pick_port
from devtools.readme import SUPERUSER, Browser, Reader, steps

SLUG = "shop_front"  # what bake() names the project
# The steps do not depend on ci; each Django version meets each database option.
COMBINATIONS = combinations(("django_version", "use_pgbouncer", "use_read_replica"))


@pytest.fixture(params=COMBINATIONS, ids=combination_id)
def project(request, tmp_path):
    path = bake(request.param, tmp_path / "out")
    return path, project_python(path, request.param["django_version"])


@pytest.fixture
def fresh_databases(pg_primary):
    """Drop the databases the steps make, before (another module may have made them) and
    after, so every test starts from nothing."""

    def drop():
        for name in (SLUG, f"test_{SLUG}"):
            database = sql.Identifier(name)
            pg_primary.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(database))

    drop()
    yield
    drop()


def reader(project, pg_primary, **variables):
    """A new user at a terminal in ``project`` whose virtualenv is active."""
    path, python = project
    env = project_env(
        PATH=os.pathsep.join([str(python.parent), str(pg_bindir()), os.environ["PATH"]])
    )
    env.update(variables)
    values = {
        "USER": APP_USER,
        "PASSWORD": urllib.parse.quote(pg_primary.password(), safe=""),  # as in any URL
        "5432": pg_primary.port,
        "8000": pick_port(),
    }
    return Reader(path, env, values)


def log_in_on(server, base):
    """Log in to the admin at ``base`` with the superuser the steps created."""
    server.wait_until_answering(base + "/healthz/")
    url, page = Browser(base).log_in_to_admin(SUPERUSER["username"], SUPERUSER["password"])
    return url, page


def assert_logged_in(url, page):
    assert url.endswith("/admin/")
    assert "Site administration" in page
    assert "Log out" in page


def assert_serves_the_styled_admin(server, base):
    """Logging in works, and the admin's stylesheet is served by hashed and plain name."""
    assert_logged_in(*log_in_on(server, base))
    client = Browser(base)
    _, _, login_page = client.get("/admin/login/")
    hashed = re.search(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', login_page)
    assert hashed, "the admin links its stylesheet by a hashed name"
    for css in (hashed.group(1), "/static/admin/css/base.css"):
        status, headers, body = client.get(css)
        assert (status, headers["Content-Type"].split(";")[0]) == (200, "text/css")
        assert "body" in body


def run_local_steps(user, *, database_step):
    readme = steps(user.project / "README.md")
    user.run(database_step, readme[database_step])
    server = user.run("run-local", readme["run-local"])
    try:
        assert_logged_in(*log_in_on(server, f"http://localhost:{user.values['8000']}"))
    finally:
        server.stop()
    user.run("test", readme["test"])


@pytest.mark.usefixtures("fresh_databases")
def test_from_nothing_to_the_admin_under_wsgi_and_asgi_in_a_fresh_virtualenv(tmp_path, pg_primary):
    """Install into a fresh virtualenv, then serve the admin with each documented server."""
    path = bake({"use_pgbouncer": True, "use_read_replica": True}, tmp_path / "out")
    bin_dir = tmp_path / "bin"  # nothing but the README's Python on PATH
    bin_dir.mkdir()
    (bin_dir / "python3.12").symlink_to(getattr(sys, "_base_executable", sys.executable))
    env = project_env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    readme = steps(path / "README.md")
    run(["bash", "-c", "set -euo pipefail\n" + readme["install"]], cwd=path, env=env, timeout=900)
    assert (path / ".git" / "hooks" / "pre-commit").exists()

    # From here on the virtualenv is active, as the install step left the shell.
    python = path / ".venv" / "bin" / "python"
    user = reader((path, python), pg_primary, PGPASSWORD=pg_primary.password())
    user.run("database-url", readme["database-url"])
    for server_step in ("production-local", "asgi"):
        server = user.run(server_step, readme[server_step])
        try:
            assert_serves_the_styled_admin(server, f"http://localhost:{user.values['8000']}")
        finally:
            server.stop()


@pytest.mark.usefixtures("fresh_databases")
def test_local_steps_with_a_role_for_your_login(project, pg_primary):
    # libpq's variables stand in for a login whose role is "app" on the local socket.
    user = reader(
        project,
        pg_primary,
        PGHOST=str(pg_primary.socket_dir),
        PGPORT=str(pg_primary.port),
        PGUSER=APP_USER,
    )
    run_local_steps(user, database_step="database-role")


@pytest.mark.usefixtures("fresh_databases")
def test_local_steps_with_a_database_url_in_dotenv(project, pg_primary):
    # PGPASSWORD is what createdb asks for; nothing else names the server.
    user = reader(project, pg_primary, PGPASSWORD=pg_primary.password())
    run_local_steps(user, database_step="database-url")


@pytest.mark.usefixtures("fresh_databases")
def test_production_steps_on_your_machine(project, pg_primary):
    """After making the database as the local steps do; production ignores ``.env``."""
    user = reader(project, pg_primary, PGPASSWORD=pg_primary.password())
    readme = steps(user.project / "README.md")
    user.run("database-url", readme["database-url"])
    with (user.project / ".env").open("a") as dotenv:
        dotenv.write("DJANGO_SECURE_HSTS_SECONDS=not-read-by-production\n")
    server = user.run("production-local", readme["production-local"])
    try:
        assert_serves_the_styled_admin(server, f"http://localhost:{user.values['8000']}")
    finally:
        server.stop()
