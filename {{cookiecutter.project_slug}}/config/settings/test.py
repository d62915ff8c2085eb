"""Settings for the test suite."""

from .base import *  # noqa: F403

SECRET_KEY = "django-insecure-test-only"  # noqa: S105 (a key for tests only)
ALLOWED_HOSTS = ["testserver"]

# Hashing passwords slowly protects real users, not test fixtures.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
{% if cookiecutter.use_read_replica %}

# Without DATABASE_REPLICA_URLS every read would go to the primary and the router would go
# untested: replica1 is then the test database itself, read through a second connection.
if not any(alias.startswith("replica") for alias in DATABASES):  # noqa: F405
    DATABASES["replica1"] = {**DATABASES["default"], "TEST": {"MIRROR": "default"}}  # noqa: F405
{% endif %}
