"""gunicorn.conf.py: what ``gunicorn config.wsgi`` runs with, read from the project's root."""

import os
import subprocess
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent


def settings(**environ):
    """The settings gunicorn would run with in the project's root, by name."""
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--print-config", "config.wsgi"],
        cwd=PROJECT_DIR,
        env={**os.environ, **environ},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    pairs = (line.partition("=") for line in result.stdout.splitlines() if "=" in line)
    return {name.strip(): value.strip() for name, _, value in pairs}


def test_a_worker_outlasts_the_database_bound_before_it_is_killed():
    assert int(settings()["timeout"]) > 20  # DATABASE_QUERY_TIMEOUT


def test_no_control_socket_is_opened():
    assert settings()["control_socket_disable"] == "True"


def test_web_concurrency_sets_the_workers():
    assert settings(WEB_CONCURRENCY="3")["workers"] == "3"
