"""How far each replica is behind: learnt from the replica itself, at most once a window.

A replica is skipped by every client while it is not a standby or lags more than
``REPLICA_MAX_LAG_SECONDS``, and taken back once it catches up. A standby that stopped
streaming (its primary shut down for a switchover, or died) misses whatever was written since:
it is served while the time since a look last found it streaming, added to its lag then,
stays under the limit, so reads go on while the primary changes. A client that wrote reads from
a replica only once the replica has replayed the primary's WAL position after that write. The
state is asked of the replica (never of the primary, so a read-only request still never
touches it) when a read is about to run there and the last look is older than :data:`WINDOW`;
routing in between uses the last look and makes no call (``config.replicas.router``).

A replica cut off from its primary (a partition, a hung WAL receiver) replays all it received
and reports no lag. So the process also remembers the primary's positions it learnt from
writes and pin cookies (:class:`PrimaryPositions`): a replica that has not replayed one of them
lags by at least the time since it was learnt.
"""

import bisect
import dataclasses
import logging
import threading
import time
from dataclasses import dataclass

from django.conf import settings

from config.replicas import wal

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


@dataclass(frozen=True)
class ReplicaState:
    """One look at a replica."""

    in_recovery: bool
    streaming: bool
    position: int | None  # WAL replayed so far
    lag: float | None  # seconds
    seen: float = 0.0  # the clock's time of the look
    streamed: float | None = None  # the clock's time of the last look that found it streaming
    streamed_lag: float = 0.0  # its lag at that look

    @classmethod
    def from_row(cls, row, seen):
        in_recovery, streaming, position, lag = row
        return cls(in_recovery, streaming, wal.parse(position), lag, seen)

    def problem(self, max_lag):
        """Return why reads must skip this replica, or None."""
        if not self.in_recovery:
            return "it is not in recovery (promoted?)"
        if not self.streaming and self.streamed is None:
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
    first: lag read from them is overstated by that much at most, never understated. Entries
    count for :attr:`KEEP` seconds, longer than PostgreSQL's ``wal_receiver_timeout`` (60 s),
    after which a replica cut off from its primary says so itself; then they are forgotten,
    so a failover to a standby that had not received everything costs the replicas at most
    that long. A position the primary reports below one learnt earlier means such a new
    primary: the positions past it are forgotten at once.
    """

    SPACING = 0.1  # seconds
    KEEP = 120.0  # seconds

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._positions = []  # increasing
        self._times = []  # clock() at which each was first learnt
        self._lock = threading.Lock()

    def learn(self, position, *, from_primary=False):
        """Record that the primary has reached ``position`` (told by the primary itself, or
        by a client's pin cookie)."""
        if position is None:
            return
        if self._positions and position <= self._positions[-1] and not from_primary:
            return  # the fast path: nothing new, no lock
        now = self.clock()
        with self._lock:
            if from_primary:  # the primary is the authority on where it is
                del_from = bisect.bisect_right(self._positions, position)
                del self._positions[del_from:], self._times[del_from:]
            if self._positions and position <= self._positions[-1]:
                return
            stale = bisect.bisect_left(self._times, now - self.KEEP)
            del self._positions[:stale], self._times[:stale]
            if self._times and now - self._times[-1] < self.SPACING:
                self._positions[-1] = position
            else:
                self._positions.append(position)
                self._times.append(now)

    def lag(self, replayed):
        """Return the seconds since the primary was first known to be past ``replayed``, by
        the positions learnt in the last :attr:`KEEP` seconds."""
        if replayed is None:
            return 0.0
        now = self.clock()
        with self._lock:
            kept = bisect.bisect_left(self._times, now - self.KEEP)
            first_past = max(bisect.bisect_right(self._positions, replayed), kept)
            if first_past == len(self._positions):
                return 0.0
            return now - self._times[first_past]


class ReplicaLag:
    """The last look at every replica, shared by the threads of the process.

    ``clock`` (``time.monotonic``) dates the looks; tests give one they move by hand.
    """

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._states = {}  # alias -> ReplicaState
        self._looking = set()  # aliases one thread is looking at right now
        self.primary_positions = PrimaryPositions(clock)

    def state(self, alias):
        """Return the last look at ``alias``, or None."""
        return self._states.get(alias)

    def stale(self, alias):
        """Return True when the last look at ``alias`` is older than :data:`WINDOW`."""
        state = self._states.get(alias)
        return state is None or self.clock() - state.seen >= WINDOW

    def may_serve(self, alias, position):
        """Return True when the router may send a reader that must see ``position`` to
        ``alias``: its last look says so, or is stale enough to look again first."""
        return self.stale(alias) or self.serves(alias, position)

    def serves(self, alias, position):
        """Return True when the last look at ``alias`` lets a reader that must see
        ``position`` read there."""
        state = self._states.get(alias)
        return state is not None and state.serves(position, settings.REPLICA_MAX_LAG_SECONDS)

    def promoted(self, alias):
        """Return True when the last look found ``alias`` out of recovery: a primary now."""
        state = self._states.get(alias)
        return state is not None and not state.in_recovery

    def claim(self, alias):
        """Return True to the one caller that should look at ``alias`` now.

        With no look at all yet, every caller looks: there is nothing else to go on.
        """
        if not self.stale(alias):
            return False
        if alias in self._looking:  # set operations are atomic under the GIL
            return alias not in self._states
        self._looking.add(alias)
        return True

    def look(self, alias, connection):
        """Ask the replica through psycopg ``connection`` how it is doing; record it.

        Only for a caller :meth:`claim` chose; raises what the query raises.
        """
        try:
            row = connection.execute(STATE_SQL).fetchone()
            state = ReplicaState.from_row(row, self.clock())
            known = self.primary_positions.lag(state.position)
            if state.lag is not None and known > state.lag:
                state = dataclasses.replace(state, lag=known)
            self._record(alias, self._since_streaming(state, self._states.get(alias)))
        finally:
            self._looking.discard(alias)

    @staticmethod
    def _since_streaming(state, before):
        """Return ``state`` with when the replica last streamed, and how far behind it may be."""
        if state.streaming:
            return dataclasses.replace(state, streamed=state.seen, streamed_lag=state.lag or 0.0)
        if before is None or before.streamed is None:
            return state
        behind = before.streamed_lag + state.seen - before.streamed
        return dataclasses.replace(
            state,
            streamed=before.streamed,
            streamed_lag=before.streamed_lag,
            lag=max(state.lag or 0.0, behind),
        )

    def _record(self, alias, state):
        max_lag = settings.REPLICA_MAX_LAG_SECONDS
        before = self._states.get(alias)
        self._states[alias] = state
        was = before.problem(max_lag) if before is not None else None
        now = state.problem(max_lag)
        if now is not None and was is None:
            logger.warning("Database replica %r is skipped: %s.", alias, now)
        elif now is None and was is not None:
            logger.warning("Database replica %r caught up; reading from it.", alias)


lag = ReplicaLag()
