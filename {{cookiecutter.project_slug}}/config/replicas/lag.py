"""How far each replica is behind, learnt from the replica itself at most once a window.

A replica is skipped by every client while it is not a streaming standby or lags more
than ``REPLICA_MAX_LAG_SECONDS``, and taken back once it catches up. A client that wrote
reads from a replica only once the replica has replayed the primary's WAL position after
that write. The state is asked of the replica (never of the primary, so a read-only
request still never touches it) by the first request to use the replica after the last
look has aged past :data:`WINDOW`; the other requests use the last look.
"""

import logging
import threading
import time
from dataclasses import dataclass

from django.conf import settings

logger = logging.getLogger(__name__)

# Seconds between two looks at one replica, per process. Looking costs one query on the
# replica (~0.2 ms); a writer is back on the replica within about the replication delay
# plus this window.
WINDOW = 0.2

# Lag is zero when everything received is replayed, so an idle primary (no new WAL, an
# old last-replayed timestamp) does not look like lag; otherwise it is the age of the
# last transaction replayed. A restarted receiver reports the start of its segment, before
# what was replayed: "<=" keeps an idle primary's restarted replica from looking behind.
STATE_SQL = """
    SELECT pg_is_in_recovery(),
           EXISTS (SELECT FROM pg_stat_wal_receiver),
           pg_last_wal_replay_lsn()::text,
           CASE WHEN pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0
                ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())
           END::float
"""
# In tests a replica alias mirrors the test database itself: it is always caught up.
MIRROR_STATE_SQL = "SELECT true, true, pg_current_wal_insert_lsn()::text, 0::float"
# The primary's position after a unit of work's writes have committed: the insert
# position, since with synchronous_commit off a commit returns before its WAL is written.
POSITION_SQL = "SELECT pg_current_wal_insert_lsn()::text"


def parse_position(text):
    """Return WAL position ``'16/B374D848'`` as an integer (``None`` for ``None``)."""
    if text is None:
        return None
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


@dataclass(frozen=True)
class ReplicaState:
    """One look at a replica."""

    in_recovery: bool
    streaming: bool
    position: int | None  # WAL replayed so far
    lag: float | None  # seconds
    seen: float = 0.0  # time.monotonic() of the look

    @classmethod
    def from_row(cls, row, seen=0.0):
        in_recovery, streaming, position, lag = row
        return cls(in_recovery, streaming, parse_position(position), lag, seen)

    @classmethod
    def from_text(cls, values):
        """Build a state from the text values of a ``STATE_SQL`` row (for the probe)."""
        in_recovery, streaming, position, lag = values
        lag = None if lag is None else float(lag)
        return cls(in_recovery == "t", streaming == "t", parse_position(position), lag)

    def problem(self, max_lag):
        """Return why reads must skip this replica, or None."""
        if not self.in_recovery:
            return "it is not in recovery (promoted?)"
        if not self.streaming:
            return "it is not streaming from the primary"
        if self.lag is None:
            return "its lag is unknown"
        if self.lag > max_lag:
            return f"it lags {self.lag:.1f}s (limit {max_lag:g}s)"
        return None

    def serves(self, position, max_lag):
        """Return True when a reader that must see ``position`` may read here."""
        if self.problem(max_lag) is not None:
            return False
        return position is None or (self.position is not None and self.position >= position)


class ReplicaLag:
    """The last look at every replica, shared by the threads of the process."""

    def __init__(self):
        self._states = {}  # alias -> ReplicaState
        self._looking = set()  # aliases one thread is looking at right now
        self._lock = threading.Lock()

    def due(self, alias):
        """Return True to exactly one caller once the last look at ``alias`` is stale."""
        state = self._states.get(alias)
        if state is not None and time.monotonic() - state.seen < WINDOW:
            return False  # the fast path: no lock
        with self._lock:
            if alias in self._looking:
                return state is None  # nothing to go on yet: look too
            self._looking.add(alias)
            return True

    def look(self, alias, connection):
        """Ask the replica behind ``connection`` how it is doing; record the answer."""
        try:
            with connection.cursor() as cursor:
                cursor.execute(state_sql(alias))
                state = ReplicaState.from_row(cursor.fetchone(), time.monotonic())
            self.record(alias, state)
        finally:
            with self._lock:
                self._looking.discard(alias)

    def record(self, alias, state):
        """Store ``state``; log when the replica starts or stops being skipped."""
        max_lag = settings.REPLICA_MAX_LAG_SECONDS
        before = self._states.get(alias)
        self._states[alias] = state
        was = before.problem(max_lag) if before is not None else None
        now = state.problem(max_lag)
        if now is not None and was is None:
            logger.warning("Database replica %r is skipped: %s.", alias, now)
        elif now is None and was is not None:
            logger.warning("Database replica %r caught up; reading from it.", alias)

    def serves(self, alias, position):
        """Return True when ``alias`` may serve a reader that must see ``position``."""
        state = self._states.get(alias)
        return state is not None and state.serves(position, settings.REPLICA_MAX_LAG_SECONDS)

    def reset(self):
        """Forget every look (for tests)."""
        with self._lock:
            self._states.clear()
            self._looking.clear()


lag = ReplicaLag()


def state_sql(alias):
    """Return the query that asks ``alias`` how it is doing."""
    settings_dict = settings.DATABASES[alias]
    return MIRROR_STATE_SQL if settings_dict.get("TEST", {}).get("MIRROR") else STATE_SQL


def probe_report(values):
    """Return what ``/readyz/`` tells of a replica: its lag and whether reads skip it."""
    state = ReplicaState.from_text(values)
    return {
        "lag_seconds": None if state.lag is None else round(state.lag, 3),
        "streaming": state.streaming,
        "skipped": state.problem(settings.REPLICA_MAX_LAG_SECONDS) is not None,
    }
