"""ASGI entry point; defaults to the production settings and Django's connection pool.

Under ASGI every request gets database connections of its own, so persistent connections
(``CONN_MAX_AGE``) are never reused; as Django's documentation advises, a pool
(``DATABASE_POOL``) keeps connections between requests instead.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
os.environ.setdefault("DATABASE_POOL", "true")

application = get_asgi_application()
