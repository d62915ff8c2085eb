"""Settings for the test suite."""

from config import env
{% if cookiecutter.use_read_replica %}
from config.replicas.databases import mirrored
{% endif %}

env.read_dotenv()  # the suite runs against the database the developer's .env names

from .base import *  # noqa: E402, F403
{% if cookiecutter.use_read_replica %}
from .base import DATABASES  # noqa: E402
{% endif %}

SECRET_KEY = "django-insecure-test-only"  # noqa: S105 (a key for tests only)
ALLOWED_HOSTS = ["testserver"]

# Hashing passwords slowly protects real users, not test fixtures.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Tests collect no static files: WhiteNoise finds them per request, as under DEBUG,
# instead of scanning a STATIC_ROOT that does not exist.
WHITENOISE_AUTOREFRESH = True
{% if cookiecutter.use_read_replica %}

DATABASES = mirrored(DATABASES)  # one replica, reading the test database itself
{% endif %}
