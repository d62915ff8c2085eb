"""Settings for a developer's machine: debug on, local database by default, ``.env`` read."""

from config import env

env.read_dotenv()  # before base builds DATABASES from the environment

from .base import *  # noqa: E402, F403

DEBUG = env.boolean("DJANGO_DEBUG", True)
SECRET_KEY = env.string("DJANGO_SECRET_KEY", "django-insecure-local-development-only")
ALLOWED_HOSTS = env.strings("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
