"""Settings for the test suite."""

from .base import *  # noqa: F403

SECRET_KEY = "django-insecure-test-only"  # noqa: S105 (a key for tests only)
ALLOWED_HOSTS = ["testserver"]

# Hashing passwords slowly protects real users, not test fixtures.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
