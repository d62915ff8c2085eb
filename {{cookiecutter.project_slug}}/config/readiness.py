"""Whether each database answers, asked within a hard deadline and at a bounded rate.

Every alias is probed at once over a fresh connection, with libpq driven in non-blocking
mode under one deadline: a server that refuses, hangs after accepting, or stalls
mid-query costs the same bounded time. A probe that runs out of time just closes its
socket. It never sends a cancel request, which a connection pooler may mishandle (some
crash on one) and which a hung server would not answer anyway.
"""

import logging
import selectors
import threading
import time

from django.db import connections
from psycopg import OperationalError, pq
from psycopg.conninfo import make_conninfo

logger = logging.getLogger(__name__)

# The whole answer must come within the 3 s a load balancer or kubelet usually waits.
TIMEOUT = 2.5
# Probes arriving within this long of the last round share its answer, so a burst of
# them (many balancers, a retry storm, anyone on the internet) opens one connection per
# alias per process, not one per request.
MAX_AGE = 1.0

LIBPQ_KEYWORDS = frozenset(option.keyword.decode() for option in pq.Conninfo.get_defaults())

# What apps ask of some aliases instead of SELECT 1: alias prefix -> (sql, report).
_questions: dict[str, tuple] = {}


def register(prefix, sql, report):
    """Probe the aliases named ``prefix...`` with ``sql(alias)`` instead of ``SELECT 1``.

    ``report(values)`` turns the first row (text values, or None) into entries to add
    to those aliases' results.
    """
    _questions[prefix] = (sql, report)


class Readiness:
    """The latest probe of every database, shared by the threads of this process."""

    def __init__(self):
        self._lock = threading.Lock()
        self._results = None
        self._taken = float("-inf")

    def results(self):
        """Return ``{alias: {"ok": bool, "latency_ms": float, "error"?: str}}``.

        Concurrent callers wait for the round in flight instead of starting their own.
        """
        with self._lock:
            if time.monotonic() - self._taken >= MAX_AGE:
                self._results = probe(list(connections))
                self._taken = time.monotonic()
            return self._results

    def forget(self):
        """Probe afresh next time (for tests)."""
        with self._lock:
            self._taken = float("-inf")


readiness = Readiness()


def probe(aliases, timeout=TIMEOUT):
    """Connect to every alias and run ``SELECT 1``, all at once, within ``timeout``."""
    probes = [Probe(alias) for alias in aliases]
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        while waiting := [probe for probe in probes if probe.result is None]:
            left = deadline - time.monotonic()
            if left <= 0:
                for probe in waiting:
                    probe.fail("TimeoutError", f"no answer within {timeout:g}s")
                break
            # The socket may change while connecting (another host, another attempt).
            for probe in waiting:
                selector.register(probe.pgconn.socket, probe.wants, probe)
            for key, _ in selector.select(left):
                key.data.advance()
            for key in list(selector.get_map().values()):
                selector.unregister(key.fileobj)
    for probe in probes:
        probe.pgconn.finish()
    return {probe.alias: probe.result for probe in probes}


class Probe:
    """One alias's connection attempt and ``SELECT 1``, advanced as its socket is ready."""

    def __init__(self, alias):
        self.alias = alias
        self.started = time.perf_counter()
        self.result = None
        self.querying = False
        self.sql, self.report = "SELECT 1", None
        for prefix, (sql, report) in _questions.items():
            if alias.startswith(prefix):
                self.sql, self.report = sql(alias), report
        conninfo = make_conninfo("", **connection_params(alias))
        self.pgconn = pq.PGconn.connect_start(conninfo.encode())
        self.wants = selectors.EVENT_WRITE
        if self.pgconn.status == pq.ConnStatus.BAD:
            self.fail("OperationalError", self.pgconn.get_error_message())

    def advance(self):
        try:
            if self.querying:
                self.read()
            else:
                self.connect()
        except OperationalError as error:  # the server went away mid-way
            self.fail("OperationalError", str(error))

    def connect(self):
        status = self.pgconn.connect_poll()
        if status == pq.PollingStatus.READING:
            self.wants = selectors.EVENT_READ
        elif status == pq.PollingStatus.WRITING:
            self.wants = selectors.EVENT_WRITE
        elif status == pq.PollingStatus.OK:
            self.pgconn.nonblocking = 1
            self.pgconn.send_query(self.sql.encode())
            self.pgconn.flush()
            self.querying = True
            self.wants = selectors.EVENT_READ
        else:
            self.fail("OperationalError", self.pgconn.get_error_message())

    def read(self):
        self.pgconn.consume_input()
        if self.pgconn.is_busy():
            return
        result = self.pgconn.get_result()
        if result is not None and result.status == pq.ExecStatus.TUPLES_OK:
            self.succeed(result)
        else:
            self.fail("OperationalError", self.pgconn.get_error_message())

    def succeed(self, result):
        self.result = {"ok": True, "latency_ms": self.latency()}
        if self.report is not None:
            values = [result.get_value(0, column) for column in range(result.nfields)]
            self.result |= self.report([v if v is None else v.decode() for v in values])

    def fail(self, error, detail):
        # The body names the error class only; the detail, which may name hosts, is logged.
        message = detail.decode(errors="replace") if isinstance(detail, bytes) else detail
        logger.warning("Readiness probe of database %r failed: %s", self.alias, message.strip())
        self.result = {"ok": False, "error": error, "latency_ms": self.latency()}

    def latency(self):
        return round((time.perf_counter() - self.started) * 1000, 1)


def connection_params(alias):
    """Return the libpq parameters Django itself would use to connect to ``alias``."""
    params = connections[alias].get_connection_params()
    params = {key: value for key, value in params.items() if key in LIBPQ_KEYWORDS}
    return {**params, "application_name": "readyz"}
