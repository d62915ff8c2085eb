"""docs/pgbouncer.md followed as written, against a real PgBouncer run from the shipped file.

The doc's code blocks run with only addresses, ports, paths and the account PgBouncer runs as
changed for this machine (:class:`Docs`); each test is one documented step working.
"""

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from urllib.parse import urlsplit

import psycopg
import pytest
import yaml

from devtools.bakery import PGBOUNCER_INI, project_env, run
from devtools.harness import ShippedPgBouncer, pick_port, server_user
from devtools.harness.host import make_workdir
from devtools.harness.pgbouncer import local_ini, relocated
from devtools.harness.postgres import connection_url
from devtools.projects import Project
from devtools.readme import code_block, fill_in, steps

# One worker runs the whole module: its module-scoped project and servers are set up once.
pytestmark = pytest.mark.xdist_group("pgbouncer-integration")

ANSWERS = {"use_pgbouncer": True, "django_version": "6.1"}
SLUG = "shop_front"  # bake()'s project name is "Shop Front"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The baked project, on the local settings."""
    return Project.bake(
        ANSWERS,
        tmp_path_factory.mktemp("pgbouncer-docs"),
        DJANGO_SETTINGS_MODULE="config.settings.local",
    )


def urls(bouncer, primary, dbname):
    """DATABASE_URL at ``bouncer`` and DATABASE_DIRECT_URL at ``primary``, both for ``dbname``."""
    return {"DATABASE_URL": bouncer.url(dbname), "DATABASE_DIRECT_URL": primary.url(dbname=dbname)}


def assert_passed(suite):
    """The project's pytest run had passes and nothing else."""
    assert " passed" in suite.stdout
    assert " failed" not in suite.stdout
    assert "error" not in suite.stdout.lower()


PASSWORD = secrets.token_hex(16)  # needs no quoting in a URL or an SQL literal


def docs_text(project):
    return (project.path / "docs" / "pgbouncer.md").read_text()


