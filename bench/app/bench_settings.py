"""Benchmark settings: the project's production settings plus the benchmark app.

Copied into a baked project by bench/servers.py at run time; never part of the template.
"""

import os

from config.settings.production import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "benchapp"]  # noqa: F405
ROOT_URLCONF = "bench_urls"

# Extra benchmark-only configuration (bench/run --extra): persistent connections without
# the template's per-request health check, to price that check.
if os.environ.get("BENCH_CONN_HEALTH_CHECKS") == "false":
    for _database in DATABASES.values():  # noqa: F405
        _database["CONN_HEALTH_CHECKS"] = False
