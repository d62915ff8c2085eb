"""Django's PostgreSQL backend, with every wait on an open connection bounded.

``ENGINE = "config.postgresql"``; see :mod:`config.postgresql.base`.
"""
