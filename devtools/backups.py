"""docs/backups.md's restore drill on this machine: the doc's marked blocks, run as written.

A block is marked as the README's are (``<!-- step: NAME -->`` on the line before a ```bash
fence, read by :func:`devtools.readme.steps`). :meth:`Machine.run` runs one command at a
time as root, in the baked project's directory (the doc runs them in a checkout on the
database server), and takes only these liberties with the text:

- this machine's paths and ports for the documented ones: a cluster's data directory
  (``/var/lib/postgresql/V/NAME``), its ``/etc/postgresql/V/NAME/``, its log
  (``/var/log/postgresql/postgresql-V-NAME.log``) and ``--port``, and
  ``--config-path`` for pgBackRest's ``/etc/pgbackrest``; plus the values a reader fills in
  (the target time, a table's name), which the caller passes;
- the server's defaults are the environment's: ``PGHOST`` is a directory holding every
  cluster's socket (Debian's /var/run/postgresql) and ``PGPORT`` is ``main``'s (5432);
  ``sudo -u postgres`` is a stand-in on ``PATH`` that switches to the servers' account;
- Debian's wrappers that create, start, stop and drop clusters (``pg_createcluster``,
  ``pg_ctlcluster``, ``pg_dropcluster``, ``systemctl ... postgresql@V-NAME``) are done by the
  harness, on the cluster they name; any other form of them fails the run.

A :class:`Cluster` is a harness server plus a directory standing for its
``/etc/postgresql/V/NAME``, whose ``conf.d/`` it reads at every start. Debian keeps that
configuration outside the data directory, so a restore leaves it alone: the drill can show
that ``archiving.conf`` installed after a restore takes effect only then.
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
from devtools.harness import APP_USER, SUPERUSER, Primary, pg_bindir, server_user
from devtools.harness.host import make_workdir, run, write_file
from devtools.readme import steps

TABLE = "drill"  # the drill's table, in the project's database (named after its slug)
# The stand-in for ``sudo -u USER COMMAND...``: COMMAND as USER, with USER's home and the
# drill's environment (its stand-ins for the server's defaults).
SUDO = """#!/bin/sh
[ "$1" = -u ] && [ $# -ge 3 ] || { echo "the drill's sudo knows only -u USER COMMAND" >&2; exit 2; }
user=$2; shift 2
HOME=$(getent passwd "$user" | cut -d: -f6); export HOME
[ "$(id -u)" = "$(id -u "$user")" ] && exec "$@"
exec setpriv --reuid="$(id -u "$user")" --regid="$(id -g "$user")" --init-groups -- "$@"
"""


def version() -> str:
    """The harness's PostgreSQL major version, which the drill's project is baked for."""
    return pg_bindir().parent.name


def commands(block: str) -> list[str]:
    """The commands of a shell block: continued lines joined, comment lines left out."""
    joined = re.sub(r"\\\n\s*", " ", block)
    lines = (line.strip() for line in joined.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def settings(text: str) -> dict[str, str]:
    """The settings of a postgresql.conf-style file, quotes removed."""
    return {
        name: value[1:-1].replace("''", "'") if value.startswith("'") else value
        for name, value in re.findall(r"^(\w+)\s*=\s*('(?:[^']|'')*'|[^\s#]+)", text, re.M)
    }


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

    def configure(self, server: Primary) -> None:
        """Write the shipped pgbackrest.conf with this machine's paths and ``server``'s port:
        nothing else changes."""
        config = configparser.ConfigParser(interpolation=None)
        config.optionxform = str  # option names are case-sensitive
        config.read_string((self.deploy / "pgbackrest.conf").read_text())
        config["global"].update(
            {"repo1-path": str(self.repository), "log-path": str(self.path / "log")}
        )
        config["global"]["lock-path"] = str(self.path)  # the default is shared by test workers
        config[self.stanza].update(
            {
                "pg1-path": str(server.data_dir),
                "pg1-port": str(server.port),
                "pg1-socket-path": str(server.socket_dir),
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

    def condition(self, server: Primary | None) -> int:
        """The exit status of the backup unit's ``ExecCondition``, run as systemd runs it (as
        the unit's user, psql reaching the local server: ``server``'s socket and port, or a
        server that is down when None); 0 runs the backup, 1 to 254 skips it, 255 fails it."""
        service = (self.deploy / "pgbackrest-backup@.service").read_text()
        (command,) = re.findall(r"^ExecCondition=(.*)$", service, re.M)
        command = command.replace("$$", "$")  # systemd's escape for a literal $
        env = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
        env.update(PGUSER=SUPERUSER, PGDATABASE="postgres", PGCONNECT_TIMEOUT="5")
        if server is None:
            env.update(PGHOST=str(self.path), PGPORT="1")  # no socket there
        else:
            env.update(PGHOST=str(server.socket_dir), PGPORT=str(server.port))
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


class Cluster:
    """One of Debian's clusters: a harness server, and ``etc`` standing for its
    /etc/postgresql/V/NAME, whose ``conf.d/*.conf`` the server reads at every start."""

    def __init__(self, machine: "Machine", conf_d: tuple[Path, ...] = ()) -> None:
        self.machine = machine
        self.etc = make_workdir("etc")
        (self.etc / "conf.d").mkdir()
        server_user().chown(self.etc / "conf.d")
        for path in conf_d:
            shutil.copy(path, self.etc / "conf.d")
        self.server = Primary(settings=self.settings())
        self.log = ""  # the server's log, kept when it is closed
        sockets = machine.site.sockets
        name = f".s.PGSQL.{self.server.port}"
        (sockets / name).symlink_to(self.server.socket_dir / name)

    def settings(self) -> dict[str, str]:
        """What ``conf.d/*.conf`` set, in Debian's order, pgBackRest reading the machine's
        configuration (/etc/pgbackrest on the server)."""
        found = {}
        for path in sorted((self.etc / "conf.d").glob("*.conf")):
            found.update(settings(path.read_text()))
        executable = self.machine.backrest.executable
        return {
            name: re.sub(r"^pgbackrest ", f"{executable} ", value) for name, value in found.items()
        }

    def start(self) -> None:
        # Debian reads the configuration in /etc at every start, whatever a restore put in the
        # data directory. The harness keeps its own (harness.conf: this server's port, socket
        # and settings) in the data directory, where a restore replaces it: write it again.
        self.server.settings = self.settings()
        self.server._configure()
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def close(self) -> None:
        self.log = self.server.log_text()
        self.server.close()
        shutil.rmtree(self.etc, ignore_errors=True)


class Machine:
    """One database server of the doc: its clusters by name (``main``, created as Debian's
    package leaves it, and any the doc creates) and pgBackRest set up for ``main``."""

    def __init__(self, site: "Site", *, archiving: bool) -> None:
        self.site = site
        self.backrest = PgBackRest(site.project, site.repository, site.passphrase)
        # Set it up: install -m 644 deploy/backup/archiving.conf /etc/postgresql/V/main/conf.d/
        shipped = (self.backrest.deploy / "archiving.conf",) if archiving else ()
        self.clusters = {"main": Cluster(self, shipped)}
        self.ports: dict[str, Cluster] = {}  # the doc's --port, for the clusters it created
        self.closed: list[Cluster] = []
        self.backrest.configure(self.main.server)
        self.transcript: list[str] = []

    @property
    def main(self) -> Cluster:
        return self.clusters["main"]

    def run(self, step: str, values: Mapping[str, object] | None = None) -> dict[str, float]:
        """Run the doc's block ``step`` on this machine, ``values`` filled in for the
        documented ones; return how long each command took, in seconds."""
        timings = {}
        for command in commands(self.site.doc[step]):
            started = time.monotonic()
            self.transcript.append(f"[{step}] $ {command}")
            if not self._debian(command):
                self._bash(self._here(command, values or {}))
            timings[command] = time.monotonic() - started
        return timings

    def logs(self) -> str:
        """What PostgreSQL and pgBackRest logged on this machine so far."""
        clusters = [*self.clusters.values(), *self.closed]
        return "".join(
            [self.backrest.log_text(), *(c.log or c.server.log_text() for c in clusters)]
        )

    def drop(self, name: str) -> None:
        """``pg_dropcluster V NAME --stop``: the cluster stops, its data gone."""
        self._drop(name)

    def lose(self) -> None:
        """Lose the server: every cluster stops at once, its data gone."""
        for name in list(self.clusters):
            self._drop(name)

    def close(self) -> None:
        self.lose()
        self.backrest.close()

    def _debian(self, command: str) -> bool:
        """Do ``command`` with the harness if it is one of Debian's cluster wrappers."""
        words = shlex.split(command, comments=True)
        line, v = " ".join(words), re.escape(version())
        if match := re.fullmatch(rf"systemctl (start|stop|restart) postgresql@{v}-(\w+)", line):
            action, name = match.groups()
        elif match := re.fullmatch(rf"pg_ctlcluster {v} (\w+) (start|stop|restart)", line):
            name, action = match.groups()
        elif match := re.fullmatch(rf"pg_createcluster --port (\d+) {v} (\w+)", line):
            port, name = match.groups()
            # An empty cluster, not started: the harness makes and starts one, then stops it.
            self.clusters[name] = self.ports[port] = Cluster(self)
            self.clusters[name].stop()
            return True
        elif match := re.fullmatch(rf"pg_dropcluster {v} (\w+) --stop", line):
            self._drop(match[1])
            return True
        elif words[0] in ("systemctl", "pg_ctlcluster", "pg_createcluster", "pg_dropcluster"):
            raise AssertionError(f"the drill has no stand-in for `{command}`")
        else:
            return False
        cluster = self.clusters[name]
        if action != "start":
            cluster.stop()
        if action != "stop":
            cluster.start()
        return True

    def _drop(self, name: str) -> None:
        cluster = self.clusters.pop(name)
        cluster.close()
        self.closed.append(cluster)

    def _here(self, command: str, values: Mapping[str, object]) -> str:
        """``command`` with this machine's paths and ports, and ``values``, for the doc's."""
        here = {written: str(value) for written, value in values.items()}
        here["pgbackrest --stanza"] = f"{self.backrest.executable} --stanza"
        here["sudo -u postgres "] = f"sudo -u {server_user().name} "
        for name, cluster in self.clusters.items():
            here[f"/var/lib/postgresql/{version()}/{name}"] = str(cluster.server.data_dir)
            here[f"/etc/postgresql/{version()}/{name}/"] = f"{cluster.etc}/"
            here[f"/var/log/postgresql/postgresql-{version()}-{name}.log"] = str(
                cluster.server.log_path
            )
        for port, cluster in self.ports.items():
            here[f"--port {port}"] = f"--port {cluster.server.port}"
        pattern = "|".join(map(re.escape, sorted(here, key=len, reverse=True)))
        return re.sub(pattern, lambda match: here[match[0]], command)

    def _bash(self, command: str, timeout: float = 300) -> None:
        env = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
        env.update(
            PATH=f"{self.site.bin}{os.pathsep}{os.environ['PATH']}",
            PGHOST=str(self.site.sockets),
            PGPORT=str(self.main.server.port),
            PGUSER=SUPERUSER,  # the role `sudo -u postgres psql` logs in as
        )
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=self.site.project,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        self.transcript.append(result.stdout[-3000:] + result.stderr[-3000:])
        if result.returncode != 0:
            log = "\n".join(self.transcript)[-8000:]
            raise AssertionError(f"`{command}` exited with {result.returncode}:\n{log}")


class Site:
    """What the drill's machines share: the baked project (a checkout the servers' account
    can read), the repository and its passphrase, and what the doc's commands find on a
    server: ``sudo``, and a directory of sockets standing for /var/run/postgresql."""

    def __init__(self) -> None:
        self.path = make_workdir("backups")
        answers = {"use_read_replica": True, "postgresql_version": version()}
        self.project = bake(answers, self.path)
        self.doc = steps(self.project / "docs" / "backups.md")
        self.passphrase = secrets.token_urlsafe(48)
        self.repository, self.sockets, self.bin = (
            self.path / "repository",
            self.path / "run",
            self.path / "bin",
        )
        for directory in (self.repository, self.sockets, self.bin):
            directory.mkdir()
            server_user().chown(directory)
        (self.bin / "sudo").write_text(SUDO)
        (self.bin / "sudo").chmod(0o755)
        self.machines: list[Machine] = []

    @property
    def database(self) -> str:
        """The project's database, named after its slug."""
        return self.project.name

    def machine(self, *, archiving: bool) -> Machine:
        """A new database server: its ``main`` cluster running, archiving with the shipped
        archiving.conf or not, and pgBackRest configured for it on the shared repository."""
        machine = Machine(self, archiving=archiving)
        self.machines.append(machine)
        return machine

    def close(self) -> None:
        for machine in self.machines:
            machine.close()
        shutil.rmtree(self.path, ignore_errors=True)


# The drill's data ------------------------------------------------------------------------


def create_table(server: Primary, database: str) -> None:
    """The project's database, owned by the harness's application role, and the drill's
    table in it."""
    server.execute(f"CREATE DATABASE {database} OWNER {APP_USER}")
    server.execute(
        f"CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, batch int NOT NULL,"
        " written_at timestamptz NOT NULL DEFAULT clock_timestamp(), payload text NOT NULL)",
        dbname=database,
    )


def write_batch(server: Primary, database: str, batch: int, rows: int) -> tuple[str, str]:
    """Insert ``rows`` rows of ``batch``; return when the first and the last was written."""
    return server.execute(
        f"WITH written AS (INSERT INTO {TABLE} (batch, payload)"
        " SELECT %s, md5(i::text) || md5((-i)::text) FROM generate_series(1, %s) AS i"
        " RETURNING written_at) SELECT min(written_at)::text, max(written_at)::text FROM written",
        [batch, rows],
        dbname=database,
    )[0]


def batches(server: Primary, database: str) -> dict[int, int]:
    """How many rows of each batch the table holds."""
    query = f"SELECT batch, count(*) FROM {TABLE} GROUP BY batch"
    return dict(server.execute(query, dbname=database))


def now(server: Primary) -> str:
    """The server's clock."""
    return server.execute("SELECT clock_timestamp()::text")[0][0]
