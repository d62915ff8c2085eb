"""Whether the primary answers: the logic behind ``/readyz/`` (``config.probes`` serves it).

A probe round opens a fresh connection to ``default`` and runs ``SELECT 1`` in a thread of its
own; a probe request waits for it at most :data:`TIMEOUT`, so a server that refuses, hangs after
accepting or stalls mid-query costs a probe that long and no longer. The round itself ends
within the connection's own bounds (``connect_timeout``, ``QUERY_TIMEOUT``) and sends no cancel
request, which a hung server would not answer and some connection poolers crash on. One round
runs at a time per process, and probes within :data:`MAX_AGE` of the last round share its
answer: a burst of probes (many balancers, a retry storm) opens one connection per second per
process. Only ``default`` decides readiness; apps add what they know of other databases
(:data:`reports`).
"""

import logging
import threading
import time
from concurrent.futures import Future

from django.db import connections

from config.aliases import DEFAULT
from config.backends.postgresql.base import BoundedConnection

logger = logging.getLogger(__name__)

# A probe's answer comes within Kubernetes' default probe timeout, 1 s.
TIMEOUT = 0.8
MAX_AGE = 1.0
# The probe's own name in pg_stat_activity, apart from the application's connections.
APPLICATION_NAME = "readyz"

# alias prefix -> report(alias): what the process knows of those aliases, without I/O.
reports: dict = {}


class Readiness:
    """The latest probe round of ``default``, shared by the threads of the process."""

    def __init__(self):
        self._lock = threading.Lock()
        self._round: Future | None = None
        self._started = float("-inf")

    def check(self):
        """Return ``{"ok": bool, "latency_ms": float, "error"?: str}`` for ``default``."""
        with self._lock:
            if self._round is None or (
                self._round.done() and time.monotonic() - self._started >= MAX_AGE
            ):
                self._round, self._started = Future(), time.monotonic()
                threading.Thread(target=_probe, args=(self._round,), daemon=True).start()
            round_ = self._round
        try:
            return round_.result(timeout=TIMEOUT)
        except TimeoutError:  # the round goes on; a later probe may share its answer
            return {"ok": False, "error": f"no answer within {TIMEOUT:g}s"}


def _probe(future):
    started = time.perf_counter()
    try:
        with BoundedConnection.connect(**connection_params()) as connection:
            connection.timeout = connections[DEFAULT].settings_dict.get("QUERY_TIMEOUT") or None
            connection.execute("SELECT 1")
    except Exception as error:  # every failure is an answer: not ready
        # The answer names the error class only; the detail, which may name hosts, is logged.
        logger.warning("Readiness probe of %r failed: %s", DEFAULT, str(error).strip())
        result = {"ok": False, "error": type(error).__name__}
    else:
        result = {"ok": True}
    future.set_result(result | {"latency_ms": round((time.perf_counter() - started) * 1000, 1)})


def connection_params():
    """Return what Django would connect to ``default`` with, under the probe's own name."""
    params = connections[DEFAULT].get_connection_params()
    return params | {"application_name": APPLICATION_NAME, "autocommit": True}


def databases():
    """Return what the process knows of each database alias: ``default`` probed, others reported."""
    results = {DEFAULT: readiness.check()}
    for alias in connections:
        for prefix, report in reports.items():
            if alias.startswith(prefix):
                results[alias] = report(alias)
    return results


readiness = Readiness()
