"""gunicorn's settings for this project, read from the project's root by ``gunicorn config.wsgi``
(and ``config.asgi``). Options on the command line win over these."""

import os

# Sync workers, each with one persistent database connection: about two per core.
# python manage.py connection_budget counts what they take of the database's connections.
workers = int(os.environ.get("WEB_CONCURRENCY", 2 * (os.cpu_count() or 1)))
# A worker silent this long is killed and replaced: above DATABASE_QUERY_TIMEOUT (20 s), so
# a hung database fails the request before it costs a worker.
timeout = 30
# Workers finish the requests in flight on SIGTERM (a deploy) for this long.
graceful_timeout = 30
# Keep-alive behind a load balancer that reuses its connections.
keepalive = 5
# No control socket (gunicorn 25.1+ opens one under $HOME by default): nothing here uses it.
control_socket_disable = True
