"""Reads on the read replicas, read-your-writes on the primary.

:mod:`~config.replicas.router` decides where each query goes, from what the process knows;
:mod:`~config.replicas.backend` moves a read the chosen replica cannot serve to the primary;
:mod:`~config.replicas.pinning` holds the per-context state that sends reads to the primary
(and :func:`use_primary`); :mod:`~config.replicas.cooldown` and :mod:`~config.replicas.lag`
are what the process knows of each replica; :mod:`~config.replicas.middleware` carries a
client's pin from one request to the next. See docs/read-replicas.md.
"""

from config.replicas.pinning import use_primary

__all__ = ["use_primary"]
