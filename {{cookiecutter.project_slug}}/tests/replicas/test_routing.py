"""Where ``PrimaryReplicaRouter`` sends each query."""

import asyncio

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.models import Session
from django.db import connection, connections, router, transaction
from django.test.utils import CaptureQueriesContext

from config.replicas import use_primary
from config.replicas.pinning import pinned, wrote
from config.replicas.router import PrimaryReplicaRouter
from tests.replicas.conftest import forget_writes, read_alias, routed, uses_views
from users.models import User

PRIMARIES = [alias for alias in ("default", "direct") if alias in connections]


def log_entry(user, text="entry"):
    return LogEntry.objects.create(user=user, action_flag=1, object_repr=text)


@routed
def test_plain_reads_go_to_the_replica():
    assert read_alias() == "replica1"


@routed
def test_a_read_really_runs_on_the_replica_connection(user):
    forget_writes()
    with CaptureQueriesContext(connections["replica1"]) as replica_queries:
        list(LogEntry.objects.all())
    assert any("django_admin_log" in query["sql"] for query in replica_queries)


@routed
def test_writes_go_to_the_primary(user):
    entry = log_entry(user)
    assert entry._state.db == "default"


@routed
def test_an_instance_read_from_the_replica_is_saved_to_the_primary(user):
    log_entry(user)
    forget_writes()
    entry = LogEntry.objects.get()
    assert entry._state.db == "replica1"
    entry.object_repr = "changed"
    entry.save()
    assert entry._state.db == "default"


@routed
def test_select_for_update_goes_to_the_primary():
    with transaction.atomic():
        assert LogEntry.objects.select_for_update().db == "default"


@routed
@pytest.mark.parametrize("method", ["get_or_create", "update_or_create"])
def test_get_or_create_and_update_or_create_go_to_the_primary(user, method):
    forget_writes()
    entry, _ = getattr(LogEntry.objects, method)(user=user, action_flag=1, object_repr="x")
    assert entry._state.db == "default"


@routed
def test_reads_inside_atomic_go_to_the_primary():
    with transaction.atomic():
        assert read_alias() == "default"


@routed
def test_reads_after_atomic_go_to_the_replica_again():
    with transaction.atomic():
        pass
    assert read_alias() == "replica1"


@routed
def test_a_row_created_inside_atomic_is_read_back_inside_it(user):
    with transaction.atomic():
        entry = log_entry(user)
        assert LogEntry.objects.get(pk=entry.pk) == entry


@routed
def test_checking_for_atomic_does_not_connect_to_the_primary():
    connections["default"].close()
    read_alias()
    assert connections["default"].connection is None


@routed
def test_a_write_sends_the_later_reads_of_the_context_to_the_primary(user):
    log_entry(user)
    assert read_alias() == "default"


@routed
def test_a_write_inside_use_primary_still_pins_after_the_block(user):
    with use_primary():
        log_entry(user)
    assert read_alias() == "default"


@routed
def test_a_raw_write_on_the_primary_pins_the_context(user):
    forget_writes()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE django_admin_log SET object_repr = 'raw'")
    assert read_alias() == "default"


@routed
def test_a_raw_script_of_writes_ending_in_commit_asks_for_a_pin(user):
    forget_writes()
    with connection.cursor() as cursor:
        cursor.execute("BEGIN; UPDATE django_admin_log SET object_repr = 'raw'; COMMIT")
    assert wrote()


@routed
def test_a_raw_read_on_the_primary_pins_nothing():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert read_alias() == "replica1"


@routed
@pytest.mark.parametrize("model", [User, Group, Permission, ContentType, Session])
def test_models_that_keep_users_logged_in_are_read_from_the_primary(model):
    assert model.objects.all().db == "default"


@routed
def test_without_replicas_reads_go_to_the_primary(monkeypatch):
    bare = PrimaryReplicaRouter()
    monkeypatch.setattr(bare, "replicas", ())
    assert bare.db_for_read(LogEntry) == "default"


@routed
@uses_views
def test_an_async_view_iterates_with_the_async_orm(client, user):
    # The router runs in the event loop here: a blocking call would raise.
    forget_writes()
    response = client.get("/aiterate/")
    assert response.status_code == 200


@routed
def test_the_router_makes_no_call_in_the_event_loop():
    async def route():
        return router.db_for_read(LogEntry)

    connections["replica1"].close()
    assert asyncio.run(route()) == "replica1"


@pytest.mark.parametrize("alias", PRIMARIES)
def test_migrations_run_on_the_primary(alias):
    assert router.allow_migrate(alias, "admin") is True


def test_migrations_do_not_run_on_a_replica():
    assert router.allow_migrate("replica1", "admin") is False


def test_migrations_on_a_database_the_router_does_not_own_are_left_to_django():
    assert PrimaryReplicaRouter().allow_migrate("analytics", "admin") is None


def test_relations_between_primary_and_replica_rows_are_allowed():
    primary, replica = LogEntry(), LogEntry()
    primary._state.db, replica._state.db = "default", "replica1"
    assert router.allow_relation(primary, replica) is True


def test_relations_with_an_unknown_database_are_left_to_django():
    ours, theirs = LogEntry(), LogEntry()
    ours._state.db, theirs._state.db = "default", "analytics"
    assert PrimaryReplicaRouter().allow_relation(ours, theirs) is None


@pytest.mark.parametrize("route", ["db_for_read", "db_for_write"])
def test_an_instance_from_a_database_not_ours_is_left_to_the_next_router(route):
    instance = User(username="legacy")
    instance._state.db = "legacy"  # loaded from a database of the project's own
    assert getattr(PrimaryReplicaRouter(), route)(User, instance=instance) is None
    assert not pinned()
