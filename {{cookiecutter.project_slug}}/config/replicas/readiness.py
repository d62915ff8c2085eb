"""What ``/readyz/`` tells of the replicas: what the process knows, never a probe of its own.

A replica that is down or hangs must not slow the readiness answer, and does not decide it.
"""

from django.conf import settings

from config.replicas.cooldown import cooldown
from config.replicas.lag import lag


def report(alias):
    """Return what the process knows of replica ``alias``: skipped or not, and why."""
    state = lag.state(alias)
    problem = state.problem(settings.REPLICA_MAX_LAG_SECONDS) if state else None
    if cooldown.cooling(alias):
        problem = "it failed recently"
    entry = {
        "skipped": problem is not None,
        "lag_seconds": None if state is None or state.lag is None else round(state.lag, 3),
        "streaming": None if state is None else state.streaming,
        "seen_seconds_ago": None if state is None else round(lag.clock() - state.seen, 1),
    }
    if problem is not None:
        entry["error"] = problem
    return entry
