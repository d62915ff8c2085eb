from django.apps import AppConfig


class ConfigConfig(AppConfig):
    """The project's infrastructure: settings helpers, probes and system checks."""

    name = "config"

    def ready(self):
{% if cookiecutter.use_pgbouncer %}
        from config import checks, pgbouncer  # noqa: F401  (register the system checks)
{% else %}
        from config import checks  # noqa: F401  (registers the system checks)
{% endif %}
