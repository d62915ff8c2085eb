"""The application starts without its database: probes answer, nothing connects at import."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent

# Build the production WSGI application, then call it as a server would.
CALL_PROBES = """
import io, json, sys
from config.wsgi import application

results = {}
for path in ("/healthz/", "/readyz/"):
    def start_response(status, headers, path=path):
        results[path] = int(status.split()[0])
    environ = {
        "REQUEST_METHOD": "GET", "PATH_INFO": path, "SERVER_NAME": "10.0.0.7",
        "SERVER_PORT": "80", "HTTP_HOST": "10.0.0.7", "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(), "wsgi.errors": sys.stderr,
    }
    b"".join(application(environ, start_response))
print(json.dumps(results))
"""


def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_production_app_starts_and_probes_answer_while_the_database_is_down(deploy_env):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_"))}
    env.update(deploy_env)
    env["DATABASE_URL"] = f"postgres://app:pw@127.0.0.1:{closed_port()}/app"
    result = subprocess.run(
        [sys.executable, "-c", CALL_PROBES],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == {"/healthz/": 200, "/readyz/": 503}
