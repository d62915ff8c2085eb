from django.apps import AppConfig


class ReplicasConfig(AppConfig):
    """The read-replica router, its middleware and their system checks."""

    name = "config.replicas"
    label = "replicas"

    def ready(self):
        from config.replicas import checks  # noqa: F401  (registers the system checks)
