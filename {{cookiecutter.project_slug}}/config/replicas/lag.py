"""How far each replica is behind, learnt from the replica itself at most once a window.

A replica is skipped by every client while it is not a streaming standby or lags more
than ``REPLICA_MAX_LAG_SECONDS``, and taken back once it catches up. A client that wrote
reads from a replica only once the replica has replayed the primary's WAL position after
that write. The state is asked of the replica (never of the primary, so a read-only
request still never touches it) by the first request to use the replica after the last
look has aged past :data:`WINDOW`; the other requests use the last look.

A replica cut off from its primary (a partition, a hung WAL receiver) replays all it
received and reports no lag. So the process also remembers the primary's positions it
learnt from writes and pin cookies (:class:`PrimaryPositions`): a replica that has not
replayed one of them lags by at least the time since it was learnt.
"""

import bisect
import dataclasses
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


# pg_current_wal_insert_lsn() reports a write that ended a WAL page as the start of the
# next page's first record, past the page header; a replica's replay position stops
# before that header. A record cannot end just after a header, so these are page starts.
WAL_PAGE = 8192
PAGE_HEADERS = (24, 40)  # short, and long (the first page of a segment)


def written_position(position):
    """Return the end of the last record written, given the primary's insert position."""
    if position is not None and position % WAL_PAGE in PAGE_HEADERS:
        return position - position % WAL_PAGE
    return position


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


class PrimaryPositions:
    """The primary's WAL positions this process learnt, each with when it first learnt it.

    Positions learnt within :attr:`SPACING` of each other share one entry, dated by the
    first: lag read from them is overstated by that much at most, never understated.
    """

    SPACING = 0.1  # seconds
    KEEP = 1000  # entries; past that the oldest go, and a stuck replica still looks stuck

    def __init__(self):
        self._positions = []  # increasing
        self._times = []  # time.monotonic() at which each was learnt
        self._lock = threading.Lock()

    def learn(self, position, now=None):
        """Record that the primary has reached ``position``."""
        if position is None or (self._positions and position <= self._positions[-1]):
            return  # the fast path: nothing new, no lock
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._positions and position <= self._positions[-1]:
                return
            if self._times and now - self._times[-1] < self.SPACING:
                self._positions[-1] = position
                return
            self._positions.append(position)
            self._times.append(now)
            if len(self._positions) > self.KEEP:
                del self._positions[: self.KEEP // 2], self._times[: self.KEEP // 2]

    def lag(self, replayed, now=None):
        """Return the seconds since the primary was first known to be past ``replayed``."""
        if replayed is None:
            return 0.0
        with self._lock:
            first_past = bisect.bisect_right(self._positions, replayed)
            if first_past == len(self._positions):
                return 0.0
            learnt = self._times[first_past]
        return (time.monotonic() if now is None else now) - learnt

    def reset(self):
        """Forget every position (for tests)."""
        with self._lock:
            self._positions.clear()
            self._times.clear()


primary_positions = PrimaryPositions()


def with_known_lag(state):
    """Return ``state`` with its lag raised to what :data:`primary_positions` shows, if more."""
    known = primary_positions.lag(state.position)
    if state.lag is None or known <= state.lag:
        return state
    return dataclasses.replace(state, lag=known)


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
            self.record(alias, with_known_lag(state))
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
    state = with_known_lag(ReplicaState.from_text(values))
    return {
        "lag_seconds": None if state.lag is None else round(state.lag, 3),
        "streaming": state.streaming,
        "skipped": state.problem(settings.REPLICA_MAX_LAG_SECONDS) is not None,
    }
