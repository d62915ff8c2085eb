"""``migrate`` waits briefly for its locks, runs an atomic migration again, names blockers.

Against the real test database: a blocking transaction is held from a connection of its own
while ``migrate`` applies the migrations of ``tests/lock_app/``.
"""

import contextlib
import io
import re
import threading
import time

import psycopg
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from django.db.migrations.recorder import MigrationRecorder

from config.aliases import DEFAULT, DIRECT
from tests.conftest import DEPLOY_ENV

TIMEOUT = 0.2  # seconds: the lock timeout of these tests
RETRIES = 3  # pauses of 0.2, 0.4 and 0.8 s: about 2.2 s before a migration gives up
SLACK = 0.5  # how much later than its bound a wait may end, on a busy machine
OWNER = [DEFAULT, DIRECT]


def test_the_defaults_wait_two_seconds_and_retry_five_times(load_settings):
    settings = load_settings("production", **DEPLOY_ENV)
    assert settings.MIGRATION_LOCK_TIMEOUT == 2.0
    assert settings.MIGRATION_LOCK_RETRIES == 5


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("DATABASE_MIGRATION_LOCK_TIMEOUT", "soon", "a number of seconds >= 0"),
        ("DATABASE_MIGRATION_LOCK_TIMEOUT", "-1", "a number of seconds >= 0"),
        ("DATABASE_MIGRATION_LOCK_RETRIES", "2.5", "a whole number >= 0"),
    ],
)
def test_a_bad_value_names_the_variable(load_settings, name, value, expected):
    message = f"{name}='{value}' is not valid: expected {expected}."
    with pytest.raises(ImproperlyConfigured, match=f"^{re.escape(message)}$"):
        load_settings("production", **DEPLOY_ENV, **{name: value})


def test_the_direct_connection_has_no_client_side_query_bound(load_settings):
    settings = load_settings("production", **DEPLOY_ENV)
    assert settings.DATABASES[DIRECT]["QUERY_TIMEOUT"] is None


@pytest.fixture
def lock_app(settings):
    """``tests.lock_app`` installed, its first migration applied; unapplied afterwards."""
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "tests.lock_app"]
    settings.MIGRATION_LOCK_TIMEOUT = TIMEOUT
    settings.MIGRATION_LOCK_RETRIES = RETRIES
    migrate("0001")
    yield
    migrate("zero")


def migrate(target):
    """Run ``manage.py migrate lock_app TARGET``; return what it wrote to stderr."""
    err = io.StringIO()
    call_command("migrate", "lock_app", target, stdout=io.StringIO(), stderr=err)
    return err.getvalue()


def applied(name):
    recorder = MigrationRecorder(connections[DIRECT])
    return recorder.migration_qs.filter(app="lock_app", name=name).exists()


def columns(table):
    with connections[DIRECT].cursor() as cursor:
        cursor.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s", [table]
        )
        return {row[0] for row in cursor.fetchall()}


def lock_timeout():
    with connections[DIRECT].cursor() as cursor:
        cursor.execute("SHOW lock_timeout")
        return cursor.fetchone()[0]


@contextlib.contextmanager
def blocker(statement, *, release_after=None):
    """A transaction that ran ``statement`` and holds its locks until the block ends, or
    ``release_after`` seconds. Yields its backend's pid."""
    params = {**connections[DIRECT].get_connection_params(), "application_name": "blocker"}
    with psycopg.connect(**params) as connection:
        connection.execute(statement)  # opens the transaction
        timer = threading.Timer(release_after or 0, connection.rollback)
        if release_after is not None:
            timer.start()
        try:
            yield connection.info.backend_pid
        finally:
            timer.cancel()
            if timer.is_alive():
                timer.join()
            connection.rollback()


@pytest.mark.django_db(transaction=True, databases=OWNER)
def test_a_migration_runs_again_once_the_blocker_lets_go(lock_app):
    with blocker("SELECT count(*) FROM lock_app_item", release_after=0.5):
        output = migrate("0002")
    assert "Lock wait timed out after 0.2s in lock_app.0002_note" in output
    assert "Retry 1 of 3 in 0.2s" in output
    assert "note" in columns("lock_app_item")
    assert applied("0002_note")


@pytest.mark.django_db(transaction=True, databases=OWNER)
def test_a_migration_that_never_gets_its_lock_names_the_blocker(lock_app):
    started = time.monotonic()
    with (
        blocker("SELECT count(*) FROM lock_app_item") as pid,
        pytest.raises(CommandError) as error,
    ):
        migrate("0002")
    message = str(error.value)
    assert message.startswith("Lock wait timed out after 0.2s in lock_app.0002_note")
    assert "Gave up after 4 tries; nothing of it was applied." in message
    assert f"pid {pid}, user " in message
    assert "application_name 'blocker', idle in transaction, transaction open for" in message
    assert message.count("SELECT count(*) FROM lock_app_item") == 1
    # 4 waits of 0.2 s, pauses of 0.2, 0.4 and 0.8 s.
    assert 2.2 <= time.monotonic() - started < 2.2 + 4 * SLACK
    assert "note" not in columns("lock_app_item")
    assert not applied("0002_note")


@pytest.mark.django_db(transaction=True, databases=OWNER)
def test_a_non_atomic_migration_is_not_run_again(lock_app):
    migrate("0002")
    with (
        blocker("SELECT count(*) FROM lock_app_other"),
        pytest.raises(CommandError, match="It is not atomic: what ran before the wait stays"),
    ):
        migrate("0003")
    assert "a" in columns("lock_app_item")  # its first statement ran once, and stays
    assert not applied("0003_two_tables")


@pytest.mark.django_db(transaction=True, databases=OWNER)
def test_an_index_built_concurrently_waits_for_writers_past_the_lock_timeout(lock_app):
    migrate("0003")
    with blocker("INSERT INTO lock_app_item (name) VALUES ('in flight')", release_after=1.0):
        started = time.monotonic()
        output = migrate("0004")
        waited = time.monotonic() - started
    assert output == ""
    assert waited >= 0.9  # it waited for the writer, well past the lock timeout
    with connections[DIRECT].cursor() as cursor:
        cursor.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'lock_app_item_name'::regclass"
        )
        assert cursor.fetchone() == (True,)


@pytest.mark.django_db(transaction=True, databases=OWNER)
def test_the_session_keeps_no_lock_timeout_after_migrate(lock_app):
    migrate("0002")
    assert lock_timeout() == "0"


@pytest.mark.django_db(transaction=True, databases=OWNER)
def test_a_zero_timeout_waits_as_long_as_the_blocker(lock_app, settings):
    settings.MIGRATION_LOCK_TIMEOUT = 0
    with blocker("SELECT count(*) FROM lock_app_item", release_after=1.0):
        started = time.monotonic()
        output = migrate("0002")
        waited = time.monotonic() - started
    assert output == ""
    assert waited >= 0.9
    assert applied("0002_note")
