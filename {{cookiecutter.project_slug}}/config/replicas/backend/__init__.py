"""The backend of the read replicas: ``ENGINE = "config.replicas.backend"``.

See :mod:`config.replicas.backend.base`.
"""
