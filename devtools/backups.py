"""docs/backups.md's restore drill on this machine: the doc's marked blocks, run as written on
Debian's own clusters (``devtools/debian.py``).

A block is marked as the README's are (``<!-- step: NAME -->`` on the line before a ```bash
fence, read by :func:`devtools.readme.steps`). :meth:`Machine.run` runs one command at a
time as root, in the baked project's directory (the doc runs them in a checkout on the
database server), through :class:`devtools.debian.Shell`, and takes only these liberties with
the text:

- the clusters' names: the doc's ``main`` and ``pitr`` are clusters named for this run
  (``main`` is the machine's own and never touched), so ``15 main``, ``15/main`` and
  ``15-main`` (in ``pg_ctlcluster 15 main``, /etc/postgresql/15/main/, ``postgresql@15-main``,
  postgresql-15-main.log) become this run's name; and ``--port 5433``, the copy's, is
  ``pitr``'s port;
- ``--config-path`` for pgBackRest's /etc/pgbackrest (test runs must not share one), which
  the server's ``archive_command`` gets as ``PGBACKREST_CONFIG_PATH`` from the cluster's
  Debian ``environment`` file; plus the values a reader fills in (the target time, a table's
  name), which the caller passes.

Everything else is real: ``pg_createcluster``, ``pg_ctlcluster`` and ``pg_dropcluster`` run as
written, ``install ... /etc/postgresql/15/main/conf.d/`` writes into the cluster's own
conf.d, which a restore leaves alone (Debian keeps the configuration outside the data
directory), so the drill shows that ``archiving.conf`` installed after a restore takes effect
only then. ``sudo -u postgres`` switches user and ``systemctl start|stop|restart
postgresql@15-NAME`` runs ``pg_ctlcluster 15 NAME start|stop|restart``, as stand-ins on
``PATH`` (no sudo, no systemd in a container); ``PGPORT`` is ``main``'s port, as 5432 is on a
server.
"""

import configparser
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from devtools.bakery import bake
from devtools.debian import SOCKETS, Cluster, Shell, here, version
from devtools.harness import SUPERUSER, server_user
from devtools.harness.host import make_workdir, run, write_file
from devtools.readme import steps

TABLE = "drill"  # the drill's table, in the project's database (named after its slug)
PITR_PORT = 5433  # the doc's port for its copy, cluster ``pitr``


