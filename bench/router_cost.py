"""The read-replica router's decision cost: bench/router_timeit.py run in the replica project,
and its share of a one-query request at the throughput measured.
"""

import json
import os
from pathlib import Path

from bench.log import last_lines
from bench.servers import Servers
from devtools import bakery

ROUTER_TIMEIT = Path(__file__).resolve().parent / "router_timeit.py"


def measure_router(servers: Servers, one_rps: float | None) -> dict | None:
    """router_timeit.py's timings, priced per request at ``one_rps`` (the replica row's
    req/s); None without a replica project, ``{"error": ...}`` when it fails.
    """
    if "replica" not in servers.projects:
        return None
    env = servers.env_for("replica", {})
    env["BENCH_ROUTER_NUMBER"] = str(servers.args.router_number)
    result = bakery.run(
        [servers.pythons["replica"], str(ROUTER_TIMEIT)],
        cwd=servers.projects["replica"],
        env=env,
        check=False,
        timeout=300,
    )
    if result.returncode != 0:
        return {"error": last_lines(result.stderr or result.stdout)}
    micro = json.loads(result.stdout.strip().splitlines()[-1])
    micro["one_query_rps"] = one_rps
    if one_rps:
        timings = micro["timings_ns"]
        cost_ns = timings[micro["per_request_key"]] * micro["calls_per_request"]
        cost_ns += timings[micro["middleware_key"]]
        replica_cursor, primary_cursor = (timings[key] for key in micro["cursor_keys"])
        cost_ns += max(replica_cursor - primary_cursor, 0.0)
        micro["cost_per_request_ns"] = cost_ns
        cost_s = cost_ns * 1e-9
        micro["nproc"] = os.cpu_count()
        micro["share_conservative"] = cost_s * one_rps
        micro["share_machine"] = cost_s * one_rps / os.cpu_count()
    return micro
