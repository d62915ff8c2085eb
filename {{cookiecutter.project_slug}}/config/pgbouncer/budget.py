"""PgBouncer's part of the connection budget (``config.budget``).

The app servers' ``default`` connections end at PgBouncer, which opens at most
``default_pool_size + reserve_pool_size`` server connections per database and role, however
many app servers there are. The figures come from the shipped ``pgbouncer.ini``: deploy that
file, or change it with the one you deploy.
"""

import configparser

from django.conf import settings

from config.budget import Pooler

INI = "deploy/pgbouncer/pgbouncer.ini"
# PgBouncer's own defaults, for what the file leaves out.
DEFAULTS = {
    "default_pool_size": "20",
    "reserve_pool_size": "0",
    "max_db_connections": "0",
    "max_user_connections": "0",
    "max_client_conn": "100",
}


def pooler(config, path=None):
    """Return the :class:`~config.budget.Pooler` the ini file at ``path`` (the shipped one by
    default) makes of PgBouncer, for the database of ``config`` (a ``DATABASES`` entry)."""
    ini = configparser.ConfigParser(
        delimiters=("=",), comment_prefixes=(";", "#"), interpolation=None, strict=False
    )
    ini.read_string((path or settings.BASE_DIR / INI).read_text())
    main = DEFAULTS | dict(ini["pgbouncer"])
    databases = dict(ini["databases"]) if ini.has_section("databases") else {}
    line = databases.get(config["NAME"], databases.get("*", ""))
    database = dict(pair.split("=", 1) for pair in line.split() if "=" in pair)
    pool = int(database.get("pool_size", main["default_pool_size"]))
    reserve = int(database.get("reserve_pool_size", main["reserve_pool_size"]))
    # max_db_connections and max_user_connections cap every pool of theirs, 0 meaning none.
    caps = [database.get("max_db_connections", main["max_db_connections"])]
    caps.append(main["max_user_connections"])
    most = min([pool + reserve, *(int(cap) for cap in caps if int(cap))])
    how = f"{INI}: pool_size {pool} + reserve_pool_size {reserve} for {config['NAME']!r}"
    return Pooler("PgBouncer", most, how, int(main["max_client_conn"]))
