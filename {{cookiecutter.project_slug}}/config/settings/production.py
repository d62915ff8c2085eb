"""Settings for production: every secret from the environment, TLS everywhere."""

from config import database, env

from .base import *  # noqa: F403

SECRET_KEY = env.string(
    "DJANGO_SECRET_KEY",
    expected="a long random string, e.g. from "
    "python -c 'import secrets; print(secrets.token_urlsafe(50))'",
)
ALLOWED_HOSTS = env.strings(
    "DJANGO_ALLOWED_HOSTS", expected="the comma-separated host names the site answers to"
)
CSRF_TRUSTED_ORIGINS = env.strings("DJANGO_CSRF_TRUSTED_ORIGINS", [])

# DATABASE_URL is required here and connections use TLS unless the URL says otherwise.
DATABASES = database.databases(sslmode="require")

# WhiteNoise serves the files collectstatic gathered in STATIC_ROOT: names carry a hash
# of the content, so browsers cache them for good, and compressed copies are sent to
# clients that accept them.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# TLS ends at the load balancer, which tells Django the original scheme.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.boolean("DJANGO_SECURE_SSL_REDIRECT", True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.integer("DJANGO_SECURE_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
