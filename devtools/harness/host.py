"""The host side of the servers: their binaries, the unprivileged account they run as, and
the commands and files that account runs and owns.
"""

import functools
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.harness.errors import HarnessError

START_TIMEOUT = 60.0  # seconds; generous because CI machines running xdist are slow


@functools.cache
def pg_bindir() -> Path:
    """Return the directory holding ``initdb``, ``pg_ctl`` and friends.

    Looked up in ``$PG_BIN``, then ``pg_config --bindir`` and finally the newest
    ``/usr/lib/postgresql/*/bin`` (Debian's ``pg_config`` from libpq-dev says /usr/bin,
    which has no server binaries).
    """
    if configured := os.environ.get("PG_BIN"):
        if not (Path(configured) / "initdb").is_file():
            raise HarnessError(f"PG_BIN={configured} does not contain initdb")
        return Path(configured)
    if pg_config := shutil.which("pg_config"):
        result = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        )
        bindir = Path(result.stdout.strip())
        if result.returncode == 0 and (bindir / "initdb").is_file():
            return bindir
    candidates = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").is_file()]
    if not candidates:
        raise HarnessError("no PostgreSQL server binaries found; set PG_BIN")
    return max(candidates, key=lambda p: _version_key(p.parent.name))


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


@functools.cache
def pgbouncer_path() -> str:
    """Return the pgbouncer executable (``$PGBOUNCER``, ``$PATH`` or /usr/sbin)."""
    return os.environ.get("PGBOUNCER") or shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


@dataclass(frozen=True)
class ServerUser:
    """The OS account that server processes run as."""

    name: str
    uid: int
    gid: int
    home: str
    groups: tuple[int, ...]

    @property
    def is_current(self) -> bool:
        """True when no privilege switch is needed."""
        return self.uid == os.geteuid()

    def popen_kwargs(self) -> dict[str, Any]:
        """Arguments making ``subprocess`` run a child as this user."""
        if self.is_current:
            return {}
        # extra_groups replaces root's supplementary groups, which would otherwise leak.
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for a child process running as this user."""
        # Ambient PG* variables (PGHOST, PGOPTIONS, PGSSLMODE...) would silently change
        # what the tools connect to, so children only get the ones we pass explicitly.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(HOME=self.home, USER=self.name, LOGNAME=self.name)
        env.update(extra or {})
        return env

    def chown(self, path: Path) -> None:
        """Hand ``path`` over to this user (no-op without a privilege switch)."""
        if not self.is_current:
            os.chown(path, self.uid, self.gid)


@functools.cache
def server_user() -> ServerUser:
    """Return the account server processes run as (never root)."""
    if os.geteuid() != 0:
        try:
            entry = pwd.getpwuid(os.geteuid())
        except KeyError:  # arbitrary uid without a passwd entry (some containers)
            uid = os.geteuid()
            return ServerUser(str(uid), uid, os.getegid(), os.environ.get("HOME", "/"), ())
    else:
        name = os.environ.get("PG_HARNESS_USER", "postgres")
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise HarnessError(
                f"running as root, but there is no {name!r} user to run the servers as; "
                "create it or set PG_HARNESS_USER to an unprivileged account"
            ) from None
    groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return ServerUser(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, groups)


def run(
    cmd: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    timeout: float = START_TIMEOUT,
) -> str:
    """Run ``cmd`` as the server user and return its stdout; raise on failure."""
    user = server_user()
    try:
        result = subprocess.run(
            list(cmd),
            cwd=cwd,  # the caller's cwd (e.g. /root) may not be readable by the server user
            env=user.env(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,  # failures are reported below, with the tool's output
            **user.popen_kwargs(),
        )
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"`{shlex.join(cmd)}` timed out after {timeout:g}s") from exc
    if result.returncode != 0:
        raise HarnessError(
            f"`{shlex.join(cmd)}` exited with {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result.stdout


def make_workdir(kind: str) -> Path:
    """Create a private temp dir owned by the server user."""
    user = server_user()
    parent = Path(tempfile.gettempdir()).resolve()
    # The server user must be able to reach the directory, and Unix socket paths are
    # limited to ~107 bytes, so fall back to /tmp when $TMPDIR does not fit.
    if len(str(parent)) > 60 or not _traversable_by(parent, user):
        parent = Path("/tmp")
    path = Path(tempfile.mkdtemp(prefix=f"pgharness-{kind}-", dir=parent))
    user.chown(path)
    return path


def _traversable_by(path: Path, user: ServerUser) -> bool:
    if user.is_current:
        return os.access(path, os.X_OK)
    for directory in (path, *path.parents):
        info = directory.stat()
        if info.st_uid == user.uid:
            needed = stat.S_IXUSR
        elif info.st_gid in user.groups:
            needed = stat.S_IXGRP
        else:
            needed = stat.S_IXOTH
        if not info.st_mode & needed:
            return False
    return True


def write_file(path: Path, text: str) -> None:
    """Write a file readable only by the server user."""
    path.write_text(text)
    path.chmod(0o600)
    server_user().chown(path)


def self_signed_certificate(key: Path, cert: Path) -> None:
    """Write a throwaway key and self-signed certificate for the loopback address, readable
    by the server user only."""
    try:
        subprocess.run(
            [
                "openssl", "req", "-x509", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                # An EC key takes milliseconds; RSA takes up to a second.
                "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-keyout", str(key), "-out", str(cert),
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=True,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", None) or exc
        raise HarnessError(f"openssl could not make a certificate: {detail}") from exc
    for path in (key, cert):
        path.chmod(0o600)
        server_user().chown(path)


def read_text(path: Path, offset: int = 0) -> str:
    """The text of ``path`` from byte ``offset`` on; empty when the file does not exist."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def file_size(path: Path) -> int:
    """The size of ``path`` in bytes; 0 when the file does not exist."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
