"""Drills beside the benchmark: the template's default and each peer under load while every
app connection is terminated (no downtime), then while the primary restarts.

Requests that fail while the primary is actually down are counted apart: nothing can serve
them. What matters is the terminate phase and the time after the primary answers again.
"""

import json
import subprocess
import sys
import time

from bench.configurations import CONFIG_BY_KEY, PEERS
from bench.log import log
from bench.servers import Servers
from bench.throughput import terminate_app_backends
from devtools import bakery
from devtools.load import failed

CONFIGS = ("persistent", *PEERS)


def drill(servers: Servers, key: str, seconds: float) -> dict:
    """Load ``key`` for ``seconds``; terminate its backends, then restart the primary."""
    config = CONFIG_BY_KEY[key]
    server = servers.app_server(config)
    out = server.log_path.with_suffix(".drill.json")
    try:
        server.wait_ready("/bench/nodb/")
        command = [sys.executable, "-m", "devtools.load", server.base, "/bench/one/",
                   "--clients", "8", "--seconds", str(seconds), "--out", str(out)]  # fmt: skip
        load = subprocess.Popen(command, cwd=bakery.ROOT)
        time.sleep(seconds * 0.25)
        terminated = time.time()
        terminate_app_backends(servers.primary)
        time.sleep(seconds * 0.25)
        stopped = time.time()
        servers.primary.stop()
        time.sleep(1)
        servers.primary.start()
        answering = time.time()
        load.wait(timeout=seconds + 120)
        records = json.loads(out.read_text())
    finally:
        server.stop()
    phase = [r for r in records if r["start"] >= terminated and r["end"] < stopped]
    down = [r for r in records if r["start"] < answering and r["end"] > stopped]
    after = [r for r in records if r["start"] >= answering]
    return {
        "sent": len(records),
        "terminate_failed": len(failed(phase)),
        "down_failed": len(failed(down)),
        "after_failed": len(failed(after)),
    }


def run_drills(servers: Servers, seconds: float) -> dict[str, dict]:
    """Every drill configuration once; a configuration that cannot be served is left out."""
    results = {}
    for key in CONFIGS:
        if key in servers.skipped or CONFIG_BY_KEY[key].project not in servers.projects:
            continue
        log(f"drill {key}")
        try:
            results[key] = drill(servers, key, seconds)
        except Exception as error:
            results[key] = {"error": f"{type(error).__name__}: {error}"}
        log(f"drill {key}: {results[key]}")
    return results
