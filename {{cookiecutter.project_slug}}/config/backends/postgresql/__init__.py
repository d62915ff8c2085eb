"""Django's PostgreSQL backend with every wait on the server bounded.

``ENGINE = "config.backends.postgresql"``; see :mod:`config.backends.postgresql.base`.
"""
