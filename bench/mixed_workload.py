"""The mixed workload: clients that write on a share of their requests, as a site's users
do, against the replica project; position pins (shipped) against today's fixed pin.

Reported: the share of reads served by a replica, and how long after its write a writer
reads from a replica again.
"""

import json
import statistics
import sys

from bench.configurations import Config
from bench.log import log
from bench.servers import Servers
from devtools import bakery
from devtools.load import failed

WRITE_SHARE = 0.1
CLIENTS = 16
PAUSE = 0.1  # seconds each client thinks between requests: a write every ~1 s per client
FIXED_PIN_SECONDS = 5
VARIANTS = {
    "position": Config("mixed-position", "position pins (shipped)", "replica", "wsgi"),
    "fixed": Config(
        "mixed-fixed",
        f"fixed {FIXED_PIN_SECONDS} s pin (before)",
        "replica",
        "wsgi",
        {"BENCH_FIXED_PIN": str(FIXED_PIN_SECONDS)},
    ),
}


def analyse(records: list[dict]) -> dict:
    """The replica share of reads and the writers' return times, from one load's records."""
    reads = [r for r in records if not r["write"] and r["status"] == 200]
    on_replica = [r for r in reads if (r.get("alias") or "").startswith("replica")]
    returns = []
    by_client: dict[int, list[dict]] = {}
    for record in records:
        by_client.setdefault(record["client"], []).append(record)
    for own in by_client.values():
        for index, record in enumerate(own):
            if not record["write"]:
                continue
            for later in own[index + 1 :]:
                if later["write"]:
                    break  # wrote again before returning: not counted
                if (later.get("alias") or "").startswith("replica"):
                    returns.append(later["start"] - record["end"])
                    break
    return {
        "requests": len(records),
        "failed": len(failed(records)),
        "reads": len(reads),
        "replica_share": len(on_replica) / len(reads) if reads else None,
        "return_median_s": statistics.median(returns) if returns else None,
        "return_p90_s": statistics.quantiles(returns, n=10)[-1] if len(returns) > 1 else None,
        "returns": len(returns),
    }


def run_mixed(servers: Servers, seconds: float, reps: int) -> dict[str, list[dict]]:
    """Each variant ``reps`` times, interleaved; the analysed records of every run."""
    results: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    if "replica" not in servers.projects:
        return results
    for repetition in range(1, reps + 1):
        for name, config in VARIANTS.items():
            server = servers.app_server(config)
            out = server.log_path.with_suffix(".mixed.json")
            try:
                server.wait_ready("/bench/nodb/")
                command = [
                    sys.executable, "-m", "devtools.load", server.base, "/bench/read/",
                    "--clients", str(CLIENTS), "--pause", str(PAUSE), "--seconds", str(seconds),
                    "--write-share", str(WRITE_SHARE), "--write-path", "/bench/write/",
                    "--out", str(out),
                ]  # fmt: skip
                bakery.run(command, cwd=bakery.ROOT, timeout=seconds + 120)
                result = analyse(json.loads(out.read_text()))
            except Exception as error:
                result = {"error": f"{type(error).__name__}: {error}"}
            finally:
                server.stop()
            results[name].append(result)
            log(f"mixed rep {repetition} {name}: {result}")
    return results
