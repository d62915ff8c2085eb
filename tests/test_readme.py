"""The generated README takes a new user from nothing to a logged-in admin, step by step.

Each test follows the README's marked blocks as written (see ``devtools/readme.py``) against
the harness's PostgreSQL, on every combination of the options the steps touch. Installing,
and serving with ASGI (the ``asgi`` extra), are followed once from nothing in a fresh
virtualenv; the other tests use the bakery's environments, which hold what the install step
installs.
"""

import contextlib
import os
import re
import sys
import urllib.parse

import pytest
from psycopg import sql

from devtools.bakery import (
    PGBOUNCER_INI,
    bake,
    combination_id,
    combinations,
    project_env,
    project_python,
    run,
)
from devtools.harness import APP_USER, ShippedPgBouncer, pg_bindir, pick_port
from devtools.readme import SUPERUSER, Browser, Reader, steps

SLUG = "shop_front"  # what bake() names the project
# The steps do not depend on ci; each Django version meets each database option.
COMBINATIONS = combinations(("django_version", "use_pgbouncer", "use_read_replica"))
REPLICA_COMBINATIONS = [answers for answers in COMBINATIONS if answers["use_read_replica"]]


@pytest.fixture(params=COMBINATIONS, ids=combination_id)
def project(request, tmp_path):
    path = bake(request.param, tmp_path / "out")
    return path, project_python(path, request.param["django_version"])


@contextlib.contextmanager
def servers_for_options(path, pg_primary, request):
    """The servers the options baked into ``path`` need, as their docs set them up on a
    newcomer's machine: PgBouncer run from the project's own pgbouncer.ini (TLS required)
    and a streaming replica. Yields the README's placeholder ports mapped to theirs, and
    the servers by option."""
    ports, servers = {}, {}
    if (path / "config" / "replicas").exists():
        replica = request.getfixturevalue("pg_replica")
        ports["5433"], servers["replica"] = replica.port, replica
    if not (path / PGBOUNCER_INI).exists():
        yield ports, servers
        return
    shipped = (path / PGBOUNCER_INI).read_text()
    with ShippedPgBouncer(pg_primary, shipped, database=SLUG) as bouncer:
        ports["6432"], servers["pgbouncer"] = bouncer.port, bouncer
        yield ports, servers


@pytest.fixture
def option_servers(project, pg_primary, request):
    with servers_for_options(project[0], pg_primary, request) as ports_and_servers:
        yield ports_and_servers


def replica_sessions(replica):
    """Sessions the replica has served in the project's database so far."""
    rows = replica.execute(
        "SELECT coalesce(sum(sessions), 0) FROM pg_stat_database WHERE datname = %s", [SLUG]
    )
    return rows[0][0]


def assert_the_options_served(user, servers, replica_sessions_before=0):
    """The app's requests went through PgBouncer (nothing else listens on its port, and the
    shipped file accepts TLS clients only) and read from the replica, where the bake has them.
    """
    configured = (user.project / ".env").read_text() + "\n".join(user.exports)
    if "pgbouncer" in servers:
        port = servers["pgbouncer"].port
        assert re.search(rf"DATABASE_URL=\S*:{port}/{SLUG}\?sslmode=require", configured)
        assert "DATABASE_DIRECT_URL=" in configured
    if "replica" in servers:
        assert f"DATABASE_REPLICA_URLS=postgres://{APP_USER}:" in configured
        assert replica_sessions(servers["replica"]) > replica_sessions_before, (
            "nothing was read from the replica"
        )


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


def reader(project, pg_primary, ports=None, **variables):
    """A new user at a terminal in ``project`` whose virtualenv is active; ``ports`` maps the
    README's other placeholder ports (PgBouncer's 6432, a replica's 5433) to the real ones."""
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
        **(ports or {}),
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
def test_from_nothing_to_the_admin_under_wsgi_and_asgi_in_a_fresh_virtualenv(
    tmp_path, pg_primary, request
):
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
    with servers_for_options(path, pg_primary, request) as (ports, servers):
        user = reader((path, python), pg_primary, ports, PGPASSWORD=pg_primary.password())
        user.run("database-url", readme["database-url"])
        for server_step in ("production-local", "asgi"):
            server = user.run(server_step, readme[server_step])
            try:
                assert_serves_the_styled_admin(server, f"http://localhost:{user.values['8000']}")
            finally:
                server.stop()
        assert_the_options_served(user, servers)


# The options' own steps run for every combination with a URL in .env (below); a role for
# your login changes only the database step, so the bakes with no option and every option run it.
ROLE_COMBINATIONS = [COMBINATIONS[0], COMBINATIONS[-1]]


@pytest.mark.usefixtures("fresh_databases")
@pytest.mark.parametrize("project", ROLE_COMBINATIONS, ids=combination_id, indirect=True)
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
def test_local_steps_with_a_database_url_in_dotenv(project, pg_primary, option_servers):
    # PGPASSWORD is what createdb asks for; nothing else names the server.
    ports, servers = option_servers
    user = reader(project, pg_primary, ports, PGPASSWORD=pg_primary.password())
    run_local_steps(user, database_step="database-url")
    assert_the_options_served(user, servers)


@pytest.mark.usefixtures("fresh_databases")
@pytest.mark.parametrize("project", REPLICA_COMBINATIONS, ids=combination_id, indirect=True)
def test_the_replica_docs_show_reads_on_the_replica_and_writes_pinning_the_primary(
    project, pg_primary, option_servers
):
    ports, servers = option_servers
    user = reader(project, pg_primary, ports, PGPASSWORD=pg_primary.password())
    readme = steps(user.project / "README.md")
    user.run("database-url", readme["database-url"])
    user.run("run-local", readme["run-local"]).stop()
    servers["replica"].wait_for_replay(pg_primary)
    # The doc's Python block, pasted into `python manage.py shell` as it says.
    doc = (user.project / "docs" / "read-replicas.md").read_text()
    code = re.search(r"<!-- step: see-it-work -->\n```python\n(.*?)^```", doc, re.M | re.S)[1]
    python = project[1]
    printed = run([python, "manage.py", "shell", "-c", code], cwd=user.project, env=user.env).stdout
    primary = servers.get("pgbouncer", pg_primary)  # where default connects
    assert "replica1 is a standby: True" in printed
    assert f"a read goes to replica1, answered on port {servers['replica'].port}" in printed
    assert f"after a write, a read goes to default, answered on port {primary.port}" in printed


@pytest.mark.usefixtures("fresh_databases")
def test_production_steps_on_your_machine(project, pg_primary, option_servers):
    """After making the database as the local steps do; production ignores ``.env``."""
    ports, servers = option_servers
    user = reader(project, pg_primary, ports, PGPASSWORD=pg_primary.password())
    readme = steps(user.project / "README.md")
    user.run("database-url", readme["database-url"])
    with (user.project / ".env").open("a") as dotenv:
        dotenv.write("DJANGO_SECURE_HSTS_SECONDS=not-read-by-production\n")
    before = replica_sessions(servers["replica"]) if "replica" in servers else 0
    server = user.run("production-local", readme["production-local"])
    try:
        assert_serves_the_styled_admin(server, f"http://localhost:{user.values['8000']}")
    finally:
        server.stop()
    assert_the_options_served(user, servers, before)
