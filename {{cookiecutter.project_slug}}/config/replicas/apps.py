from django.apps import AppConfig
from django.db.backends.signals import connection_created

from config.aliases import PRIMARIES, REPLICA_PREFIX
from config.replicas.pinning import note_writes


class ReplicasConfig(AppConfig):
    """The read-replica router, its backend and middleware, and their system checks."""

    name = "config.replicas"
    label = "replicas"

    def ready(self):
        from config import readiness
        from config.replicas import checks  # noqa: F401  (registers the system checks)
        from config.replicas.readiness import report

        readiness.reports[REPLICA_PREFIX] = report
        connection_created.connect(note_writes_on_primaries)


def note_writes_on_primaries(sender, connection, **kwargs):
    """Have every statement on a primary pin the context when it writes (``note_writes``)."""
    if connection.alias in PRIMARIES and note_writes not in connection.execute_wrappers:
        connection.execute_wrappers.append(note_writes)
