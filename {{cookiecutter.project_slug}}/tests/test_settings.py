"""Each settings module reads the environment it documents, and refuses bad values."""

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

PROJECT_DIR = Path(__file__).resolve().parent.parent


def settings_module_used(*command, **environ):
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(environ)
    result = subprocess.run(
        [sys.executable, *command], cwd=PROJECT_DIR, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_manage_py_defaults_to_local_settings():
    printed = settings_module_used(
        "manage.py",
        "shell",
        "--verbosity=0",
        "-c",
        "from django.conf import settings; print(settings.SETTINGS_MODULE)",
    )
    assert printed == "config.settings.local"


@pytest.mark.parametrize("entry_point", ["config.wsgi", "config.asgi"])
def test_server_entry_points_default_to_production_settings(entry_point, deploy_env):
    printed = settings_module_used(
        "-c",
        f"import {entry_point}; from django.conf import settings; print(settings.SETTINGS_MODULE)",
        **deploy_env,
    )
    assert printed == "config.settings.production"


def test_asgi_uses_the_connection_pool(deploy_env):
    printed = settings_module_used(
        "-c",
        "import config.asgi; from django.conf import settings; "
        "print(sorted(settings.DATABASES['default']['OPTIONS']['pool']))",
        **deploy_env,
    )
    assert printed == "['max_size', 'min_size', 'timeout']"


def test_wsgi_keeps_persistent_connections(deploy_env):
    printed = settings_module_used(
        "-c",
        "import config.wsgi; from django.conf import settings; "
        "print(settings.DATABASES['default']['CONN_MAX_AGE'])",
        **deploy_env,
    )
    assert printed == "60"


@pytest.mark.parametrize("name", ["staging", "production"])
@pytest.mark.parametrize("variable", ["DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS", "DATABASE_URL"])
def test_deployed_settings_require_variable(load_settings, deploy_env, name, variable):
    del deploy_env[variable]
    with pytest.raises(ImproperlyConfigured, match=f"^{variable} is required"):
        load_settings(name, **deploy_env)


@pytest.mark.parametrize("name", ["staging", "production"])
def test_deployed_settings_refuse_malformed_database_url(load_settings, deploy_env, name):
    deploy_env["DATABASE_URL"] = "postgres://app:s3cret@db.example.com:port/app"
    with pytest.raises(ImproperlyConfigured, match=r"^DATABASE_URL is not a valid URL") as error:
        load_settings(name, **deploy_env)
    assert "s3cret" not in str(error.value)


@pytest.mark.parametrize("name", ["staging", "production"])
def test_deployed_settings_require_tls_to_the_database(load_settings, deploy_env, name):
    settings = load_settings(name, **deploy_env)
    assert settings.DATABASES["default"]["OPTIONS"]["sslmode"] == "require"


@pytest.mark.parametrize("name", ["staging", "production"])
def test_deployed_settings_read_allowed_hosts(load_settings, deploy_env, name):
    settings = load_settings(name, **deploy_env)
    assert settings.ALLOWED_HOSTS == ["example.com", "www.example.com"]
    assert settings.DEBUG is False


def test_production_enables_hsts_preload(load_settings, deploy_env):
    settings = load_settings("production", **deploy_env)
    assert settings.SECURE_HSTS_PRELOAD is True
    assert settings.SECURE_HSTS_SECONDS == 31536000


def test_staging_is_production_without_hsts_preload(load_settings, deploy_env):
    staging = load_settings("staging", **deploy_env)
    assert staging.SECURE_HSTS_PRELOAD is False
    assert staging.SECURE_SSL_REDIRECT is True
    assert staging.SESSION_COOKIE_SECURE is True
    assert "security.W021" in staging.SILENCED_SYSTEM_CHECKS


def test_local_defaults_to_debug_and_a_socket_database(load_settings):
    settings = load_settings("local")
    assert settings.DEBUG is True
    assert settings.DATABASES["default"]["HOST"] == ""
    assert settings.DATABASES["default"]["NAME"] == "{{ cookiecutter.project_slug }}"
    assert "sslmode" not in settings.DATABASES["default"]["OPTIONS"]


def test_local_debug_can_be_turned_off(load_settings):
    assert load_settings("local", DJANGO_DEBUG="false").DEBUG is False


def test_local_refuses_a_malformed_debug_flag(load_settings):
    with pytest.raises(ImproperlyConfigured, match=r"^DJANGO_DEBUG='maybe' is not valid"):
        load_settings("local", DJANGO_DEBUG="maybe")


def test_local_honours_database_variables(load_settings):
    settings = load_settings(
        "local",
        DATABASE_URL="postgres://dev:pw@127.0.0.1:6543/devdb",
        DATABASE_SSLMODE="verify-full",
    )
    default = settings.DATABASES["default"]
    assert (default["HOST"], default["PORT"], default["NAME"]) == ("127.0.0.1", 6543, "devdb")
    assert default["OPTIONS"]["sslmode"] == "verify-full"


def test_readyz_details_networks_are_read_as_cidrs(load_settings):
    settings = load_settings("local", DJANGO_READYZ_DETAILS_NETWORKS="10.0.0.0/8, fd00::/8")
    networks = settings.READYZ_DETAILS_NETWORKS
    assert networks == [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]


def test_readyz_details_networks_default_to_none(load_settings):
    assert load_settings("local").READYZ_DETAILS_NETWORKS == []


def test_a_malformed_readyz_details_network_stops_start_up(load_settings):
    with pytest.raises(ImproperlyConfigured) as error:
        load_settings("local", DJANGO_READYZ_DETAILS_NETWORKS="10.0.0.0/8,office")
    assert str(error.value) == (
        "DJANGO_READYZ_DETAILS_NETWORKS='10.0.0.0/8,office' is not valid: "
        "expected comma-separated networks such as 10.0.0.0/8,fd00::/8."
    )


def test_local_allowed_hosts_are_optional(load_settings):
    assert load_settings("local").ALLOWED_HOSTS == ["localhost", "127.0.0.1", "[::1]"]
    assert load_settings("local", DJANGO_ALLOWED_HOSTS="dev.test").ALLOWED_HOSTS == ["dev.test"]


def test_under_debug_each_log_line_is_printed_once():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_"))}
    env |= {"DJANGO_SETTINGS_MODULE": "config.settings.local", "DJANGO_DEBUG": "true"}
    code = (
        "import logging, django; django.setup(); "
        "logging.getLogger('django.request').warning('printed-once')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_DIR, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert (result.stdout + result.stderr).count("printed-once") == 1
