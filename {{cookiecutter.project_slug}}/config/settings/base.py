"""Settings shared by every environment.

Each environment module (local, test, staging, production) imports these and
changes only what differs. Values that vary per deploy come from the environment
through ``config.env``; the database comes from ``config.database``.
"""

from pathlib import Path

from config import database, env
{% if cookiecutter.use_read_replica %}
from config.replicas.settings import *  # noqa: F403  (DATABASE_ROUTERS, REPLICA_*)
{% endif %}

BASE_DIR = Path(__file__).resolve().parent.parent.parent

DEBUG = False
ALLOWED_HOSTS: list[str] = []

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "config",
{% if cookiecutter.use_pgbouncer %}
    "config.pgbouncer",
{% endif %}
{% if cookiecutter.use_read_replica %}
    "config.replicas",
{% endif %}
    "users",
    "{{ cookiecutter.project_slug }}",
]

MIDDLEWARE = [
    "config.probes.ProbeMiddleware",
{% if cookiecutter.use_read_replica %}
    "config.replicas.middleware.ReadYourWritesMiddleware",
{% endif %}
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Local development and tests default to a database on the local Unix socket.
DATABASES = database.databases(default_url="postgres:///{{ cookiecutter.project_slug }}")
# manage.py migrate waits at most this many seconds for a lock (0: no limit), so requests never
# queue behind a schema change for longer; it then pauses and tries again, at most this many
# times in a run (docs/migrations.md).
MIGRATION_LOCK_TIMEOUT = env.seconds("DATABASE_MIGRATION_LOCK_TIMEOUT", 2.0)
MIGRATION_LOCK_RETRIES = env.integer("DATABASE_MIGRATION_LOCK_RETRIES", 5)
# Who sees /readyz/'s details (aliases, latencies, lag, errors) besides loopback clients:
# named, never guessed from "private" ranges, which SNAT and proxies give every client.
READYZ_DETAILS_NETWORKS = env.networks("DJANGO_READYZ_DETAILS_NETWORKS")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Set before the first migration: Django cannot swap the user model afterwards.
AUTH_USER_MODEL = "users.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "{asctime} {levelname} {name} {message}", "style": "{"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {
        "handlers": ["console"],
        "level": env.choice("DJANGO_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
    },
    # Django's own console handler (DEBUG only) would print each of its lines a second time:
    # they reach the root's handler above anyway.
    "loggers": {"django": {"handlers": [], "propagate": True}},
}
