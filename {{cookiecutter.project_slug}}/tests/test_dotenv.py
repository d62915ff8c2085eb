"""``.env`` in the project root: read by the local and test settings, never by deployed ones."""

import os

import pytest
from django.core.exceptions import ImproperlyConfigured


@pytest.fixture
def dotenv(clean_env, tmp_path):
    """Write the project's ``.env`` for one test; what it adds to the environment goes after."""
    path = tmp_path / ".env"
    clean_env.setattr("config.env.DOTENV", path)
    before = set(os.environ)
    yield path.write_text
    for name in set(os.environ) - before:
        del os.environ[name]


@pytest.mark.parametrize("settings_name", ["local", "test"])
def test_local_and_test_settings_read_the_dotenv_file(dotenv, load_settings, settings_name):
    dotenv("DATABASE_URL=postgres://dev:secret@db.internal:5432/from_dotenv\n")
    settings = load_settings(settings_name)
    assert settings.DATABASES["default"]["NAME"] == "from_dotenv"


def test_the_environment_wins_over_the_dotenv_file(dotenv, load_settings):
    dotenv("DATABASE_URL=postgres://dev:secret@db.internal:5432/from_dotenv\n")
    settings = load_settings("local", DATABASE_URL="postgres://dev:secret@db:5432/from_env")
    assert settings.DATABASES["default"]["NAME"] == "from_env"


@pytest.mark.parametrize("settings_name", ["staging", "production"])
def test_deployed_settings_never_read_the_dotenv_file(
    dotenv, load_settings, deploy_env, settings_name
):
    dotenv("DJANGO_SECURE_HSTS_SECONDS=5\n")
    settings = load_settings(settings_name, **deploy_env)
    assert settings.SECURE_HSTS_SECONDS != 5
    assert "DJANGO_SECURE_HSTS_SECONDS" not in os.environ


def test_a_malformed_value_in_the_dotenv_file_is_named(dotenv, load_settings):
    dotenv("DATABASE_CONN_MAX_AGE=soon\n")
    with pytest.raises(ImproperlyConfigured, match="DATABASE_CONN_MAX_AGE='soon' is not valid"):
        load_settings("local")
