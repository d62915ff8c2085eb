"""Throwaway PostgreSQL and PgBouncer servers for the template's tests and benchmark.

Every server lives in its own temporary directory, listens on 127.0.0.1 on a port
outside the kernel's ephemeral range and is torn down by ``close()`` (or by leaving its
``with`` block, or by an ``atexit`` hook as a last resort).

PostgreSQL and PgBouncer refuse to run as root, so when the tests run as root every
server process is started as an unprivileged account: ``$PG_HARNESS_USER`` if set,
otherwise the ``postgres`` system user.

``ShippedPgBouncer`` runs a project's own deploy/pgbouncer/pgbouncer.ini instead of the
harness's configuration, with only addresses, ports and paths changed (``local_ini``).

The package only needs the standard library and psycopg 3, so it can be used from pytest
fixtures, scripts or a REPL alike::

    with Primary() as primary, Replica(primary) as replica, PgBouncer(primary) as bouncer:
        primary.execute("CREATE TABLE t (id int)", dbname="app")
        replica.wait_for_replay()
        print(bouncer.url())

``Restored(primary, restore)`` starts a server from a data directory that ``restore`` made,
such as a backup tool's restore; ``Replica(primary, clone=...)`` does so for a standby.

``PatroniCluster(shipped)`` runs a three-member etcd and two Patroni members, each managing its
own PostgreSQL, from a project's deploy/patroni/patroni.yml with only addresses, ports, paths
and passwords changed (``devtools/harness/patroni.py``).
"""

from devtools.harness.errors import HarnessError
from devtools.harness.host import ServerUser, pg_bindir, pgbouncer_path, server_user
from devtools.harness.patroni import Etcd, PatroniCluster, PatroniMember
from devtools.harness.pgbouncer import PgBouncer, ShippedPgBouncer, local_ini
from devtools.harness.ports import EPHEMERAL_PORTS, LOOPBACK, SERVER_PORTS, pick_port
from devtools.harness.postgres import (
    APP_DB,
    APP_USER,
    REPLICATION_USER,
    SUPERUSER,
    Primary,
    Replica,
    Restored,
)

__all__ = [
    "APP_DB",
    "APP_USER",
    "EPHEMERAL_PORTS",
    "LOOPBACK",
    "REPLICATION_USER",
    "SERVER_PORTS",
    "SUPERUSER",
    "Etcd",
    "HarnessError",
    "PatroniCluster",
    "PatroniMember",
    "PgBouncer",
    "Primary",
    "Replica",
    "Restored",
    "ServerUser",
    "ShippedPgBouncer",
    "local_ini",
    "pg_bindir",
    "pgbouncer_path",
    "pick_port",
    "server_user",
]
