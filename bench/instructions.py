"""Instructions per request: the shipped default and the peers' settings, counted by callgrind.

Throughput and CPU time on a shared 2-core machine move by several per cent between
repetitions; the instructions the app process executes do not. ``app/inprocess.py`` serves
``/bench/one/`` through the production WSGI application in one process, under
``valgrind --tool=callgrind``, with Python's hash seed and the view's random keys fixed: two
runs (WARM and WARM + COUNTED requests) subtract start-up and the first connection, leaving
the instructions of COUNTED steady-state requests. The database server's work is not counted:
it runs in its own processes.
"""

import re
import shutil

from bench.configurations import CONFIG_BY_KEY, PEERS
from bench.log import first_line, log
from bench.servers import Servers
from devtools import bakery

CONFIGS = ("persistent", *PEERS)
WARM, COUNTED = 100, 500  # requests; a smoke run counts a tenth, of the shipped default only
COLLECTED = re.compile(r"Collected : (\d+)")


def count(servers: Servers, key: str, requests: int) -> int:
    """The instructions a process serving ``requests`` requests of ``key`` executes."""
    config = CONFIG_BY_KEY[key]
    env = servers.env_for(config.project, config.env) | {"PYTHONHASHSEED": "0"}
    python, project = servers.pythons[config.project], servers.projects[config.project]
    result = bakery.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         python, "inprocess.py", str(requests)],
        cwd=project, env=env, timeout=900,
    )  # fmt: skip
    return int(COLLECTED.search(result.stderr).group(1))


def measure_instructions(servers: Servers) -> dict:
    """Instructions per steady-state request of each configuration, or why none were counted."""
    if shutil.which("valgrind") is None:
        return {"error": "valgrind is not installed (Debian package valgrind)"}
    scale = 10 if servers.args.smoke else 1
    warm_requests, counted = WARM // scale, COUNTED // scale
    # Python's start-up under callgrind takes a minute or more: a smoke run counts one row.
    keys = CONFIGS[:1] if servers.args.smoke else CONFIGS
    per_request = {}
    for key in keys:
        try:
            warm = count(servers, key, warm_requests)
            total = count(servers, key, warm_requests + counted)
        except (AssertionError, AttributeError) as error:
            return {"error": f"{key}: {first_line(error)}"}
        per_request[key] = (total - warm) / counted
        log(f"instructions per request, {key}: {per_request[key]:,.0f}")
    return {"counted": counted, "per_request": per_request}


def section(instructions: dict) -> list[str]:
    """The app process's instructions per steady-state request, shipped default against peers."""
    if not instructions:
        return ["Not measured."]
    if "error" in instructions:
        return [f"Not measured: {instructions['error']}"]
    counts = instructions["per_request"]
    ours = counts["persistent"]
    out = [
        f"`/bench/one/` served {instructions['counted']} times in one process through the "
        "production WSGI application under `valgrind --tool=callgrind` (bench/instructions.py): "
        "the same count on every run, where req/s and CPU time move by several per cent.",
        "",
        "| configuration | instructions per request | ÷ shipped default |",
        "|---|---:|---:|",
    ]
    for key, value in counts.items():
        out.append(f"| `{key}` | {value:,.0f} | {value / ours:.3f} |")
    return out
