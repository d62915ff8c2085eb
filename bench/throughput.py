"""The measurement: each configuration served afresh and loaded, interleaved over repetitions,
with the app's connections and new sessions counted on the servers.
"""

import os
import re
import statistics
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bench.configurations import VIEWS, Config
from bench.log import log
from bench.servers import Servers
from bench.wrk import wrk
from devtools import bakery, harness


@dataclass
class Run:
    """One configuration served and loaded once: per-view wrk results and connection counts."""

    config: str
    repetition: int
    views: dict[str, dict] = field(default_factory=dict)
    conns_max: int | None = None
    conns_median: float | None = None
    replica_conns_max: int | None = None
    new_sessions: int | None = None
    cpu_us: float | None = None  # the app workers' CPU time per /bench/one/ request
    error: str | None = None


def check_view(server: bakery.AppServer, path: str) -> None:
    """Fail loudly (with the server log) unless ``path`` answers 200."""
    try:
        with urllib.request.urlopen(server.base + path, timeout=10) as response:
            if response.status == 200:
                return
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    raise RuntimeError(f"GET {path} answered {status}:\n{server.log_tail()}")


class Sampler(threading.Thread):
    """Counts the app's backends in pg_stat_activity every ``interval`` seconds."""

    QUERY = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND usename = %s "
        "AND backend_type = 'client backend'"
    )

    def __init__(self, server, interval: float = 0.2):
        super().__init__(daemon=True)
        self.conn = psycopg.connect(server.superuser_conninfo(), autocommit=True)
        self.interval = interval
        self.samples: list[int] = []
        self._halt = threading.Event()

    def count(self) -> int:
        return self.conn.execute(self.QUERY, [harness.APP_DB, harness.APP_USER]).fetchone()[0]

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append(self.count())
            self._halt.wait(self.interval)

    def finish(self) -> list[int]:
        self._halt.set()
        self.join()
        self.conn.close()
        return self.samples


def workers_cpu_seconds(master_pid: int) -> float:
    """CPU time (user + system) used so far by the processes ``master_pid`` started.

    Less disturbed than throughput by what else the machine runs: a neighbour that
    takes the CPU slows the workers down, but does not make them use more of it.
    """
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # the process ended meanwhile
        if int(fields[1]) == master_pid:  # fields[0] is the state, [1] the parent
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def sessions(primary) -> int:
    """Sessions the app database has had since the server started."""
    rows = primary.execute(
        "SELECT sessions FROM pg_stat_database WHERE datname = %s", [harness.APP_DB]
    )
    return int(rows[0][0])


def terminate_app_backends(server) -> None:
    """Close every app connection left by an earlier run (PgBouncer's idle ones too)."""
    server.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = %s AND usename = %s AND backend_type = 'client backend'",
        [harness.APP_DB, harness.APP_USER],
    )


def run_once(servers: Servers, config: Config, repetition: int) -> Run:
    """Serve ``config`` with a fresh app server, warm it up and load every view."""
    run = Run(config.key, repetition)
    args = servers.args
    terminate_app_backends(servers.primary)
    if servers.replica is not None:
        terminate_app_backends(servers.replica)
    server = servers.app_server(config)
    try:
        server.wait_ready("/bench/nodb/")
        for view in VIEWS:
            check_view(server, f"/bench/{view}/")
        wrk(f"{server.base}/bench/one/", args.warmup, args)
        for view in VIEWS:
            url = f"{server.base}/bench/{view}/"
            seconds = args.duration if view == "one" else args.short_duration
            if view != "one":
                run.views[view] = wrk(url, seconds, args).__dict__
                continue
            time.sleep(args.settle)
            before = sessions(servers.primary)
            sampler = Sampler(servers.primary)
            replica_sampler = Sampler(servers.replica) if config.replica else None
            sampler.start()
            if replica_sampler:
                replica_sampler.start()
            cpu_before = workers_cpu_seconds(server.process.pid)
            result = wrk(url, seconds, args)
            cpu = workers_cpu_seconds(server.process.pid) - cpu_before
            run.cpu_us = cpu / result.requests * 1e6 if result.requests else None
            samples = sampler.finish()
            replica_samples = replica_sampler.finish() if replica_sampler else []
            time.sleep(args.settle)  # lets backends flush their session counters
            run.new_sessions = sessions(servers.primary) - before
            run.conns_max = max(samples) if samples else None
            run.conns_median = statistics.median(samples) if samples else None
            run.replica_conns_max = max(replica_samples) if replica_samples else None
            run.views[view] = result.__dict__
        bad = {
            v: (r["non_2xx"], r["socket_errors"])
            for v, r in run.views.items()
            if r["non_2xx"] or r["socket_errors"]
        }
        if bad:
            run.error = "errors (non-2xx, socket) per view: " + ", ".join(
                f"{v}={n}/{s}" for v, (n, s) in bad.items()
            )
            if any(n for n, _ in bad.values()):
                raised = re.findall(r"^\S*(?:Error|Exception)\S*: .*$", server.log_tail(200), re.M)
                run.error += f"; server log: {raised[-1]}" if raised else ""
    except Exception as error:
        run.error = f"{type(error).__name__}: {error}"
    finally:
        server.stop()
    return run


def measure(servers: Servers, configs: list[Config]) -> list[Run]:
    """Every configuration once per repetition, interleaved and rotated: A B C, B C A, ....

    Rotating gives every configuration every place in the order, so a drift within a
    repetition (a warming cache, a neighbour's load) favours none of them.
    """
    runs = []
    for repetition in range(1, servers.args.reps + 1):
        shift = (repetition - 1) % len(configs)
        for config in configs[shift:] + configs[:shift]:
            run = run_once(servers, config, repetition)
            runs.append(run)
            one = run.views.get("one", {})
            log(
                f"rep {repetition} {config.key:22} one={one.get('rps', 0):8.1f} req/s "
                f"p99={one.get('p99_ms') or 0:6.1f}ms conns={run.conns_max} "
                f"sessions={run.new_sessions}" + (f"  ERROR {run.error[:300]}" if run.error else "")
            )
    return runs
