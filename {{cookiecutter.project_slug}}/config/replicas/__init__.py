"""Reads on the read replicas, read-your-writes on the primary.

:mod:`~config.replicas.router` decides where each query goes, :mod:`~config.replicas.pinning`
holds the per-context state that sends reads to the primary (and :func:`use_primary`),
:mod:`~config.replicas.health` and :mod:`~config.replicas.selection` skip replicas that do
not answer, and :mod:`~config.replicas.middleware` carries a client's pin from one request
to the next. See docs/read-replicas.md.
"""

from config.replicas.pinning import use_primary

__all__ = ["use_primary"]
