"""Commands that change the schema or need a session run on ``direct`` unless told otherwise."""

import pytest
from django.core.management import call_command
from django.core.management.commands.dbshell import Command as DjangoDbshell
from django.core.management.commands.migrate import Command as DjangoMigrate

from config.management.commands.dbshell import Command as Dbshell
from config.management.commands.migrate import Command as Migrate


def database_option(*args, command=Migrate, name="migrate"):
    return command().create_parser("manage.py", name).parse_args(args).database


def test_migrate_defaults_to_the_direct_alias():
    assert database_option() == "direct"


def test_migrate_still_accepts_another_alias():
    assert database_option("--database", "default") == "default"


def test_migrate_is_djangos_migrate():
    assert issubclass(Migrate, DjangoMigrate)


@pytest.mark.django_db(databases=["default", "direct"])  # migrate sets lock_timeout there
def test_call_command_migrate_runs_on_the_direct_alias(monkeypatch):
    used = []
    monkeypatch.setattr(DjangoMigrate, "handle", lambda self, **options: used.append(options))
    call_command("migrate", verbosity=0)
    assert used[0]["database"] == "direct"


def test_dbshell_defaults_to_the_direct_alias():
    assert database_option(command=Dbshell, name="dbshell") == "direct"


def test_dbshell_still_accepts_another_alias():
    args = ("--database", "default")
    assert database_option(*args, command=Dbshell, name="dbshell") == "default"


def test_dbshell_is_djangos_dbshell():
    assert issubclass(Dbshell, DjangoDbshell)
