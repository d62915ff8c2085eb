"""The connection budget: the most server connections one app server opens, against the slots
the database server has for them.

``manage.py connection_budget`` prints it and ``check --deploy --database default`` warns from
it. No stock piece adds this up: gunicorn knows its workers and threads but not the database,
Django knows its aliases and pools but not how many processes and threads will run them, and
PostgreSQL knows its slots but not who will ask for them.
"""

import runpy
from dataclasses import dataclass, field
from pathlib import Path

from django.db import connections

from config.aliases import DEFAULT, DIRECT
from config.backends.postgresql.base import BoundedConnection

# Where gunicorn finds its config: the project's root, from which it is started.
GUNICORN_CONFIG = Path(__file__).resolve().parent.parent / "gunicorn.conf.py"
# One app server may take at most this share of the primary's usable slots: a rolling deploy
# runs the old and the new one side by side, and migrations, cron jobs and administrators
# need the rest.
SHARE = 0.5
# psycopg_pool's own defaults, for a pool given as OPTIONS["pool"] = True.
POOL_MIN_SIZE = 4

# alias -> function(settings_dict) -> Pooler, for an alias whose connections end at a pooler
# that opens its own to the server (the pooler option's app registers one when it is ready).
poolers: dict = {}


@dataclass(frozen=True)
class Gunicorn:
    """What gunicorn runs: ``workers`` processes, each serving ``concurrency`` requests at once."""

    workers: int
    concurrency: int
    worker_class: str
    per_worker: str  # how concurrency came about, for the report


def read_gunicorn(path):
    """Return the :class:`Gunicorn` shape of the config file at ``path``, read as gunicorn reads
    it: the file's code run afresh (``WEB_CONCURRENCY`` counts as it does there), then
    ``GUNICORN_CMD_ARGS`` over it. Options on gunicorn's own command line are not seen."""
    # Imported here: every process imports this module (config.checks), few read gunicorn's
    # config, and gunicorn's takes a tenth of a second to load.
    from gunicorn.config import Config  # type: ignore[import-untyped]  # gunicorn has no types

    config = Config()
    for name, value in runpy.run_path(str(path)).items():
        if name in config.settings:
            config.set(name, value)
    from_environment = config.parser().parse_args(config.get_cmd_args_from_env())
    for name, value in vars(from_environment).items():
        if value is not None and name in config.settings:
            config.set(name, value)
    worker_class = config.worker_class_str  # "gthread" once threads > 1 for sync workers
    if worker_class == "sync":
        return Gunicorn(config.workers, 1, worker_class, "1 request at a time")
    if worker_class == "gthread":
        return Gunicorn(config.workers, config.threads, worker_class, f"{config.threads} threads")
    # An event loop (ASGI, gevent): as many requests at once as it accepts connections.
    most = config.worker_connections
    return Gunicorn(config.workers, most, worker_class, f"up to {most} requests at once")


@dataclass(frozen=True)
class Demand:
    """The most connections ``alias`` opens from one app server, and how that comes about."""

    alias: str
    connections: int
    how: str


def alias_demand(alias, config, shape):
    """Return the :class:`Demand` of ``alias`` (its ``DATABASES`` entry ``config``) under
    gunicorn's ``shape``: a connection per request served at once, or the pool's share."""
    pool = config.get("OPTIONS", {}).get("pool")
    workers = f"{shape.workers} {shape.worker_class} workers x"
    if not pool:
        max_age = config.get("CONN_MAX_AGE", 0)
        how = f"{workers} {shape.per_worker}, a connection each (CONN_MAX_AGE={max_age})"
        if shape.worker_class not in ("sync", "gthread"):
            how += "; config.asgi turns the pool on: run this with DATABASE_POOL=true"
        return Demand(alias, shape.workers * shape.concurrency, how)
    pool = {} if pool is True else pool
    least = pool.get("min_size", POOL_MIN_SIZE)
    most = pool.get("max_size") or least
    # psycopg_pool opens one more connection whenever a request finds none ready, as the
    # first request of every process does while the pool is still opening its first ones.
    per_worker = min(most, max(least, shape.concurrency) + 1)
    how = (
        f"{workers} {per_worker}: a pool (min {least}, max {most}) serving "
        f"{shape.per_worker}, +1 it opens while connecting"
    )
    return Demand(alias, shape.workers * per_worker, how)


@dataclass(frozen=True)
class Pooler:
    """A connection pooler between the app servers and the server."""

    name: str
    server_connections: int  # the most it opens to the server, whatever the app servers
    how: str
    max_clients: int


