"""ASGI entry point; defaults to the production settings and Django's connection pool.

Under ASGI a persistent connection (``CONN_MAX_AGE``) is never reused: the benchmark
measured one new server session per request and ran out of server connections. Django's
psycopg pool is shared by every request of the process, so it is the default here.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
os.environ.setdefault("DATABASE_POOL", "true")

application = get_asgi_application()
