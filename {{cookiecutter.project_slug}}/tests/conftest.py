import importlib
import os
import sys

import pytest
from django.db import connections

from config.aliases import DIRECT
from tests.database import django_db_setup  # noqa: F401  (replaces pytest-django's)
from tests.relay import FreezableRelay

# Variables the settings read; each test starts from none of them.
PREFIXES = ("DJANGO_", "DATABASE_")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """Remove every variable the settings read, keeping DJANGO_SETTINGS_MODULE.

    A developer's own ``.env`` is out of the picture too: settings load without one.
    """
    for name in list(os.environ):
        if name.startswith(PREFIXES) and name != "DJANGO_SETTINGS_MODULE":
            monkeypatch.delenv(name)
    monkeypatch.setattr("config.env.DOTENV", tmp_path / "no.env")
    return monkeypatch


@pytest.fixture
def environ(clean_env):
    """Set environment variables for one test, on top of a clean environment."""

    def set_variables(**variables):
        for name, value in variables.items():
            clean_env.setenv(name, value)

    return set_variables


@pytest.fixture
def load_settings(clean_env):
    """Import a settings module afresh under the given environment variables."""
    saved = {
        name: module for name, module in sys.modules.items() if name.startswith("config.settings.")
    }

    def load(name, **environ):
        for key, value in environ.items():
            clean_env.setenv(key, value)
        for module in list(sys.modules):
            if module.startswith("config.settings."):
                del sys.modules[module]
        return importlib.import_module(f"config.settings.{name}")

    yield load
    for module in list(sys.modules):
        if module.startswith("config.settings."):
            del sys.modules[module]
    sys.modules.update(saved)


# What staging and production need to start (the documented required variables).
DEPLOY_ENV = {
    "DJANGO_SECRET_KEY": "x7Gk2pQv9sLm4Rt8Wz1Yc6Hn3Jb5Df0Ae7Ui2Oo9Pl4Kk8Mm1Nn6Bb3Vv5Cc0Xx",
    "DJANGO_ALLOWED_HOSTS": "example.com,www.example.com",
    "DATABASE_URL": "postgres://app:s3cret@db.example.com:5432/app",
}


@pytest.fixture
def deploy_env():
    return dict(DEPLOY_ENV)


@pytest.fixture
def relay():
    """A relay to the test database on the primary itself (see tests/relay.py)."""
    settings_dict = connections[DIRECT].settings_dict  # not through a pooler
    # No HOST in the URL: libpq takes PGHOST, else its Unix socket.
    host = settings_dict["HOST"] or os.environ.get("PGHOST", "")
    if not host or host.startswith("/"):
        pytest.skip("the test database is on a Unix socket; the relay needs TCP")
    port = int(settings_dict["PORT"] or os.environ.get("PGPORT") or 5432)
    relay = FreezableRelay((host, port))
    yield relay
    relay.close()
