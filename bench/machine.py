"""The machine and software a run measured on, for the report."""

import contextlib
import datetime
import os
import platform
import subprocess
from pathlib import Path

from bench.servers import Servers
from devtools import bakery, harness


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def describe(servers: Servers, loadavg_start: str) -> dict[str, str]:
    """CPU, kernel, load, and the versions of the servers, wrk and the projects' packages."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    python = next(iter(servers.pythons.values()), None)
    versions = {}
    if python:
        probe = bakery.run(
            [
                python, "-c",
                "import sys, django, psycopg, gunicorn, uvicorn; "
                "print(sys.version.split()[0], django.get_version(), psycopg.__version__, "
                "gunicorn.__version__, uvicorn.__version__)",
            ],
            check=False,
        )  # fmt: skip
        parts = probe.stdout.split()
        if len(parts) == 5:
            names = ["python", "django", "psycopg", "gunicorn", "uvicorn"]
            versions = dict(zip(names, parts, strict=True))
    bouncer = subprocess.run(
        [harness.pgbouncer_path(), "--version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "kernel": platform.release(),
        "loadavg at start / end": f"{loadavg_start} / {loadavg()}",
        "postgresql": servers.primary.execute("SHOW server_version")[0][0]
        if servers.primary
        else "?",
        "pgbouncer": bouncer[0] if bouncer else "?",
        "wrk": (wrk_version.stdout or wrk_version.stderr).split(" [")[0],
        **versions,
    }
