"""Loopback ports for the servers, away from the ones the kernel hands out."""

import random
import socket

from devtools.harness.errors import HarnessError

LOOPBACK = "127.0.0.1"
# Linux's default net.ipv4.ip_local_port_range. bind(0) and outgoing client sockets take
# ports from here, so a server port picked from it can be stolen under load.
EPHEMERAL_PORTS = range(32768, 61000)
SERVER_PORTS = range(20000, 32000)

_rng = random.SystemRandom()  # unaffected by tests that seed the global `random`
_ports_handed_out: set[int] = set()


def pick_port() -> int:
    """Return a currently free loopback TCP port outside the ephemeral range.

    The port is only *probably* free: another process may bind it before our server
    does, which is why the servers retry with a fresh port when binding fails.
    """
    for _ in range(200):
        port = _rng.choice(SERVER_PORTS)
        if port not in _ports_handed_out and _port_is_bindable(port):
            _ports_handed_out.add(port)
            return port
    raise HarnessError(f"no free port found in {SERVER_PORTS}")


def _port_is_bindable(port: int) -> bool:
    # No SO_REUSEADDR on purpose: a port lingering in TIME_WAIT is skipped as well.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True
