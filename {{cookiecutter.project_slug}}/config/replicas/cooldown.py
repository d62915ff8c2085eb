"""Replicas that failed a connection or a query, skipped by the whole process for a while."""

import logging
import threading
import time

from django.conf import settings

logger = logging.getLogger(__name__)


class Cooldown:
    """Which replicas failed, and until when they are skipped; shared by the process's threads.

    Only transitions take the lock and log: the first failure logs one warning, the first
    success afterwards one "back" message, and failures in between are quiet. ``clock``
    (``time.monotonic``) times the cool-downs; tests give one they move by hand.
    """

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._until = {}  # alias -> clock() at which to try it again
        self._lock = threading.Lock()

    def ready(self, alias):
        """Return True when ``alias`` may be tried now.

        Once a cool-down is over, exactly one caller gets True and the cool-down is extended
        for everyone else while that caller tries: a dead replica costs one attempt per
        cool-down per process, not one per request.
        """
        if alias not in self._until:  # the fast path: a dict lookup, no lock
            return True
        with self._lock:
            until = self._until.get(alias)
            if until is None:
                return True
            now = self.clock()
            if now < until:
                return False
            self._until[alias] = now + settings.REPLICA_COOLDOWN_SECONDS
            return True

    def start(self, alias, error):
        """Skip ``alias`` for ``REPLICA_COOLDOWN_SECONDS``; warn if it was in use until now."""
        seconds = settings.REPLICA_COOLDOWN_SECONDS
        with self._lock:
            was_in_use = alias not in self._until
            self._until[alias] = self.clock() + seconds
        if was_in_use:
            logger.warning(
                "Database replica %r failed; reading from elsewhere for %gs: %s",
                alias,
                seconds,
                str(error).strip(),
            )

    def end(self, alias):
        """Use ``alias`` again; say so if it was cooling down."""
        if alias not in self._until:
            return
        with self._lock:
            was_cooling = self._until.pop(alias, None) is not None
        if was_cooling:
            logger.warning("Database replica %r answers again; reading from it.", alias)

    def cooling(self, alias):
        """Return True while ``alias`` is skipped (for reports; takes no turn)."""
        until = self._until.get(alias)
        return until is not None and self.clock() < until


cooldown = Cooldown()
