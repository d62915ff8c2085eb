"""Benchmark settings: the project's production settings plus the benchmark app.

Copied into a baked project by bench/servers.py at run time; never part of the template.
"""

import os

from config.settings.production import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "benchapp"]  # noqa: F405
ROOT_URLCONF = "bench_urls"
# The load speaks plain HTTP on loopback, where a client drops Secure cookies (the replica
# pin among them); behind a TLS-terminating balancer a browser sends them back.
SESSION_COOKIE_SECURE = False

# Extra benchmark-only configuration (bench/run --extra): persistent connections without
# Django's health checks, to price them.
if os.environ.get("BENCH_CONN_HEALTH_CHECKS") == "false":
    for _database in DATABASES.values():  # noqa: F405
        _database["CONN_HEALTH_CHECKS"] = False

# Peers' published production database settings, on Django's own backend (BENCH_PEER).
# cookiecutter-django (config/settings/{base,production}.py at 9bef46c1):
#   ATOMIC_REQUESTS=True, CONN_MAX_AGE=60, no health checks.
# wemake-django-template (server/settings/components/common.py at cb305ef0):
#   CONN_MAX_AGE=60, connect_timeout=10, statement_timeout as a startup option.
PEERS = {
    "cookiecutter-django": {"ATOMIC_REQUESTS": True, "CONN_MAX_AGE": 60},
    "wemake": {
        "CONN_MAX_AGE": 60,
        "OPTIONS": {"connect_timeout": 10, "options": "-c statement_timeout=15000ms"},
    },
}
if _peer := os.environ.get("BENCH_PEER"):
    _ours = DATABASES["default"]  # noqa: F405
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            **{key: _ours[key] for key in ("NAME", "USER", "PASSWORD", "HOST", "PORT")},
            **PEERS[_peer],
            "OPTIONS": {"sslmode": _ours["OPTIONS"]["sslmode"], **PEERS[_peer].get("OPTIONS", {})},
        }
    }

# Today's fixed pin, for the mixed workload's comparison (BENCH_FIXED_PIN=seconds): a client
# that wrote reads from the primary for the cookie's whole lifetime, whatever the replicas
# have replayed, as the template did before position pins.
if _fixed := os.environ.get("BENCH_FIXED_PIN"):
    from config.replicas.lag import ReplicaLag

    REPLICA_PIN_SECONDS = float(_fixed)
    REPLICA_MAX_LAG_SECONDS = REPLICA_PIN_SECONDS / 2
    _may_serve, _serves = ReplicaLag.may_serve, ReplicaLag.serves
    ReplicaLag.may_serve = lambda self, alias, position: (  # type: ignore[method-assign]
        position is None and _may_serve(self, alias, position)
    )
    ReplicaLag.serves = lambda self, alias, position: (  # type: ignore[method-assign]
        position is None and _serves(self, alias, position)
    )
