"""What a run serves: the baked projects, the database servers they run against, and the app
servers started for each configuration.
"""

import contextlib
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.configurations import CONFIGS, PROJECTS, Config
from bench.log import first_line, last_lines, log
from devtools import bakery, harness

APP_FILES = Path(__file__).resolve().parent / "app"


def make_certificate(directory: Path) -> dict[str, object]:
    """A throwaway self-signed certificate for the primary, or raise."""
    directory.chmod(0o711)  # the server user must reach the files
    key, cert = directory / "server.key", directory / "server.crt"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    key.chmod(0o600)
    cert.chmod(0o644)
    user = harness.server_user()
    user.chown(key)
    user.chown(cert)
    return {"ssl": True, "ssl_cert_file": str(cert), "ssl_key_file": str(key)}


class Servers:
    """The baked projects and the primary, replica and PgBouncer they run against.

    What cannot be baked, started or migrated is skipped: ``skipped`` maps each configuration
    it takes out to the reason.
    """

    def __init__(self, args):
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="connbench-"))
        self.projects: dict[str, Path] = {}
        self.pythons: dict[str, Path] = {}
        self.skipped: dict[str, str] = {}  # config key -> reason
        self.primary = self.replica = self.bouncer = None
        self.cert_dir: Path | None = None
        self.secret = secrets.token_urlsafe(40)

    def bake_projects(self, wanted: set[str]) -> None:
        """Bake the ``wanted`` projects with the benchmark app, each with its Python."""
        for name in PROJECTS:
            if name not in wanted:
                continue
            answers = {"django_version": self.args.django, "ci": "none", **PROJECTS[name]}
            project = bakery.bake(answers, self.workdir / f"bake-{name}")
            shutil.copytree(APP_FILES, project, dirs_exist_ok=True)
            self.projects[name] = project
            # The environment holds the lock's `asgi` extra too, which the ASGI rows serve
            # with, as the README does.
            self.pythons[name] = bakery.project_python(project, self.args.django)
            log(f"baked {name}: {project}")

    def _skip_project(self, name: str, reason: str) -> None:
        log(f"SKIP project {name}: {reason}")
        for config in CONFIGS:
            if config.project == name:
                self.skipped.setdefault(config.key, reason)

    def start(self, configs: list[Config]) -> None:
        """Start the primary (with TLS if ``configs`` need it), the replica and PgBouncer."""
        settings: dict[str, object] = {}
        if any(c.tls for c in configs):
            try:
                self.cert_dir = Path(tempfile.mkdtemp(prefix="connbench-tls-"))
                settings = make_certificate(self.cert_dir)
            except Exception as error:
                reason = f"no TLS certificate: {first_line(error)}"
                self._skip_tls(reason)
        log("starting PostgreSQL primary" + (" with TLS" if settings else ""))
        try:
            self.primary = harness.Primary(settings)
        except harness.HarnessError as error:
            if not settings:
                raise
            self._skip_tls(f"primary did not start with ssl=on: {last_lines(error, 1)}")
            self.primary = harness.Primary()
        if "replica" in self.projects:
            log("starting streaming replica")
            try:
                self.replica = harness.Replica(self.primary)
            except Exception as error:
                self._skip_project("replica", f"replica failed to start: {first_line(error)}")
                del self.projects["replica"]
        if "pgbouncer" in self.projects:
            log(f"starting PgBouncer (transaction mode, default_pool_size={self.args.pool_size})")
            try:
                self.bouncer = harness.PgBouncer(
                    self.primary,
                    default_pool_size=self.args.pool_size,
                    # The app -> PgBouncer leg is plain TCP; keep PgBouncer -> primary alike.
                    settings={"server_tls_sslmode": "disable"},
                )
            except Exception as error:
                self._skip_project("pgbouncer", f"PgBouncer failed to start: {first_line(error)}")
                del self.projects["pgbouncer"]

    def _skip_tls(self, reason: str) -> None:
        log(f"SKIP TLS configurations: {reason}")
        for config in CONFIGS:
            if config.tls:
                self.skipped.setdefault(config.key, reason)

    def migrate(self) -> None:
        """Migrate every project on the primary, then let the replica catch up."""
        for name, project in list(self.projects.items()):
            env = self.env_for(name, {})
            # Explicit: the pgbouncer option's migrate defaults to "direct" (a whole
            # session on the primary); the others migrate "default", which is the primary.
            database = "direct" if name == "pgbouncer" else "default"
            command = [self.pythons[name], "manage.py", "migrate", "--noinput", "-v", "0",
                       "--database", database]  # fmt: skip
            try:
                bakery.run(command, cwd=project, env=env, timeout=300)
            except AssertionError as error:
                self._skip_project(name, f"migrate failed: {last_lines(error, 1)}")
                del self.projects[name]
                continue
            log(f"migrated {name}" + (" (via DATABASE_DIRECT_URL)" if name == "pgbouncer" else ""))
        self.primary.execute("VACUUM ANALYZE benchapp_item", dbname=harness.APP_DB)
        if self.replica is not None:
            self.replica.wait_for_replay(timeout=30)

    def env_for(self, project: str, extra: dict[str, str], *, tls: bool = False) -> dict[str, str]:
        """The environment serving ``project`` against the servers, plus ``extra``."""
        env = bakery.project_env(
            DJANGO_SETTINGS_MODULE="bench_settings",
            DJANGO_SECRET_KEY=self.secret,
            DJANGO_ALLOWED_HOSTS=f"{harness.LOOPBACK},localhost",
            DJANGO_SECURE_SSL_REDIRECT="false",
            DJANGO_LOG_LEVEL="WARNING",
            DATABASE_SSLMODE="require" if tls else "disable",
        )
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        if project == "pgbouncer":
            env["DATABASE_URL"] = self.bouncer.url()
            env["DATABASE_DIRECT_URL"] = self.primary.url()
        else:
            env["DATABASE_URL"] = self.primary.url()
        if project == "replica":
            env["DATABASE_REPLICA_URLS"] = self.replica.url()
        env.update(extra)
        return env

    def app_server(self, config: Config) -> bakery.AppServer:
        """gunicorn serving ``config``'s project: sync workers (wsgi) or uvicorn's (asgi)."""
        options = ["--workers", str(self.args.workers), "--log-level", "warning", "--timeout", "60"]
        if config.server == "wsgi":
            app = "config.wsgi:application"
            options += ["--worker-class", "sync"]
        else:
            # gunicorn managing uvicorn workers: `uvicorn --workers N` (0.54, h11) stalls
            # ~44 ms on every keep-alive request on loopback, which would measure the stall.
            app = "config.asgi:application"
            options += ["--worker-class", "uvicorn_worker.UvicornWorker"]
        env = self.env_for(config.project, config.env, tls=config.tls)
        python, project = self.pythons[config.project], self.projects[config.project]
        return bakery.AppServer(python, project, env, app=app, options=options)

    def close(self) -> None:
        """Stop the database servers and delete the baked projects."""
        for server in (self.bouncer, self.replica, self.primary):
            if server is not None:
                with contextlib.suppress(Exception):
                    server.close()
        shutil.rmtree(self.workdir, ignore_errors=True)
        if self.cert_dir is not None:
            shutil.rmtree(self.cert_dir, ignore_errors=True)