@dataclass
class Server:
    """One database server, the aliases that reach it, and its slots once :meth:`ask`\\ ed."""

    alias: str  # the alias its slots are asked on
    demands: list[Demand] = field(default_factory=list)
    pooler: Pooler | None = None
    slots: "Slots | None" = None

    def clients(self, app_servers=1):
        """The connections ``app_servers`` app servers open to it (or to its pooler)."""
        return app_servers * sum(demand.connections for demand in self.demands)

    def connections(self, app_servers=1):
        """The server connections ``app_servers`` app servers cost it."""
        if self.pooler is None:
            return self.clients(app_servers)
        return min(self.pooler.server_connections, self.clients(app_servers))

    def ask(self):
        """Ask the server for its slots (:class:`Slots`) on a connection of :attr:`alias`'s
        own, as the readiness probe does: a server that cannot answer raises, whatever the
        alias's backend would do with a statement instead."""
        settings_dict = connections[self.alias].settings_dict
        params = connections[self.alias].get_connection_params() | {"autocommit": True}
        with BoundedConnection.connect(**params) as connection:
            connection.timeout = settings_dict.get("QUERY_TIMEOUT") or None
            (row,) = connection.execute(SLOTS_SQL).fetchall()
            self.slots = Slots(*row)


def servers(databases, shape):
    """Return a :class:`Server` for each server the aliases of ``databases`` reach, the
    primary's first. ``direct`` serves no request (migrate and dbshell), so it is left out."""
    found: dict[tuple, Server] = {}
    for alias, config in databases.items():
        if alias == DIRECT:
            continue
        # Its databases share a server's slots: aliases are told apart by host and port.
        address = (config.get("HOST") or "", str(config.get("PORT") or ""))
        server = found.setdefault(address, Server(alias))
        server.demands.append(alias_demand(alias, config, shape))
        if alias in poolers:
            server.pooler = poolers[alias](config)
        if alias == DEFAULT:
            probe = "a /readyz/ probe connection per worker, open for one round at a time"
            server.demands.append(Demand("/readyz/", shape.workers, probe))
    return sorted(found.values(), key=lambda server: server.alias != DEFAULT)


# Slots left for the application's role: superusers' reserve, pg_use_reserved_connections'
# reserve (PostgreSQL 16+) and what other roles' sessions hold are not its to take.
SLOTS_SQL = """
    SELECT current_setting('max_connections')::int,
           current_setting('superuser_reserved_connections')::int,
           coalesce(current_setting('reserved_connections', true), '0')::int,
           (SELECT count(*) FROM pg_stat_activity
             WHERE backend_type = 'client backend' AND usename <> current_user)
"""


@dataclass(frozen=True)
class Slots:
    """A server's connection slots, as :data:`SLOTS_SQL` finds them."""

    max_connections: int
    superuser_reserved: int
    reserved: int
    others: int  # held by other roles' sessions now

    @property
    def usable(self):
        """The slots left for the application's role."""
        return self.max_connections - self.superuser_reserved - self.reserved - self.others

    def __str__(self):
        return (
            f"max_connections {self.max_connections} - {self.superuser_reserved} reserved "
            f"for superusers - {self.reserved} reserved_connections - {self.others} held by "
            f"other roles = {self.usable} usable"
        )


def shortfalls(server, app_servers):
    """Return what does not fit when ``app_servers`` app servers share ``server`` (its slots
    asked), each with what to change; empty when they fit."""
    usable = server.slots.usable
    problems = []
    if server.connections(app_servers) > usable:
        if server.pooler is None:
            # A sync worker needs one connection at a time: a pool (two) only helps threads
            # and event loops, by lending fewer connections than they serve requests.
            change = (
                "fewer workers or threads (WEB_CONCURRENCY), a pool smaller than the threads "
                "it serves (DATABASE_POOL=true, DATABASE_POOL_MAX_SIZE), a connection pooler "
                "in front of the server, or a higher max_connections on it"
            )
        else:
            change = f"a smaller pool in {server.pooler.name}, or a higher max_connections"
        problems.append(
            f"{app_servers} app server(s) need {server.connections(app_servers)} connections "
            f"to the server of {server.alias!r}, which has {usable} usable "
            f"({fitting(usable, server.connections())} fit): use {change}."
        )
    if server.pooler is not None and server.clients(app_servers) > server.pooler.max_clients:
        problems.append(
            f"{app_servers} app server(s) open {server.clients(app_servers)} client "
            f"connections to {server.pooler.name}, which takes {server.pooler.max_clients} "
            f"({fitting(server.pooler.max_clients, server.clients())} fit): raise its "
            "max_client_conn, or use fewer workers or threads."
        )
    return problems


def fitting(slots, per_app_server):
    """How many app servers taking ``per_app_server`` each fit in ``slots``."""
    return max(slots, 0) // per_app_server if per_app_server else "any number"
