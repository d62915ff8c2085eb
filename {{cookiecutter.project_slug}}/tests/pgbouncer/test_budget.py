"""PgBouncer's part of the connection budget: its pool, not the app servers, bounds the server."""

from config.budget import Demand, Server, Slots, shortfalls
from config.pgbouncer.budget import pooler

SLOTS = Slots(max_connections=100, superuser_reserved=3, reserved=0, others=0)


def behind_pgbouncer(per_app_server, ini=None):
    demands = [Demand("default", per_app_server, "")]
    server = Server("default", demands, pooler({"NAME": "app"}, ini))
    server.slots = SLOTS
    return server


def test_the_shipped_pool_bounds_the_server_connections_whatever_the_app_servers():
    server = behind_pgbouncer(8)
    assert server.pooler.server_connections == 20 + 5  # default_pool_size + reserve_pool_size
    assert (server.connections(1), server.connections(100)) == (8, 25)


def test_a_database_line_and_max_db_connections_change_the_pool(tmp_path):
    ini = tmp_path / "pgbouncer.ini"
    ini.write_text(
        "[databases]\napp = host=db port=5432 pool_size=50\n"
        "[pgbouncer]\nreserve_pool_size = 5\nmax_db_connections = 40\n"
    )
    assert behind_pgbouncer(8, ini).pooler.server_connections == 40


def test_a_pool_larger_than_the_server_is_a_shortfall(tmp_path):
    ini = tmp_path / "pgbouncer.ini"
    ini.write_text("[pgbouncer]\ndefault_pool_size = 200\nmax_client_conn = 1000\n")
    (problem,) = shortfalls(behind_pgbouncer(8, ini), app_servers=30)
    assert "200 connections" in problem
    assert "a smaller pool in PgBouncer" in problem


def test_more_clients_than_max_client_conn_is_a_shortfall():
    (problem,) = shortfalls(behind_pgbouncer(8), app_servers=200)
    assert "1600 client connections to PgBouncer, which takes 1000" in problem