def commands(block: str) -> list[str]:
    """The commands of a shell block: continued lines joined, comment lines left out."""
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = (line.strip() for line in joined.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


class PgBackRest:
    """pgBackRest on one database server, configured by the baked project's deploy/backup/.

    Its configuration directory stands for /etc/pgbackrest: ``pgbackrest.conf`` as shipped
    with this machine's paths and ports, and ``conf.d/secret.conf`` holding the passphrase,
    where the doc tells operators to put it. The repository may be shared with other servers.
    """

    def __init__(self, project: Path, repository: Path, passphrase: str) -> None:
        self.deploy = project / "deploy" / "backup"
        self.stanza = project.name  # named after the project's slug
        self.repository = repository
        self.path = make_workdir("pgbackrest")
        for directory in (self.path / "conf.d", self.path / "log"):
            directory.mkdir()
            server_user().chown(directory)
        write_file(
            self.path / "conf.d" / "secret.conf", f"[global]\nrepo1-cipher-pass={passphrase}\n"
        )

    @property
    def executable(self) -> str:
        """``pgbackrest`` reading this configuration."""
        return f"pgbackrest --config-path={self.path}"

    def configure(self, cluster: Cluster) -> None:
        """Write the shipped pgbackrest.conf with ``cluster`` for the doc's ``main`` and the
        test's own repository, log and lock paths: nothing else changes."""
        config = configparser.ConfigParser(interpolation=None)
        config.optionxform = str  # option names are case-sensitive
        config.read_string((self.deploy / "pgbackrest.conf").read_text())
        config["global"].update(
            {"repo1-path": str(self.repository), "log-path": str(self.path / "log")}
        )
        config["global"]["lock-path"] = str(self.path)  # the default is shared by test workers
        config[self.stanza].update(
            {
                "pg1-path": str(cluster.data_dir),
                "pg1-port": str(cluster.port),
                "pg1-socket-path": SOCKETS,
            }
        )
        with (self.path / "pgbackrest.conf").open("w") as conf:
            config.write(conf)
        server_user().chown(self.path / "pgbackrest.conf")

    def run(self, *args: str, timeout: float = 300) -> str:
        """Run ``pgbackrest`` with ``args`` on the shipped stanza; return its output."""
        command = [*shlex.split(self.executable), f"--stanza={self.stanza}", *args]
        return run(command, cwd=self.path, timeout=timeout)

    def backup(self, timer: str) -> str:
        """Run the backup that ``timer`` starts, as its unit runs it, plus ``--start-fast``
        as the doc's backup by hand: the drill does not wait for spread checkpoints."""
        (unit,) = re.findall(r"^Unit=(.+)$", (self.deploy / timer).read_text(), re.M)
        template, instance = re.fullmatch(r"(.+@)(.+)\.service", unit).groups()
        service = (self.deploy / f"{template}.service").read_text()
        (command,) = re.findall(r"^ExecStart=(.*)$", service, re.M)
        program, *args = shlex.split(command.replace("%i", instance))
        assert Path(program).name == "pgbackrest", command
        command = [program, f"--config-path={self.path}", "--start-fast", *args]
        return run(command, cwd=self.path, timeout=300)

    def condition(self, cluster: Cluster | None) -> int:
        """The exit status of the backup unit's ``ExecCondition``, run as systemd runs it (as
        the unit's user, psql reaching the local server: ``cluster``'s port, or a server that
        is down when None); 0 runs the backup, 1 to 254 skips it, 255 fails it."""
        service = (self.deploy / "pgbackrest-backup@.service").read_text()
        (command,) = re.findall(r"^ExecCondition=(.*)$", service, re.M)
        command = command.replace("$$", "$")  # systemd's escape for a literal $
        env = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
        env.update(PGUSER=SUPERUSER, PGDATABASE="postgres", PGCONNECT_TIMEOUT="5")
        if cluster is None:
            env.update(PGHOST=str(self.path), PGPORT="1")  # no socket there
        else:
            env.update(PGHOST=SOCKETS, PGPORT=str(cluster.port))
        result = subprocess.run(
            shlex.split(command),
            env=env,
            capture_output=True,
            timeout=30,
            check=False,
            **server_user().popen_kwargs(),
        )
        return result.returncode

    def restore(self, data_dir: Path, *options: str) -> str:
        """Restore the repository's backups into ``data_dir``."""
        return self.run(f"--pg1-path={data_dir}", *options, "restore")

    def info(self) -> dict:
        """The stanza, as ``pgbackrest info`` reports it."""
        (stanza,) = json.loads(self.run("info", "--output=json"))
        return stanza

    def log_text(self) -> str:
        """Everything pgBackRest logged to files so far."""
        return "".join(path.read_text() for path in sorted((self.path / "log").iterdir()))

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


class Machine:
    """One database server of the doc: the clusters it names, ``main`` (made as Debian's
    package leaves it) and ``pitr`` (only named: the doc's ``pg_createcluster`` makes it), a
    shell for the doc's commands, and pgBackRest set up for ``main``."""

    def __init__(self, site: "Site", *, archiving: bool) -> None:
        self.site = site
        self.backrest = PgBackRest(site.project, site.repository, site.passphrase)
        self.clusters = {
            "main": Cluster("main", start=False),
            "pitr": Cluster("pitr", create=False),
        }
        self.shell = Shell(self.main.port, cwd=site.project)
        site.machines.append(self)  # closed with the site, whatever fails below
        # The server's archive_command finds pgBackRest's configuration here, not in /etc.
        with (self.main.etc / "environment").open("a") as environment:
            environment.write(f"PGBACKREST_CONFIG_PATH = '{self.backrest.path}'\n")
        if archiving:  # as "Set it up" does
            conf_d = f"/etc/postgresql/{version()}/main/conf.d/"
            self.shell.run(self.here(f"install -m 644 deploy/backup/archiving.conf {conf_d}", {}))
        self.main.ctl("start")
        self.backrest.configure(self.main)

    @property
    def main(self) -> Cluster:
        return self.clusters["main"]

    def run(self, step: str, values: Mapping[str, object] | None = None) -> dict[str, float]:
        """Run the doc's block ``step`` on this machine, ``values`` filled in for the
        documented ones; return how long each command took, in seconds."""
        timings = {}
        for command in commands(self.site.doc[step]):
            started = time.monotonic()
            self.shell.transcript.append(f"[{step}]")
            self.shell.run(self.here(command, values or {}))
            timings[command] = time.monotonic() - started
        return timings

    def here(self, command: str, values: Mapping[str, object]) -> str:
        """``command`` with this run's cluster names, ``pitr``'s port, pgBackRest's
        configuration and ``values``, for the doc's."""
        v = version()
        subs = {written: str(value) for written, value in values.items()}
        subs["pgbackrest --stanza"] = f"{self.backrest.executable} --stanza"
        subs[f"--port {PITR_PORT}"] = f"--port {self.clusters['pitr'].port}"
        for role, cluster in self.clusters.items():
            subs.update({f"{v}{sep}{role}": f"{v}{sep}{cluster.name}" for sep in " /-"})
        return here(command, subs)

    def logs(self) -> str:
        """What PostgreSQL and pgBackRest logged on this machine so far."""
        clusters = self.clusters.values()
        return self.backrest.log_text() + "".join(c.dropped_logs + c.log_text() for c in clusters)

    def drop(self, name: str) -> None:
        """``pg_dropcluster V NAME --stop``: the cluster stops, its data gone."""
        self.clusters[name].drop()

    def lose(self) -> None:
        """Lose the server: every cluster stops at once, its data gone."""
        for cluster in self.clusters.values():
            cluster.drop()

    def close(self) -> None:
        self.lose()
        self.shell.close()
        self.backrest.close()


class Site:
    """What the drill's machines share: the baked project (a checkout the servers' account
    can read), and the repository and its passphrase."""

    def __init__(self) -> None:
        self.path = make_workdir("backups")
        answers = {"use_read_replica": True, "postgresql_version": version()}
        self.project = bake(answers, self.path)
        self.doc = steps(self.project / "docs" / "backups.md")
        self.passphrase = secrets.token_urlsafe(48)
        self.repository = self.path / "repository"
        self.repository.mkdir()
        server_user().chown(self.repository)
        self.machines: list[Machine] = []

    @property
    def database(self) -> str:
        """The project's database, named after its slug."""
        return self.project.name

    def machine(self, *, archiving: bool) -> Machine:
        """A new database server: its ``main`` cluster running, archiving with the shipped
        archiving.conf or not, and pgBackRest configured for it on the shared repository."""
        return Machine(self, archiving=archiving)

    def close(self) -> None:
        for machine in self.machines:
            machine.close()
        shutil.rmtree(self.path, ignore_errors=True)


# The drill's data ------------------------------------------------------------------------


def create_table(server: Cluster, database: str) -> None:
    """The project's database and the drill's table in it."""
    server.execute(f"CREATE DATABASE {database}")
    server.execute(
        f"CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, batch int NOT NULL,"
        " written_at timestamptz NOT NULL DEFAULT clock_timestamp(), payload text NOT NULL)",
        dbname=database,
    )


def write_batch(server: Cluster, database: str, batch: int, rows: int) -> tuple[str, str]:
    """Insert ``rows`` rows of ``batch``; return when the first and the last was written."""
    return server.execute(
        f"WITH written AS (INSERT INTO {TABLE} (batch, payload)"
        " SELECT %s, md5(i::text) || md5((-i)::text) FROM generate_series(1, %s) AS i"
        " RETURNING written_at) SELECT min(written_at)::text, max(written_at)::text FROM written",
        [batch, rows],
        dbname=database,
    )[0]


def batches(server: Cluster, database: str) -> dict[int, int]:
    """How many rows of each batch the table holds."""
    query = f"SELECT batch, count(*) FROM {TABLE} GROUP BY batch"
    return dict(server.execute(query, dbname=database))


def now(server: Cluster) -> str:
    """The server's clock."""
    return server.execute("SELECT clock_timestamp()::text")[0][0]
