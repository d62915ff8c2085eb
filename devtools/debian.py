"""Debian's own PostgreSQL clusters for the runbooks' tests: made with ``pg_createcluster``
(configuration in /etc/postgresql/V/NAME, data in /var/lib/postgresql/V/NAME, log in
/var/log/postgresql/), started and stopped with ``pg_ctlcluster``, dropped with
``pg_dropcluster``, exactly as an operator's host has them.

Each test run names its clusters uniquely (``main`` is the machine's own, on 5432, and is
never touched) and puts them on ports outside the ephemeral range. The doc's blocks run as
root through :func:`shell`, with ``sudo -u USER`` a stand-in that switches user (a fresh
Debian has no sudo), ``PGPORT`` set to the cluster the doc calls ``main`` (as 5432 is on a
host), and only cluster names, ports and passwords replaced in their text (:func:`here`).
Without systemd (a container), ``pg_ctlcluster`` runs ``pg_ctl`` itself, as Debian's
wrapper does wherever /run/systemd/system is missing.
"""

import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from devtools.backups import SUDO
from devtools.harness import pg_bindir
from devtools.harness.ports import pick_port

# ``--start`` leaves no window between the cluster's creation and its first start.
CREATE_TIMEOUT = 120


def version() -> str:
    """The PostgreSQL major version whose packages are installed (the harness's)."""
    return pg_bindir().parent.name


def available() -> str | None:
    """Why packaged clusters cannot be made here, or None."""
    if os.geteuid() != 0:
        return "pg_createcluster and pg_dropcluster need root"
    if not shutil.which("pg_createcluster"):
        return "postgresql-common is not installed (./run-tests installs it)"
    return None


def unique_name(role: str) -> str:
    """A cluster name no other test run or xdist worker uses."""
    return f"t{secrets.token_hex(4)}_{role}"


class Cluster:
    """One of Debian's clusters, made with ``pg_createcluster`` on a port of its own."""

    def __init__(self, role: str, *, create: bool = True, start: bool = True) -> None:
        """Make the cluster, started unless ``start`` is false; with ``create`` false only
        its name and port are chosen, for a doc's ``pg_createcluster`` to make it."""
        self.name = unique_name(role)
        self.version = version()
        self.port = pick_port()
        self.etc = Path(f"/etc/postgresql/{self.version}/{self.name}")
        self.data_dir = Path(f"/var/lib/postgresql/{self.version}/{self.name}")
        self.log_path = Path(f"/var/log/postgresql/postgresql-{self.version}-{self.name}.log")
        args = ["pg_createcluster", "--port", str(self.port), self.version, self.name]
        if create:
            _run([*args, *(["--start"] if start else [])], timeout=CREATE_TIMEOUT)

    def ctl(self, action: str) -> None:
        _run(["pg_ctlcluster", self.version, self.name, action], timeout=CREATE_TIMEOUT)

    def sql(self, query: str, dbname: str = "postgres") -> str:
        """Run ``query`` as the postgres superuser over the socket; return psql's output."""
        command = ["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "--port", str(self.port)]
        return _run(
            [
                "setpriv",
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
                *command,
                "--dbname",
                dbname,
                "-c",
                query,
            ],
            timeout=60,
        ).strip()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def drop(self) -> None:
        """``pg_dropcluster --stop``, then whatever it leaves behind (files it did not make,
        such as a conf.d/archiving.conf installed by hand)."""
        subprocess.run(
            ["pg_dropcluster", "--stop", self.version, self.name],
            capture_output=True,
            check=False,
            timeout=CREATE_TIMEOUT,
        )
        for path in (self.etc, self.data_dir):
            shutil.rmtree(path, ignore_errors=True)
        self.log_path.unlink(missing_ok=True)


def here(text: str, values: Mapping[str, object]) -> str:
    """``text`` with each of ``values``' keys replaced by its value, longest first."""
    pattern = "|".join(map(re.escape, sorted(values, key=len, reverse=True)))
    return re.sub(pattern, lambda match: str(values[match[0]]), text)


class Shell:
    """Runs a doc's commands as root, as an operator types them on the host."""

    def __init__(self, port: int, cwd: Path | None = None) -> None:
        self.bin = Path(tempfile.mkdtemp(prefix="pgharness-debian-bin-"))
        (self.bin / "sudo").write_text(SUDO)
        (self.bin / "sudo").chmod(0o755)
        self.port = port
        self.cwd = cwd or Path("/")
        self.transcript: list[str] = []

    def run(self, command: str, *, timeout: float = 300, check: bool = True) -> str:
        env = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
        env.update(PATH=f"{self.bin}{os.pathsep}{os.environ['PATH']}", PGPORT=str(self.port))
        self.transcript.append(f"$ {command}")
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=self.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        self.transcript.append(result.stdout[-3000:] + result.stderr[-3000:])
        if check and result.returncode != 0:
            log = "\n".join(self.transcript)[-6000:]
            raise AssertionError(f"`{command}` exited with {result.returncode}:\n{log}")
        return result.stdout

    def close(self) -> None:
        shutil.rmtree(self.bin, ignore_errors=True)


def _run(command: list[str], *, timeout: float) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise AssertionError(f"{command} exited with {result.returncode}:\n{result.stderr}")
    return result.stdout
