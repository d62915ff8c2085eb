"""The connection budget: what one app server opens, and whether N of them fit the server."""

import pytest
from django.core.checks import Tags
from django.core.checks.registry import registry
from django.core.management import CommandError, call_command

from config import budget
from config.budget import GUNICORN_CONFIG, Gunicorn, alias_demand, read_gunicorn
from config.checks import budget_warnings, check_connection_budget

SYNC = Gunicorn(workers=4, concurrency=1, worker_class="sync", per_worker="1 request")
PERSISTENT = {"CONN_MAX_AGE": 60}


def pool(min_size=1, max_size=4):
    return {"CONN_MAX_AGE": 0, "OPTIONS": {"pool": {"min_size": min_size, "max_size": max_size}}}


@pytest.fixture
def straight(monkeypatch):
    """App servers that connect straight to the server, through no pooler."""
    monkeypatch.setattr(budget, "poolers", {})


@pytest.fixture
def gunicorn_config(tmp_path):
    """Write a gunicorn config file with the settings given; return its path."""

    def write(**settings):
        path = tmp_path / "gunicorn.conf.py"
        path.write_text("".join(f"{name} = {value!r}\n" for name, value in settings.items()))
        return path

    return write


def test_a_sync_worker_keeps_one_persistent_connection():
    assert alias_demand("default", PERSISTENT, SYNC).connections == 4


def test_each_thread_keeps_a_persistent_connection_of_its_own(gunicorn_config):
    shape = read_gunicorn(gunicorn_config(workers=2, threads=3))
    assert (shape.worker_class, alias_demand("default", PERSISTENT, shape).connections) == (
        "gthread",
        6,
    )


def test_a_pool_opens_one_more_than_its_worker_serves_at_once():
    assert alias_demand("default", pool(), SYNC).connections == 4 * 2


def test_a_pool_caps_what_its_threads_would_open():
    threads = Gunicorn(workers=2, concurrency=8, worker_class="gthread", per_worker="8 threads")
    assert alias_demand("default", pool(max_size=4), threads).connections == 2 * 4


def test_a_pool_never_holds_fewer_than_its_min_size():
    assert alias_demand("default", pool(min_size=3, max_size=5), SYNC).connections == 4 * 4


def test_an_event_loop_worker_takes_its_whole_pool():
    asgi = Gunicorn(workers=3, concurrency=1000, worker_class="asgi", per_worker="1000 at once")
    assert alias_demand("default", pool(max_size=6), asgi).connections == 3 * 6


def test_web_concurrency_sets_the_workers_counted(monkeypatch):
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert read_gunicorn(GUNICORN_CONFIG).workers == 3


def test_gunicorn_cmd_args_count_as_gunicorn_reads_them(monkeypatch):
    monkeypatch.setenv("GUNICORN_CMD_ARGS", "--threads 5")
    assert read_gunicorn(GUNICORN_CONFIG).concurrency == 5


@pytest.mark.django_db
def test_app_servers_that_fit_are_said_to(gunicorn_config, capsys):
    call_command("connection_budget", "--app-servers=2", gunicorn_config=gunicorn_config(workers=1))
    assert "2 app server(s) fit." in capsys.readouterr().out


@pytest.mark.django_db
@pytest.mark.usefixtures("straight")
def test_app_servers_that_do_not_fit_exit_with_status_1_and_what_to_change(gunicorn_config):
    with pytest.raises(CommandError) as error:
        call_command(
            "connection_budget", "--app-servers=5000", gunicorn_config=gunicorn_config(workers=1)
        )
    assert error.value.returncode == 1
    assert "5000 app server(s) need" in str(error.value)
    assert "higher max_connections" in str(error.value)


@pytest.mark.django_db
@pytest.mark.usefixtures("straight")
def test_the_budget_check_warns_when_one_app_server_could_exhaust_the_server(gunicorn_config):
    warnings = budget_warnings(gunicorn_config(workers=5000))
    assert [warning.id for warning in warnings] == ["config.W006"]
    assert "connection_budget" in warnings[0].hint


@pytest.mark.django_db
def test_the_budget_check_is_silent_for_a_small_app_server(gunicorn_config):
    assert budget_warnings(gunicorn_config(workers=2)) == []


def test_the_budget_check_asks_the_server_only_for_database_deploy_checks():
    assert Tags.database in check_connection_budget.tags  # type: ignore[attr-defined]
    assert check_connection_budget in registry.get_checks(include_deployment_checks=True)
    assert check_connection_budget not in registry.get_checks(include_deployment_checks=False)
    assert check_connection_budget(None) == []
