"""Drills beside the benchmark: the template's default and each peer under load while every
app connection is terminated (no downtime), then while the primary restarts; and the
template's default on a two-host URL while its primary is stopped and the standby promoted.

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
from devtools import bakery, harness
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


def failover(servers: Servers, seconds: float) -> dict:
    """The shipped default on a two-host ``DATABASE_URL`` under a load of writes: the primary
    stopped (a fast shutdown, which sends the standby all its WAL), the standby promoted with
    ``pg_ctl promote`` a second later. The peers cannot take part: dj-database-url refuses a
    URL naming two hosts."""
    project, python = servers.projects["default"], servers.pythons["default"]
    with harness.Primary() as primary, harness.Replica(primary) as standby:
        one = f"{primary.host}:{primary.port}"
        url = primary.url().replace(one, f"{one},{standby.host}:{standby.port}")
        env = servers.env_for("default", {"DATABASE_URL": url})
        bakery.run([python, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=project,
                   env=env, timeout=300)  # fmt: skip
        standby.wait_for_replay(primary, timeout=30)
        options = ["--workers", str(servers.args.workers), "--log-level", "warning"]
        server = bakery.AppServer(python, project, env, options=options)
        out = server.log_path.with_suffix(".failover.json")
        try:
            server.wait_ready("/bench/nodb/")
            command = [sys.executable, "-m", "devtools.load", server.base, "/bench/write/",
                       "--write", "--clients", "8", "--seconds", str(seconds),
                       "--out", str(out)]  # fmt: skip
            load = subprocess.Popen(command, cwd=bakery.ROOT)
            time.sleep(seconds * 0.3)
            stopped = time.time()
            primary.stop()
            time.sleep(1)
            standby.promote()
            promoted = time.time()
            load.wait(timeout=seconds + 120)
            records = json.loads(out.read_text())
        finally:
            server.stop()
    back = min(r["end"] for r in records if r["start"] >= promoted and not failed([r]))
    return {
        "sent": len(records),
        "failed_before_promotion": len(failed([r for r in records if r["start"] < promoted])),
        "stopped_to_promoted_s": promoted - stopped,
        "writes_back_after_s": back - promoted,
        "failed_after_back": len(failed([r for r in records if r["start"] > back])),
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
    log("drill failover")
    try:
        results["failover"] = failover(servers, seconds)
    except Exception as error:
        results["failover"] = {"error": f"{type(error).__name__}: {error}"}
    log(f"drill failover: {results['failover']}")
    return results


def section(drills: dict) -> list[str]:
    """The terminate and restart drills, one row per configuration."""
    if not drills:
        return ["Not run."]
    out = [
        "Under load (8 clients on `/bench/one/`): every app backend terminated with "
        "`pg_terminate_backend` (no downtime), then the primary restarted (`pg_ctl stop -m "
        "fast`, 1 s, start). Failed requests per phase; those sent while the primary was "
        "down are counted apart.",
        "",
        "| configuration | requests | failed after terminate | failed while down | "
        "failed once the primary answers again |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, result in drills.items():
        if key == "failover":
            continue
        if "error" in result:
            out.append(f"| {key} | error: {result['error'][:200]} | | | |")
            continue
        out.append(
            f"| {key} | {result['sent']:,} | {result['terminate_failed']} | "
            f"{result['down_failed']} | {result['after_failed']} |"
        )
    return [*out, "", *failover_rows(drills.get("failover"))]


def failover_rows(result: dict | None) -> list[str]:
    """The failover drill: the shipped default on a two-host URL, its standby promoted."""
    if result is None:
        return []
    out = [
        "Failover: the shipped default with `DATABASE_URL` naming the primary and its standby, "
        "under a load of writes (8 clients on `/bench/write/`); the primary stopped, the "
        "standby promoted (`pg_ctl promote`) a second later. No restart of the app. The "
        "peers cannot take part (dj-database-url refuses a URL naming two hosts).",
        "",
        "| requests | failed before the promotion | writes back after the promotion | "
        "failed after that |",
        "|---:|---:|---:|---:|",
    ]
    if "error" in result:
        return [*out, f"| error: {result['error'][:200]} | | | |"]
    return [
        *out,
        f"| {result['sent']:,} | {result['failed_before_promotion']} | "
        f"{result['writes_back_after_s']:.2f} s | {result['failed_after_back']} |",
    ]
