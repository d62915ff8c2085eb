"""``connection_budget``: the most server connections one app server opens, and whether N of
them fit the database servers (``config.budget`` does the counting)."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from psycopg import DatabaseError

from config import budget
from config.aliases import DEFAULT, DIRECT


class Command(BaseCommand):
    help = (
        "Count the most database connections one app server opens (gunicorn.conf.py's workers "
        "and threads; each alias's persistent connections or pool) and compare N app servers "
        "with each server's usable slots (max_connections less the reserved ones and what "
        "other roles hold). Exits with status 1 when they do not fit."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--app-servers",
            type=int,
            default=1,
            help="how many app servers share the database servers (default 1)",
        )
        parser.add_argument(
            "--gunicorn-config",
            default=budget.GUNICORN_CONFIG,
            help="gunicorn's config file (default: the project's gunicorn.conf.py); it sees "
            "WEB_CONCURRENCY and GUNICORN_CMD_ARGS as gunicorn does, not gunicorn's command line",
        )

    def handle(self, *args, app_servers, gunicorn_config, **options):
        if app_servers < 1:
            raise CommandError("--app-servers must be 1 or more.")
        shape = budget.read_gunicorn(gunicorn_config)
        problems = []
        for server in budget.servers(settings.DATABASES, shape):
            try:
                server.ask()
            except DatabaseError as error:  # psycopg's
                message = f"The server of {server.alias!r} did not answer: {error}"
                if server.alias == DEFAULT:
                    raise CommandError(message) from error
                self.stdout.write(message)  # the app serves without the others, too
                continue
            self.report(server, app_servers)
            problems += budget.shortfalls(server, app_servers)
        if DIRECT in settings.DATABASES:
            self.stdout.write(
                f"Not counted: {DIRECT!r}, which only migrate and dbshell use, a connection "
                "each while they run."
            )
        if problems:
            raise CommandError("\n".join(problems), returncode=1)
        self.stdout.write(f"{app_servers} app server(s) fit.")

    def report(self, server, app_servers):
        write = self.stdout.write
        write(f"Connections to the server of {server.alias!r}, per app server:")
        for demand in server.demands:
            write(f"  {demand.alias:<10} {demand.connections:>5}  {demand.how}")
        write(f"  {'total':<10} {server.clients():>5}")
        clients = server.clients(app_servers)
        if server.pooler is not None:
            write(
                f"  these end at {server.pooler.name}, which opens at most "
                f"{server.pooler.server_connections} to the server ({server.pooler.how}) and "
                f"takes {server.pooler.max_clients} clients; {app_servers} app server(s) open "
                f"{clients} to it"
            )
        write(f"  the server: {server.slots}")
        taken = server.connections(app_servers)
        write(f"  {app_servers} app server(s): {taken} of {server.slots.usable} usable")
