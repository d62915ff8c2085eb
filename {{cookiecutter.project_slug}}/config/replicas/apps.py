from django.apps import AppConfig


class ReplicasConfig(AppConfig):
    """The read-replica router, its middleware and their system checks."""

    name = "config.replicas"
    label = "replicas"

    def ready(self):
        from config import readiness
        from config.aliases import REPLICA_PREFIX
        from config.replicas import checks  # noqa: F401  (registers the system checks)
        from config.replicas.lag import probe_report, state_sql

        readiness.register(REPLICA_PREFIX, state_sql, probe_report)
