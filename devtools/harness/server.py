"""What every throwaway server shares: its directory, its port, its log and its teardown."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Self

from devtools.harness.errors import HarnessError, PortTaken
from devtools.harness.host import make_workdir, read_text
from devtools.harness.ports import LOOPBACK, pick_port

PORT_ATTEMPTS = 5
LOG_TAIL_LINES = 40


def process_tree(pid: int | None) -> list[int]:
    """``pid`` and all its descendants, read from /proc (empty for None)."""
    if pid is None:
        return []
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rpartition(")")[2].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(children.get(current, []))
    return tree


def with_log_tail(message: str, log_path: Path) -> str:
    """``message`` followed by the last lines of the server log, for error reports."""
    tail = read_text(log_path).splitlines()[-LOG_TAIL_LINES:]
    return f"{message}\n--- last lines of {log_path} ---\n" + "\n".join(tail)


_live_servers: dict[int, Server] = {}
_owner_pid = os.getpid()


@atexit.register
def _close_all() -> None:
    """Safety net for servers whose owner forgot to close them."""
    if os.getpid() != _owner_pid:  # a forked child must not kill its parent's servers
        return
    for server in reversed(list(_live_servers.values())):
        with contextlib.suppress(Exception):  # best effort while the interpreter exits
            server.close()


class Server:
    """Temp-dir ownership, cleanup and context-manager plumbing shared by all servers."""

    kind = "server"
    log_path: Path

    def __init__(self) -> None:
        self.host = LOOPBACK
        self.port = 0
        self._closed = False
        self.workdir = make_workdir(self.kind)
        _live_servers[id(self)] = self

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.host}:{self.port} in {self.workdir}>"

    def log_text(self) -> str:
        """The server's log so far, for diagnostics."""
        return read_text(self.log_path)

    def start(self) -> None:
        """Start the server on its current port (subclasses implement this)."""
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        """The server's main process id (subclasses implement this)."""
        raise NotImplementedError

    def freeze(self) -> None:
        """Stop every process of the server (SIGSTOP), as a hung host or a partition looks.

        The kernel keeps accepting connections and acknowledging packets; nothing answers.
        """
        for pid in process_tree(self.pid):
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """Let a frozen server run again (SIGCONT)."""
        for pid in process_tree(self.pid):
            os.kill(pid, signal.SIGCONT)

    def close(self) -> None:
        """Stop the server for good and delete its directory. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        _live_servers.pop(id(self), None)
        try:
            self._kill()
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _kill(self) -> None:
        """Stop whatever is running, however it got there (subclasses implement this)."""
        raise NotImplementedError

    @contextlib.contextmanager
    def _closing_on_error(self) -> Iterator[None]:
        """Close a half-built server so a failed constructor leaks nothing."""
        try:
            yield
        except BaseException:
            self.close()
            raise

    def _start_on_free_port(self) -> None:
        """Start on a fresh port, retrying when another process steals it first."""
        for _ in range(PORT_ATTEMPTS):
            self.port = pick_port()
            self._configure()
            try:
                self.start()
            except PortTaken:
                continue
            return
        raise HarnessError(with_log_tail(f"{self.kind}: every port tried was taken", self.log_path))

    def _configure(self) -> None:
        """Write the configuration for the current port (subclasses implement this)."""
        raise NotImplementedError
