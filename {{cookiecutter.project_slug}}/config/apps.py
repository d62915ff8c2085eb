from django.apps import AppConfig


class ConfigConfig(AppConfig):
    """The project's infrastructure: settings helpers, probes and system checks."""

    name = "config"

    def ready(self):
        from config import checks  # noqa: F401  (registers the system checks)
