"""Settings for Django's own test suite, built from a baked project's database settings.

Runs inside Django's ``tests/runtests.py``, with the baked project's directory on the path
(its ``config`` package) and these variables:

- ``DJANGO_SUITE_DATABASE_URL``: the primary, given to the bake's ``config.database.databases``
  as its ``default_url``, as the bake's ``config/settings/base.py`` does;
- ``DJANGO_SUITE_DEFAULT_ENGINE`` and ``DJANGO_SUITE_OTHER_ENGINE``: the ``ENGINE`` of Django's
  two aliases, ``default`` and ``other``; the only settings that differ between the stock run
  and ours;
- ``DJANGO_SUITE_OTHER_MIRRORS_DEFAULT``: ``1`` makes ``other`` a ``TEST MIRROR`` of ``default``,
  as the bake's own test settings make its replica (``config/settings/test.py``); otherwise
  ``other`` has a test database of its own.

Everything else runtests needs is set here as Django's ``tests/test_sqlite.py`` sets it;
runtests sets the installed apps, middleware and templates itself.
"""

import os

from config.aliases import DEFAULT
from config.database import databases

_bake = databases(default_url=os.environ["DJANGO_SUITE_DATABASE_URL"])
# The bake's primary alias, as its settings build it (timeouts, persistent connections with
# health checks, dead-peer detection, application_name). ``direct`` is left out: Django's suite
# knows two aliases, and a third one on the same server would only be one more connection.
_primary = _bake[DEFAULT]

DATABASES = {
    # Test database names of their own: the harness's primary may serve other suites.
    "default": {
        **_primary,
        "ENGINE": os.environ["DJANGO_SUITE_DEFAULT_ENGINE"],
        "TEST": {"NAME": "django_suite_default"},
    },
    "other": {
        **_primary,
        "ENGINE": os.environ["DJANGO_SUITE_OTHER_ENGINE"],
        "TEST": {"NAME": "django_suite_other"},
    },
}
if os.environ.get("DJANGO_SUITE_OTHER_MIRRORS_DEFAULT") == "1":
    DATABASES["other"]["TEST"] = {"MIRROR": "default"}
    # What the replicas' backend reads at run time. Not DATABASE_ROUTERS: Django's tests set
    # the routers they test themselves, and the backend is what is on trial here.
    from config.replicas.settings import (  # noqa: F401
        REPLICA_COOLDOWN_SECONDS,
        REPLICA_MAX_LAG_SECONDS,
        REPLICA_PIN_SECONDS,
    )

SECRET_KEY = "django_tests_secret_key"  # Django's test suite's own
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = False
# Records each test's outcome by id (django_suite_runner.py, beside this module).
TEST_RUNNER = "django_suite_runner.RecordingRunner"
