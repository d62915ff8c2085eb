"""Settings for staging: production, with its own credentials, minus HSTS preload."""

from config import env

from .production import *  # noqa: F403

# A staging host must never reach the browsers' HSTS preload list, and a short
# max-age lets a broken TLS set-up be rolled back within the hour.
SECURE_HSTS_PRELOAD = False
SECURE_HSTS_SECONDS = env.integer("DJANGO_SECURE_HSTS_SECONDS", 3600)
SILENCED_SYSTEM_CHECKS = ["security.W021"]  # HSTS preload is off on purpose, see above.
