"""``bench/run``: the command line, and a run from baking to report."""

import argparse
import time
from pathlib import Path

import bench
from bench import report
from bench.configurations import BASELINE, CONFIG_BY_KEY, CONFIGS, DJANGO_VERSIONS, select
from bench.drills import run_drills
from bench.instructions import measure_instructions
from bench.log import log
from bench.machine import describe, loadavg
from bench.mixed_workload import run_mixed
from bench.router_cost import measure_router
from bench.servers import Servers
from bench.throughput import measure

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv=None):
    """The options, with the defaults of a smoke or a full run filled in."""
    parser = argparse.ArgumentParser(prog="bench/run", description=bench.__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="1 repetition, 1 s per view, "
                        "the smoke subset; exits non-zero on any error")  # fmt: skip
    parser.add_argument("--django", default=DJANGO_VERSIONS[0], choices=DJANGO_VERSIONS)
    parser.add_argument("--reps", type=int, help="repetitions (default 3; smoke 1)")
    parser.add_argument("--duration", type=int, help="seconds on /bench/one/ (default 8)")
    parser.add_argument("--short-duration", type=int, help="seconds on the other views (3)")
    parser.add_argument("--warmup", type=int, help="warm-up seconds per run (default 2)")
    parser.add_argument("--only", help="comma-separated configuration keys: "
                        + ", ".join(c.key for c in CONFIGS))  # fmt: skip
    parser.add_argument("--extra", action="store_true",
                        help="also run the extra configurations (persistent without health "
                        "checks, persistent under ASGI)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument("--workers", type=int, default=4, help="app server workers (4)")
    parser.add_argument("--pool-size", type=int, default=4, help="PgBouncer default_pool_size")
    parser.add_argument("--no-tls", action="store_true", help="skip the TLS configurations")
    parser.add_argument("--allow-skips", action="store_true",
                        help="exit 0 even when configurations were skipped")  # fmt: skip
    parser.add_argument("--output", type=Path, help="markdown report path")
    args = parser.parse_args(argv)
    smoke = args.smoke
    args.reps = args.reps or (1 if smoke else 3)
    args.duration = args.duration or (1 if smoke else 8)
    args.short_duration = args.short_duration or (1 if smoke else 3)
    args.warmup = args.warmup or (1 if smoke else 2)
    args.settle = 0.3 if smoke else 1.1
    args.router_number = 20_000 if smoke else 200_000
    if args.output is None:
        if smoke:
            args.output = RESULTS / "smoke.md.tmp"
        elif args.django == DJANGO_VERSIONS[0]:
            args.output = RESULTS / "latest.md"
        else:
            args.output = RESULTS / f"latest-django{args.django}.md"
    return args


def main(argv=None) -> int:
    """Run the benchmark; 0 when every selected configuration ran cleanly."""
    args = parse_args(argv)
    started = time.monotonic()
    configs = select(args)
    servers = Servers(args)
    loadavg_start = loadavg()
    try:
        servers.bake_projects({c.project for c in configs})
        if "default" not in servers.projects:
            raise SystemExit(
                "the default project could not be baked: " + servers.skipped.get(BASELINE, "?")
            )
        servers.start(configs)
        servers.migrate()
        active = [
            c for c in configs if c.key not in servers.skipped and c.project in servers.projects
        ]
        log("configurations: " + ", ".join(c.key for c in active))
        runs = measure(servers, active)
        summary = report.summarize(runs, configs)
        log("instructions per request (callgrind)")
        instructions = measure_instructions(servers)
        log("router micro-benchmark")
        micro = measure_router(servers, (summary.get("replica") or {}).get("rps", {}).get("one"))
        log("mixed workload")
        mixed = run_mixed(servers, 3 if args.smoke else 10, args.reps)
        log("drills (these restart the primary)")
        drills = run_drills(servers, 4 if args.smoke else 9)
        machine = describe(servers, loadavg_start)
    finally:
        servers.close()
    wall = time.monotonic() - started
    text = report.render(
        args,
        servers.skipped,
        configs,
        runs,
        summary,
        micro,
        machine,
        wall,
        drills,
        mixed,
        instructions,
    )
    data = {
        "machine": machine,
        "runs": [r.__dict__ for r in runs],
        "summary": summary,
        "router": micro,
        "instructions": instructions,
        "drills": drills,
        "mixed": mixed,
        "skipped": servers.skipped,
        "wall_seconds": wall,
    }
    report.write(text, args, data)
    print(text)
    log(f"wrote {args.output} in {wall:.0f}s")
    # An --extra row may fail on purpose (persistent connections under ASGI run out of
    # server connections): it is reported, but only the candidates decide the exit status.
    failed = [r for r in runs if r.error and not CONFIG_BY_KEY[r.config].extra]
    skipped = [c.key for c in configs if c.key in servers.skipped]
    if failed:
        log(f"{len(failed)} run(s) had errors")
        return 1
    results = [("router", micro or {}), ("instructions", instructions), *drills.items()]
    broken = [name for name, result in results if "error" in result]
    broken += [f"mixed {name}" for name, runs in mixed.items() if any("error" in r for r in runs)]
    if broken:
        log(f"errors in: {', '.join(broken)}")
        return 1
    if skipped and not args.allow_skips:
        log(f"skipped: {', '.join(skipped)} (pass --allow-skips to accept)")
        return 1
    return 0
