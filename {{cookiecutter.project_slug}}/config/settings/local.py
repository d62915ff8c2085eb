"""Settings for a developer's machine: debug on, local database by default."""

from config import env

from .base import *  # noqa: F403

DEBUG = env.boolean("DJANGO_DEBUG", True)
SECRET_KEY = env.string("DJANGO_SECRET_KEY", "django-insecure-local-development-only")
ALLOWED_HOSTS = env.strings("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