class Docs:
    """The code blocks of the project's docs/pgbouncer.md, run against ``primary`` (and
    ``bouncer``) with their addresses, ports and directory in place of the documented ones."""

    def __init__(self, project, primary, bouncer=None):
        self.project = project
        self.primary = primary
        self.bouncer = bouncer
        self.text = docs_text(project)

    def block(self, marker):
        """The one code block containing ``marker``, as this machine runs it."""
        text = code_block(self.text, marker)
        here = {
            "db.internal:5432": f"{self.primary.host}:{self.primary.port}",
            ":PASSWORD@": f":{PASSWORD}@",
            "'PASSWORD'": f"'{PASSWORD}'",
        }
        if self.bouncer is not None:
            here |= {
                "pgbouncer.internal:6432": f"{self.bouncer.host}:{self.bouncer.port}",
                "/etc/pgbouncer/": f"{self.bouncer.workdir}/",  # as ShippedPgBouncer places files
                "chown postgres:": f"chown {server_user().name}:",  # the account PgBouncer runs as
            }
        return re.sub("|".join(map(re.escape, here)), lambda match: here[match[0]], text)

    def sh(self, *markers):
        """Run the blocks containing ``markers`` in one shell, in the project directory."""
        script = "\n".join(self.block(marker) for marker in markers)
        env = project_env(
            PATH=f"{self.project.python.parent}{os.pathsep}{os.environ['PATH']}",
            PGPASSWORD=PASSWORD,  # what psql would ask for
        )
        return run(["bash", "-euo", "pipefail", "-c", script], cwd=self.project.path, env=env)

    def sql(self, marker):
        """Run the SQL block containing ``marker`` as the primary's superuser."""
        command = ["psql", "-X", "-v", "ON_ERROR_STOP=1", self.primary.superuser_conninfo()]
        result = subprocess.run(command, input=self.block(marker), capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def documented(project, pg_primary):
    """Steps 2 to 5 of "Set it up" done as written, for role and database shop_front.

    The bouncer's directory stands for /etc/pgbouncer, so PgBouncer starts before step 4
    writes userlist.txt there, then restarts to read it (step 4: "then reload").
    """
    Docs(project, pg_primary).sql("CREATE ROLE")
    shipped = (project.path / PGBOUNCER_INI).read_text()
    with ShippedPgBouncer(pg_primary, shipped, user=SLUG, password=PASSWORD) as bouncer:
        docs = Docs(project, pg_primary, bouncer)
        docs.sh("export DATABASE_URL", "pgbouncer_userlist")
        bouncer.stop()
        bouncer.start()
        yield docs


def test_documented_show_pools_works_as_written(documented):
    result = documented.sh("SHOW POOLS")
    # psql's table: database | user | cl_active | ...
    assert re.search(rf"^ *{SLUG} *\| *{SLUG} *\|", result.stdout, re.MULTILINE)


def test_documented_migrate_works_as_written(documented, pg_primary):
    documented.sh("export DATABASE_URL", "python manage.py migrate")
    applied = pg_primary.execute("SELECT count(*) FROM django_migrations", dbname=SLUG)
    assert applied[0][0] > 10


def test_documented_test_run_passes_through_pgbouncer(documented):
    documented.sql("CREATEDB")
    assert_passed(documented.sh("export DATABASE_URL", "python -m pytest"))


def test_documented_try_without_a_certificate_works_as_written(project, pg_primary, pgbouncer):
    with ShippedPgBouncer(pg_primary, pgbouncer.shipped) as bouncer:
        bouncer.stop()
        docs = Docs(project, pg_primary, bouncer)
        docs.sh("client_tls_sslmode = disable")
        for name in ("client_tls_key_file", "client_tls_cert_file"):
            relocated(bouncer.file_settings[name], bouncer.workdir).unlink()
        bouncer.start()
        # The README's .env line for PgBouncer's URL, then the doc's edit of it.
        readme = steps(project.path / "README.md")["database-url"]
        (line,) = [line for line in readme.splitlines() if ":6432/" in line]
        # The app's role and password as the harness's URL writes them (percent-encoded).
        user, password = (
            urlsplit(bouncer.url(bouncer.database)).netloc.rpartition("@")[0].split(":")
        )
        values = {"USER": user, "PASSWORD": password, "6432": bouncer.port, SLUG: bouncer.database}
        scratch = make_workdir("dotenv")
        try:
            run(["bash", "-euo", "pipefail", "-c", fill_in(line, values)], cwd=scratch)
            run(["bash", "-euo", "pipefail", "-c", docs.block("?sslmode=require$/")], cwd=scratch)
            (url,) = re.findall(r"^DATABASE_URL=(.*)$", (scratch / ".env").read_text(), re.M)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        env = project.env(**(urls(bouncer, pg_primary, bouncer.database) | {"DATABASE_URL": url}))
        result = project.shell(
            "from django.db import connection; connection.ensure_connection(); "
            "print('TLS', connection.connection.pgconn.ssl_in_use)",
            no_imports=True,
            env=env,
        )
    assert "TLS False" in result.stdout


# The pgbouncer package of each Ubuntu runner the generated CI may pin (packages.ubuntu.com).
UBUNTU_PGBOUNCER = {"ubuntu-24.04": (1, 22)}


def test_ci_runs_at_least_the_documented_pgbouncer_version(project):
    documented = re.search(r"PgBouncer (\d+)\.(\d+) or newer", docs_text(project))
    ci = yaml.safe_load((project.path / ".github" / "workflows" / "ci.yml").read_text())
    runner = ci["jobs"]["test"]["runs-on"]
    assert "apt-get install -y -q pgbouncer" in str(ci["jobs"]["test"]["steps"])
    assert UBUNTU_PGBOUNCER[runner] >= tuple(map(int, documented.groups()))
    assert f"CI runs Ubuntu 24.04's {'.'.join(map(str, UBUNTU_PGBOUNCER[runner]))}" in docs_text(
        project
    )


# On your machine ------------------------------------------------------------------------


@pytest.fixture
def by_hand(project, pg_primary, documented):
    """The doc's "On your machine": the shipped file and step 4's userlist in a directory
    standing for /etc/pgbouncer, a certificate made by the doc's commands, and PgBouncer
    started by the doc's one line; yields its port."""
    etc = make_workdir("etc-pgbouncer")  # reachable by the account PgBouncer runs as
    port = pick_port()
    shipped = (project.path / PGBOUNCER_INI).read_text()
    (etc / "pgbouncer.ini").write_text(
        local_ini(shipped, directory=etc, port=port, primary_port=pg_primary.port)
    )
    (etc / "userlist.txt").write_text(documented.bouncer.auth_file.read_text())
    doc = Docs(project, pg_primary)  # /etc/pgbouncer/ left as written, to stand for etc here
    here = {"/etc/pgbouncer/": f"{etc}/", "chown postgres:": f"chown {server_user().name}:"}
    run(["bash", "-euo", "pipefail", "-c", substitute(doc.block("openssl req"), here)])
    for name in ("pgbouncer.ini", "userlist.txt"):
        server_user().chown(etc / name)
    line = substitute(doc.block("sudo -u postgres pgbouncer").strip(), here)
    # The harness runs it as the account that owns those files, as sudo -u postgres does.
    command = line.removeprefix("sudo -u postgres ").split()
    log = (etc / "by-hand.log").open("wb")
    process = subprocess.Popen(
        command, cwd=etc, stdout=log, stderr=subprocess.STDOUT, **server_user().popen_kwargs()
    )
    try:
        wait_until_listening(port, process, etc / "by-hand.log")
        yield port
    finally:
        process.send_signal(signal.SIGINT)  # what Ctrl-C sends: PgBouncer's safe shutdown
        process.wait(timeout=30)
        log.close()
        shutil.rmtree(etc, ignore_errors=True)


def substitute(text, here):
    return re.sub("|".join(map(re.escape, here)), lambda match: here[match[0]], text)


def wait_until_listening(port, process, log, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert process.poll() is None, f"PgBouncer exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"nothing listens on {port}:\n{log.read_text()}"
            time.sleep(0.1)


def test_pgbouncer_run_by_hand_as_documented_serves_tls_clients(by_hand):
    conninfo = dict(host="127.0.0.1", port=by_hand, dbname=SLUG, user=SLUG, password=PASSWORD)
    with psycopg.connect(**conninfo, sslmode="require") as connection:
        assert connection.pgconn.ssl_in_use
        assert connection.execute("SELECT 1").fetchone() == (1,)


# What the application's connections look like -------------------------------------------


def test_a_wrong_password_through_pgbouncer_reports_the_real_error(project, documented):
    # The documented URL names sslmode=require: one attempt, over TLS, and its own error.
    bouncer = documented.bouncer
    wrong = connection_url(SLUG, "not-the-password", bouncer.host, bouncer.port, SLUG)
    env = project.env(DATABASE_URL=f"{wrong}?sslmode=require")
    result = project.shell(
        "from django.db import connection; connection.ensure_connection()",
        no_imports=True,
        env=env,
        check=False,
    )
    assert result.returncode != 0
    assert "SASL authentication failed" in result.stderr  # PgBouncer's word for it
    assert "SSL required" not in result.stderr


def test_the_apps_queries_carry_its_name_after_a_probe_used_their_server_connection(
    project, pg_primary, documented
):
    # One server connection: the probe's client and then the app's get the same one.
    shipped = (project.path / PGBOUNCER_INI).read_text()
    one = shipped.replace("default_pool_size = 20", "default_pool_size = 1")
    with ShippedPgBouncer(pg_primary, one, user=SLUG, password=PASSWORD) as bouncer:
        env = project.env(
            DATABASE_URL=bouncer.url(SLUG) + "?sslmode=require",
            DATABASE_DIRECT_URL=connection_url(
                SLUG, PASSWORD, pg_primary.host, pg_primary.port, SLUG
            ),
        )
        result = project.shell(
            "from config import readiness\n"
            "from config.backends.postgresql.base import BoundedConnection\n"
            "from django.db import connection\n"
            "with BoundedConnection.connect(**readiness.connection_params()) as probe:\n"
            "    print('probe', probe.execute('SHOW application_name').fetchone()[0])\n"
            "with connection.cursor() as cursor:\n"
            "    cursor.execute('SHOW application_name')\n"
            "    print('app', cursor.fetchone()[0])\n",
            no_imports=True,
            env=env,
        )
    assert "probe readyz" in result.stdout
    assert f"app {SLUG}" in result.stdout
