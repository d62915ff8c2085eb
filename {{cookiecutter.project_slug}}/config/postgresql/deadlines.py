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
        self._waits = {}  # the waits under way, as an ordered set
        self._lock = threading.Lock()
        self._pid = None

    def start(self, fileno, seconds):
        """Register a wait on socket ``fileno`` limited to ``seconds``; return it."""
        if self._pid != os.getpid():  # a forked worker does not inherit the thread
            self._start_thread()
        wait = Wait(time.monotonic() + seconds, fileno)
        self._waits[wait] = None
        return wait

    def stop(self, wait):
        """End ``wait``, which the watchdog may have cut (``wait.expired``)."""
        with self._lock:  # never cut a socket once its wait is over
            self._waits.pop(wait, None)

    def _start_thread(self):
        with self._lock:
            if self._pid != os.getpid():
                threading.Thread(target=self._run, name="db-deadlines", daemon=True).start()
                self._pid = os.getpid()

    def _run(self):
        while True:
            time.sleep(TICK)
            now = time.monotonic()
            for wait in list(self._waits):
                if wait.deadline <= now:
                    with self._lock:
                        if self._waits.pop(wait, False) is None:
                            wait.expired = True
                            _shut_down(wait.fileno)


class Wait:
    """One bounded wait; ``expired`` tells whether the watchdog cut it."""

    __slots__ = ("deadline", "expired", "fileno")

    def __init__(self, deadline, fileno):
        self.deadline = deadline
        self.fileno = fileno
        self.expired = False


def _shut_down(fileno):
    # A duplicate descriptor keeps the connection's own open for libpq to close.
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fileno)) as sock:
        sock.shutdown(socket.SHUT_RDWR)


watchdog = Watchdog()
