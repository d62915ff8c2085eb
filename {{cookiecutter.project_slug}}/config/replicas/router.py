"""Send reads to the read replicas and everything else to the primary.

``PrimaryReplicaRouter`` decides per query, in this order:

1. Inside ``transaction.atomic()`` on a primary, reads and writes use that primary: the
   transaction's own rows are visible only there.
2. Writes go to the primary, and the rest of the request (or task) reads from the primary
   too. Django routes ``select_for_update()``, ``get_or_create()``, ``update_or_create()``
   and its validation queries with ``db_for_write()`` as well. Only a statement that
   changed data pins the client beyond the request, whether the router saw it or not (raw
   SQL, ``.using()``): ``config.replicas.pinning.note_writes`` judges by the command tag.
3. Reads of the models that keep users logged in (see ``PRIMARY_APPS``) always go to
   the primary, so replication lag can never make a fresh session look invalid.
4. Reads in a pinned context (``use_primary()``, an earlier write) go to the primary.
5. Other reads go to a replica that is not cooling down after a failure and, by its last
   look, is not lagging and has replayed the WAL position the client's pin cookie asks
   for; to the primary when none is.

The router makes no blocking call (Django routes async ORM calls in the event loop): it
decides from what the process already knows. What is learnt only when the read runs (the
replica is down, hangs, or lags by a fresher look) is handled by the replicas' backend,
``config.replicas.backend``, which reads from the primary instead. An instance loaded from
a database that is not one of these is not this router's to place: it answers ``None``, so
Django asks the next router, or keeps the instance where it came from. See
docs/read-replicas.md.
"""

import random

from django.conf import settings
from django.db import connections

from config.aliases import DEFAULT, PRIMARIES, REPLICA_PREFIX
from config.replicas.cooldown import cooldown
from config.replicas.lag import lag
from config.replicas.pinning import pinned, required_position, routed_to_primary

# Apps whose every read goes to the primary. A replica a few seconds behind would not
# know a session created by the login that just happened, nor a password just changed,
# and would log the user out or let an old password in: sessions, users, groups and
# permissions are read from the primary. Content types are included because permission
# checks and generic relations look them up, and a content type created by a migration
# must not look missing; they are cached per process, so this costs almost nothing.
PRIMARY_APPS = frozenset({"auth", "contenttypes", "sessions"})


class PrimaryReplicaRouter:
    """Route reads to the replicas and writes to the primary (see the module docstring).

    The aliases are read from ``DATABASES`` once (names in ``config.aliases``).
    """

    def __init__(self):
        databases = settings.DATABASES
        self.primaries = tuple(alias for alias in PRIMARIES if alias in databases)
        self.replicas = tuple(alias for alias in databases if alias.startswith(REPLICA_PREFIX))
        self.known = frozenset(self.primaries + self.replicas)
        self.owned = self.known | {None}  # an unsaved instance is anyone's to place
        self.user_model = settings.AUTH_USER_MODEL.lower()

    def db_for_read(self, model, **hints):
        """Return the alias to read ``model`` from: a replica unless a rule says primary."""
        if not self.owns(hints):
            return None
        in_transaction = self.primary_in_transaction()
        if in_transaction is not None:
            return in_transaction
        if not self.replicas or pinned() or self.reads_from_primary(model):
            return DEFAULT
        return self.choose_replica(required_position()) or DEFAULT

    def db_for_write(self, model, **hints):
        """Return the primary, and send the current context's reads that follow there too.

        The alias is always explicit: left to Django, an instance read from a replica
        would be saved back to that replica.
        """
        if not self.owns(hints):
            return None
        routed_to_primary()
        return self.primary_in_transaction() or DEFAULT

    def allow_relation(self, obj1, obj2, **hints):
        """Allow relations between rows of the primary and its replicas: they hold the same data."""
        return True if {obj1._state.db, obj2._state.db} <= self.known else None

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        """Migrate the primaries only: replicas receive the schema through replication."""
        return db in self.primaries if db in self.known else None  # None: not ours to decide

    def owns(self, hints):
        """Return False for a query about an instance loaded from a database not ours."""
        return (instance := hints.get("instance")) is None or instance._state.db in self.owned

    def primary_in_transaction(self):
        """Return the primary alias inside ``atomic()``, or None.

        ``in_atomic_block`` is a plain attribute: checking it never opens a connection.
        """
        for alias in self.primaries:
            if connections[alias].in_atomic_block:
                return alias
        return None

    def reads_from_primary(self, model):
        """Return True for the models that must never be read from a replica."""
        meta = model._meta
        return meta.app_label in PRIMARY_APPS or meta.label_lower == self.user_model

    def choose_replica(self, position):
        """Return a replica fit to serve a reader that must see WAL ``position``, or None.

        A replica this thread is already connected to is kept, so one request reads from
        one replica (one snapshot source, one connection). Otherwise one is picked at
        random: every worker process chooses on its own, and a per-process round-robin
        counter would send the first connection of every worker to the same replica.
        """
        fit = [alias for alias in self.replicas if lag.may_serve(alias, position)]
        for alias in fit:
            if connections[alias].connection is not None and cooldown.ready(alias):
                return alias
        random.shuffle(fit)
        for alias in fit:
            if cooldown.ready(alias):
                return alias
        return None
