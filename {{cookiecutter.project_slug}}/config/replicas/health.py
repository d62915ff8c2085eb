"""Which replicas answer: a process-wide record shared by every thread."""

import logging
import threading
import time

from django.conf import settings

logger = logging.getLogger(__name__)


class ReplicaHealth:
    """Process-wide record of the replicas that failed to connect, and until when.

    Only transitions take the lock and log: the first failure logs one warning, the
    first success afterwards logs one "back" message, and failures in between are quiet.
    """

    def __init__(self):
        self._down_until = {}  # alias -> time.monotonic() at which to try it again
        self._lock = threading.Lock()

    def available(self, alias):
        """Return True when ``alias`` may be tried now.

        Once a cool-down expires, exactly one caller gets True and the cool-down is
        extended for everyone else while that caller tries to connect: a dead replica
        costs one connect timeout per cool-down per process, not one per request.
        """
        if alias not in self._down_until:  # the fast path: a dict lookup, no lock
            return True
        with self._lock:
            until = self._down_until.get(alias)
            if until is None:
                return True
            now = time.monotonic()
            if now < until:
                return False
            self._down_until[alias] = now + settings.REPLICA_COOLDOWN_SECONDS
            return True

    def mark_down(self, alias, error):
        """Skip ``alias`` for the cool-down; warn if it was up until now."""
        cooldown = settings.REPLICA_COOLDOWN_SECONDS
        with self._lock:
            was_up = alias not in self._down_until
            self._down_until[alias] = time.monotonic() + cooldown
        if was_up:
            logger.warning(
                "Database replica %r is unreachable; reading from elsewhere for %gs: %s",
                alias,
                cooldown,
                error,
            )

    def mark_up(self, alias):
        """Use ``alias`` again; say so if it was down."""
        if alias not in self._down_until:
            return
        with self._lock:
            was_down = self._down_until.pop(alias, None) is not None
        if was_down:
            logger.warning("Database replica %r answers again; reading from it.", alias)

    def reset(self):
        """Forget every failure (for tests)."""
        with self._lock:
            self._down_until.clear()


health = ReplicaHealth()
