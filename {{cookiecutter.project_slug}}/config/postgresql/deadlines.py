"""Deadlines for waits on an open connection, enforced without a cancel request.

A server that hangs (a frozen process, a partition) still has its kernel acknowledge
every packet, so TCP keepalives never fire and libpq waits forever. A watchdog thread
shuts down the socket of a wait that outlives its deadline instead: the blocked call
fails at once. It sends no cancel request, which a connection pooler may mishandle
(some crash on one) and which a frozen server would not answer anyway.
"""

import contextlib
import os
import socket
import threading
import time

TICK = 0.05  # seconds; how late past its deadline a wait may be cut


class Watchdog:
    """Shut the socket of every registered wait that outlives its deadline."""

    def __init__(self):
        self._waits = {}  # key -> (deadline, socket file descriptor)
        self._lock = threading.Lock()
        self._pid = None

    @contextlib.contextmanager
    def bound(self, fileno, seconds):
        """Limit the wait inside the block to ``seconds``; yield a :class:`Wait`."""
        wait = Wait(seconds)
        self._ensure_running()
        self._waits[wait] = (time.monotonic() + seconds, fileno)
        try:
            yield wait
        finally:
            with self._lock:  # never cut a socket once its wait is over
                self._waits.pop(wait, None)

    def _ensure_running(self):
        if self._pid != os.getpid():  # a forked worker does not inherit the thread
            with self._lock:
                if self._pid != os.getpid():
                    threading.Thread(target=self._run, name="db-deadlines", daemon=True).start()
                    self._pid = os.getpid()

    def _run(self):
        while True:
            time.sleep(TICK)
            now = time.monotonic()
            for wait, (deadline, fileno) in list(self._waits.items()):
                if deadline <= now:
                    with self._lock:
                        if wait in self._waits:
                            del self._waits[wait]
                            wait.expired = True
                            _shut_down(fileno)


class Wait:
    """One bounded wait; ``expired`` tells whether the watchdog cut it."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.expired = False


def _shut_down(fileno):
    # A duplicate descriptor keeps the connection's own open for libpq to close.
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fileno)) as sock:
        sock.shutdown(socket.SHUT_RDWR)


watchdog = Watchdog()
