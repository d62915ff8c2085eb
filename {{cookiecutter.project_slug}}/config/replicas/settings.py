"""The read-replica settings; ``config/settings/base.py`` imports them all.

See docs/read-replicas.md for what each one trades.
"""

from config import env

__all__ = [
    "DATABASE_ROUTERS",
    "REPLICA_COOLDOWN_SECONDS",
    "REPLICA_MAX_LAG_SECONDS",
    "REPLICA_PIN_SECONDS",
]

DATABASE_ROUTERS = ["config.replicas.router.PrimaryReplicaRouter"]
# A replica further behind than this is skipped by every client until it catches up.
REPLICA_MAX_LAG_SECONDS = env.seconds("DATABASE_REPLICA_MAX_LAG_SECONDS", 10.0, minimum=0.1)
# The longest a client's pin cookie lasts; it must outlive the lag limit (replicas.E004).
REPLICA_PIN_SECONDS = env.seconds("DATABASE_REPLICA_PIN_SECONDS", 30.0)
# How long a replica that failed a connection or a query is skipped.
REPLICA_COOLDOWN_SECONDS = env.seconds("DATABASE_REPLICA_COOLDOWN_SECONDS", 10.0)
