# ruff: noqa: RUF001  (the report uses the multiplication sign and en dash on purpose)
"""Connection-strategy benchmark of the baked template (see bench/README.md).

Bakes the template (default, use_pgbouncer, use_read_replica), drops a tiny benchmark
app into each baked tree, starts throwaway PostgreSQL primary / streaming replica /
PgBouncer servers with ``devtools/harness/``, then loads each configuration with ``wrk``,
interleaved over several repetitions, and writes a markdown report.

Run it through ``bench/run``; ``bench/run --help`` lists the options.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from devtools import bakery, harness  # noqa: E402  (the template's own tooling)

APP_FILES = BENCH / "app"
ROUTER_MICRO = BENCH / "router_micro.py"
RESULTS = BENCH / "results"
VIEWS = ("one", "five", "nodb")  # measured in this order after a warm-up on /one/

PROJECTS = {
    "default": {},
    "pgbouncer": {"use_pgbouncer": True},
    "replica": {"use_read_replica": True},
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------- configurations


@dataclass
class Config:
    key: str
    label: str
    project: str  # key of PROJECTS
    server: str  # "wsgi" (gunicorn sync) or "asgi" (uvicorn)
    env: dict[str, str] = field(default_factory=dict)
    tls: bool = False
    pgbouncer: bool = False
    replica: bool = False
    smoke: bool = False  # part of the --smoke selection
    extra: bool = False  # only with --extra (or --only)


CONFIGS = [
    Config(
        "startproject",
        "`startproject` default (`CONN_MAX_AGE=0`)",
        "default",
        "wsgi",
        {"DATABASE_CONN_MAX_AGE": "0"},
        smoke=True,
    ),
    Config(
        "persistent",
        "persistent (`CONN_MAX_AGE=60` + health checks, template default)",
        "default",
        "wsgi",
        smoke=True,
    ),
    Config(
        "pool", "psycopg pool (min 1, max 4), WSGI", "default", "wsgi", {"DATABASE_POOL": "true"}
    ),
    Config(
        "pool-asgi",
        "psycopg pool (min 1, max 4), ASGI (the `config.asgi` default)",
        "default",
        "asgi",
        {"DATABASE_POOL": "true"},
        smoke=True,
    ),
    Config(
        "pgbouncer-0",
        "PgBouncer, `CONN_MAX_AGE=0`",
        "pgbouncer",
        "wsgi",
        {"DATABASE_CONN_MAX_AGE": "0"},
        pgbouncer=True,
    ),
    Config(
        "pgbouncer-persistent",
        "PgBouncer, persistent client conns (`CONN_MAX_AGE=60`, template default)",
        "pgbouncer",
        "wsgi",
        pgbouncer=True,
        smoke=True,
    ),
    Config(
        "replica",
        "read replica router, reads on replica (persistent)",
        "replica",
        "wsgi",
        replica=True,
        smoke=True,
    ),
    Config(
        "tls-0",
        "TLS (`sslmode=require`), `CONN_MAX_AGE=0`",
        "default",
        "wsgi",
        {"DATABASE_CONN_MAX_AGE": "0"},
        tls=True,
    ),
    Config(
        "tls-persistent",
        "TLS (`sslmode=require`), persistent: the shipped production default",
        "default",
        "wsgi",
        tls=True,
    ),
]
CONFIGS += [
    Config(
        "persistent-nohc",
        "persistent without health checks (bench-only override)",
        "default",
        "wsgi",
        {"BENCH_CONN_HEALTH_CHECKS": "false"},
        extra=True,
    ),
    Config(
        "persistent-asgi",
        "persistent under ASGI (what `config.asgi` avoids by turning the pool on)",
        "default",
        "asgi",
        {"DATABASE_POOL": "false"},
        extra=True,
    ),
]
CONFIG_BY_KEY = {config.key: config for config in CONFIGS}
BASELINE = "startproject"


# --------------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    non_2xx: int
    socket_errors: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"unparsable wrk duration {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    """Parse ``wrk --latency`` output."""
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not done or not rps:
        raise ValueError(f"unexpected wrk output:\n{output}")
    percentiles = dict(re.findall(r"^\s+(50|99)(?:\.0+)?%\s+(\S+)", output, re.MULTILINE))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    return WrkResult(
        requests=int(done.group(1)),
        seconds=_ms(done.group(2) + done.group(3)) / 1000,
        rps=float(rps.group(1)),
        p50_ms=_ms(percentiles["50"]) if "50" in percentiles else None,
        p99_ms=_ms(percentiles["99"]) if "99" in percentiles else None,
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        # Read errors are how wrk counts the server closing the connection after a
        # response (gunicorn sync workers do not keep connections alive): not failures.
        socket_errors=(int(errors.group(1)) + int(errors.group(3)) + int(errors.group(4)))
        if errors
        else 0,
    )


def wrk(url: str, seconds: float, args) -> WrkResult:
    command = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{max(round(seconds), 1)}s",  # wrk takes whole seconds only
        "--timeout",
        "10s",
        "--latency",
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stderr or result.stdout}")
    return parse_wrk(result.stdout)


# --------------------------------------------------------------------------- servers


def app_server(python: Path, project: Path, kind: str, env: dict[str, str], workers: int):
    """gunicorn with sync workers (``wsgi``) or uvicorn workers (``asgi``) serving ``project``."""
    options = ["--workers", str(workers), "--log-level", "warning", "--timeout", "60"]
    if kind == "wsgi":
        app = "config.wsgi:application"
        options += ["--worker-class", "sync"]
    else:
        # gunicorn managing uvicorn workers: `uvicorn --workers N` (0.54, h11) stalls
        # ~44 ms on every keep-alive request on loopback, which would measure the stall.
        app = "config.asgi:application"
        options += ["--worker-class", "uvicorn.workers.UvicornWorker"]
    return bakery.AppServer(python, project, env, app=app, options=options)


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


def sessions(primary) -> int:
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


def make_certificate(directory: Path) -> dict[str, object]:
    """A throwaway self-signed certificate for the primary, or raise."""
    directory.chmod(0o711)  # the server user must reach the files
    key, cert = directory / "server.key", directory / "server.crt"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    key.chmod(0o600)
    cert.chmod(0o644)
    user = harness.server_user()
    user.chown(key)
    user.chown(cert)
    return {"ssl": True, "ssl_cert_file": str(cert), "ssl_key_file": str(key)}


# --------------------------------------------------------------------------- benchmark


@dataclass
class Run:
    config: str
    repetition: int
    views: dict[str, dict] = field(default_factory=dict)
    conns_max: int | None = None
    conns_median: float | None = None
    replica_conns_max: int | None = None
    new_sessions: int | None = None
    error: str | None = None


class Bench:
    def __init__(self, args):
        self.args = args
        self.workdir = Path(tempfile.mkdtemp(prefix="connbench-"))
        self.projects: dict[str, Path] = {}
        self.pythons: dict[str, Path] = {}
        self.skipped: dict[str, str] = {}  # config key -> reason
        self.notes: list[str] = []
        self.primary = self.replica = self.bouncer = None
        self.tls = False
        self.cert_dir: Path | None = None
        self.secret = secrets.token_urlsafe(40)

    # Setup ---------------------------------------------------------------------------

    def bake_projects(self, wanted: set[str]) -> None:
        for name in PROJECTS:
            if name not in wanted:
                continue
            answers = {"django_version": self.args.django, "ci": "none", **PROJECTS[name]}
            project = bakery.bake(answers, self.workdir / f"bake-{name}")
            shutil.copytree(APP_FILES, project, dirs_exist_ok=True)
            self.projects[name] = project
            self.pythons[name] = bakery.project_python(project, self.args.django)
            # The ASGI rows need uvicorn, which is not a project dependency.
            python = self.pythons[name]
            if bakery.run([python, "-c", "import uvicorn"], check=False).returncode != 0:
                log(f"installing uvicorn into {python}")
                bakery.run([python, "-m", "pip", "install", "--quiet", "uvicorn"])
            log(f"baked {name}: {project}")

    def _skip_project(self, name: str, reason: str) -> None:
        log(f"SKIP project {name}: {reason}")
        for config in CONFIGS:
            if config.project == name:
                self.skipped.setdefault(config.key, reason)

    def start_servers(self, configs: list[Config]) -> None:
        settings: dict[str, object] = {}
        if any(c.tls for c in configs):
            try:
                self.cert_dir = Path(tempfile.mkdtemp(prefix="connbench-tls-"))
                settings = make_certificate(self.cert_dir)
                self.tls = True
            except Exception as error:
                reason = f"no TLS certificate: {_first_line(error)}"
                self._skip_tls(reason)
        log("starting PostgreSQL primary" + (" with TLS" if settings else ""))
        try:
            self.primary = harness.Primary(settings)
        except harness.HarnessError as error:
            if not settings:
                raise
            self._skip_tls(f"primary did not start with ssl=on: {_last_lines(error, 1)}")
            self.primary = harness.Primary()
        if "replica" in self.projects:
            log("starting streaming replica")
            try:
                self.replica = harness.Replica(self.primary)
            except Exception as error:
                self._skip_project("replica", f"replica failed to start: {_first_line(error)}")
                del self.projects["replica"]
        if "pgbouncer" in self.projects:
            log(f"starting PgBouncer (transaction mode, default_pool_size={self.args.pool_size})")
            try:
                self.bouncer = harness.PgBouncer(
                    self.primary,
                    default_pool_size=self.args.pool_size,
                    # The app -> PgBouncer leg is plain TCP; keep PgBouncer -> primary alike.
                    settings={"server_tls_sslmode": "disable"},
                )
            except Exception as error:
                self._skip_project("pgbouncer", f"PgBouncer failed to start: {_first_line(error)}")
                del self.projects["pgbouncer"]

    def _skip_tls(self, reason: str) -> None:
        log(f"SKIP TLS configurations: {reason}")
        for config in CONFIGS:
            if config.tls:
                self.skipped.setdefault(config.key, reason)

    def migrate(self) -> None:
        for name, project in list(self.projects.items()):
            env = self.env_for(name, {})
            # Explicit: the pgbouncer option's migrate defaults to "direct" (a whole
            # session on the primary); the others migrate "default", which is the primary.
            database = "direct" if name == "pgbouncer" else "default"
            command = [self.pythons[name], "manage.py", "migrate", "--noinput", "-v", "0",
                       "--database", database]  # fmt: skip
            try:
                bakery.run(command, cwd=project, env=env, timeout=300)
            except AssertionError as error:
                self._skip_project(name, f"migrate failed: {_last_lines(error, 1)}")
                del self.projects[name]
                continue
            log(f"migrated {name}" + (" (via DATABASE_DIRECT_URL)" if name == "pgbouncer" else ""))
        self.primary.execute("VACUUM ANALYZE benchapp_item", dbname=harness.APP_DB)
        if self.replica is not None:
            self.replica.wait_for_replay(timeout=30)

    def env_for(self, project: str, extra: dict[str, str], *, tls: bool = False) -> dict[str, str]:
        env = bakery.project_env(
            DJANGO_SETTINGS_MODULE="bench_settings",
            DJANGO_SECRET_KEY=self.secret,
            DJANGO_ALLOWED_HOSTS=f"{harness.LOOPBACK},localhost",
            DJANGO_SECURE_SSL_REDIRECT="false",
            DJANGO_LOG_LEVEL="WARNING",
            DATABASE_SSLMODE="require" if tls else "disable",
        )
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        if project == "pgbouncer":
            env["DATABASE_URL"] = self.bouncer.url()
            env["DATABASE_DIRECT_URL"] = self.primary.url()
        else:
            env["DATABASE_URL"] = self.primary.url()
        if project == "replica":
            env["DATABASE_REPLICA_URLS"] = self.replica.url()
        env.update(extra)
        return env

    # Measurement ---------------------------------------------------------------------

    def run_once(self, config: Config, repetition: int) -> Run:
        run = Run(config.key, repetition)
        args = self.args
        terminate_app_backends(self.primary)
        if self.replica is not None:
            terminate_app_backends(self.replica)
        env = self.env_for(config.project, config.env, tls=config.tls)
        server = app_server(
            self.pythons[config.project], self.projects[config.project], config.server, env,
            args.workers,
        )  # fmt: skip
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
                before = sessions(self.primary)
                sampler = Sampler(self.primary)
                replica_sampler = Sampler(self.replica) if config.replica else None
                sampler.start()
                if replica_sampler:
                    replica_sampler.start()
                result = wrk(url, seconds, args)
                samples = sampler.finish()
                replica_samples = replica_sampler.finish() if replica_sampler else []
                time.sleep(args.settle)  # lets backends flush their session counters
                run.new_sessions = sessions(self.primary) - before
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
                    raised = re.findall(
                        r"^\S*(?:Error|Exception)\S*: .*$", server.log_tail(200), re.M
                    )
                    run.error += f"; server log: {raised[-1]}" if raised else ""
        except Exception as error:
            run.error = f"{type(error).__name__}: {error}"
        finally:
            server.stop()
        return run

    def router_micro(self, one_rps: float | None) -> dict | None:
        if "replica" not in self.projects:
            return None
        env = self.env_for("replica", {})
        env["BENCH_ROUTER_NUMBER"] = str(self.args.router_number)
        result = bakery.run(
            [self.pythons["replica"], str(ROUTER_MICRO)],
            cwd=self.projects["replica"],
            env=env,
            check=False,
            timeout=300,
        )
        if result.returncode != 0:
            return {"error": _last_lines(result.stderr or result.stdout)}
        data = json.loads(result.stdout.strip().splitlines()[-1])
        data["one_query_rps"] = one_rps
        return data

    def machine(self) -> dict[str, str]:
        cpu = "unknown"
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        python = next(iter(self.pythons.values()), None)
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
            "loadavg at start / end": f"{self.loadavg_start} / {_loadavg()}",
            "postgresql": self.primary.execute("SHOW server_version")[0][0]
            if self.primary
            else "?",
            "pgbouncer": bouncer[0] if bouncer else "?",
            "wrk": (wrk_version.stdout or wrk_version.stderr).split(" [")[0],
            **versions,
        }

    def close(self) -> None:
        for server in (self.bouncer, self.replica, self.primary):
            if server is not None:
                with contextlib.suppress(Exception):
                    server.close()
        shutil.rmtree(self.workdir, ignore_errors=True)
        if self.cert_dir is not None:
            shutil.rmtree(self.cert_dir, ignore_errors=True)


# --------------------------------------------------------------------------- report


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _first_line(error: BaseException | str) -> str:
    text = str(error).strip()
    for line in text.splitlines():
        if line.startswith("ERROR"):
            return line
    return text.splitlines()[0] if text else type(error).__name__


def _last_lines(error: BaseException | str, n: int = 3) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return " | ".join(lines[-n:])


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _fmt(value, digits=0, suffix=""):
    if value is None:
        return "–"
    return f"{value:,.{digits}f}{suffix}"


def summarize(runs: list[Run], configs: list[Config]) -> dict[str, dict]:
    by_config: dict[str, list[Run]] = {}
    for run in runs:
        by_config.setdefault(run.config, []).append(run)
    summary = {}
    for config in configs:
        good = [r for r in by_config.get(config.key, []) if r.error is None]
        all_runs = [r for r in by_config.get(config.key, []) if "one" in r.views]
        if not all_runs:
            continue
        one = [r.views["one"] for r in all_runs]
        requests = sum(v["requests"] for v in one)
        new_sessions = [r.new_sessions for r in all_runs if r.new_sessions is not None]
        summary[config.key] = {
            "runs": len(all_runs),
            "clean_runs": len(good),
            "rps": {
                view: _median(r.views[view]["rps"] for r in all_runs if view in r.views)
                for view in VIEWS
            },
            "rps_by_rep": {r.repetition: r.views["one"]["rps"] for r in all_runs},
            "p50": _median(v["p50_ms"] for v in one),
            "p99": _median(v["p99_ms"] for v in one),
            "conns_max": max(
                (r.conns_max for r in all_runs if r.conns_max is not None), default=None
            ),
            "conns_median": _median(r.conns_median for r in all_runs),
            "replica_conns_max": max(
                (r.replica_conns_max for r in all_runs if r.replica_conns_max is not None),
                default=None,
            ),
            "sessions_per_1000": 1000 * sum(new_sessions) / requests if requests else None,
        }
    base = summary.get(BASELINE)
    for row in summary.values():
        row["ratio"] = row["ratio_min"] = row["ratio_max"] = None
        if base and base["rps"]["one"]:
            row["ratio"] = row["rps"]["one"] / base["rps"]["one"]
            paired = [
                rps / base["rps_by_rep"][rep]
                for rep, rps in row["rps_by_rep"].items()
                if base["rps_by_rep"].get(rep)
            ]
            if paired:
                row["ratio_min"], row["ratio_max"] = min(paired), max(paired)
        nodb = row["rps"]["nodb"]
        row["to_nodb"] = row["rps"]["one"] / nodb if nodb else None
    return summary


def targets(summary: dict, bench: Bench, micro: dict | None) -> list[str]:
    lines = []

    def mark(ok: bool) -> str:
        return "**met**" if ok else "**NOT met**"

    base = summary.get(BASELINE)
    if not base:
        return ["- n/a: the `startproject` baseline was not measured"]
    # The candidates are the configurations a project may ship; the --extra rows are
    # diagnostics that break the contract (no health checks, persistent under ASGI).
    extras = {c.key for c in CONFIGS if c.extra}
    candidates = {k: v for k, v in summary.items() if k not in extras}
    best_key = max(candidates, key=lambda k: candidates[k]["rps"]["one"] or 0)
    best = summary[best_key]["rps"]["one"]
    single = {k: v for k, v in candidates.items() if k != "replica"}
    best_single_key = max(single, key=lambda k: single[k]["rps"]["one"] or 0)
    row = summary.get("persistent")
    if row:
        ok = row["ratio"] >= 6 and row["rps"]["one"] >= 0.9 * best
        paired = [
            rps / summary[best_key]["rps_by_rep"][rep]
            for rep, rps in row["rps_by_rep"].items()
            if summary[best_key]["rps_by_rep"].get(rep)
        ]
        spread = f" (per repetition {min(paired):.2f}–{max(paired):.2f})" if len(paired) > 1 else ""
        lines.append(
            f"- shipped default (persistent, `CONN_MAX_AGE=60` + health checks) ≥ 6× "
            f"`startproject` and ≥ 0.9× the best candidate measured (`{best_key}`): "
            f"{row['ratio']:.1f}× "
            f"and {row['rps']['one'] / best:.2f}×{spread} → {mark(ok)}"
            + (
                f" (vs the best single-primary row `{best_single_key}`: "
                f"{row['rps']['one'] / single[best_single_key]['rps']['one']:.2f}×)"
                if best_single_key != best_key
                else ""
            )
        )
        nohc = summary.get("persistent-nohc")
        if nohc:
            lines.append(
                f"- (info) health checks cost: the template default is "
                f"{row['rps']['one'] / nohc['rps']['one']:.2f}× persistent without them "
                "(kept: without them a connection cut by a failover, a PgBouncer restart or "
                "an idle timeout fails the first query of the next request)"
            )
    else:
        lines.append("- shipped default: n/a (not measured)")
    tls = summary.get("tls-persistent")
    if tls:
        extra = ""
        if summary.get("tls-0"):
            extra = (
                f", {tls['rps']['one'] / summary['tls-0']['rps']['one']:.1f}× TLS `CONN_MAX_AGE=0`"
            )
        if row:
            extra += f", {tls['rps']['one'] / row['rps']['one']:.2f}× persistent without TLS"
        lines.append(
            f"- (info) shipped default as deployed, with `sslmode=require`: {tls['ratio']:.1f}× "
            f"`startproject`{extra}"
        )
    pool_size = bench.args.pool_size
    row = summary.get("pgbouncer-persistent")
    if row:
        conns = row["conns_max"]
        ok = row["ratio"] >= 5 and conns is not None and conns <= pool_size
        lines.append(
            f"- PgBouncer option as shipped (`CONN_MAX_AGE=60` to PgBouncer) ≥ 5× "
            f"`startproject` holding ≤ {pool_size} (default_pool_size) server conns: "
            f"{row['ratio']:.1f}×, max {conns} conns → {mark(ok)}"
        )
    else:
        reason = bench.skipped.get("pgbouncer-persistent", "not measured")
        lines.append(f"- PgBouncer option: n/a ({reason})")
    row = summary.get("pgbouncer-0")
    if row:
        lines.append(
            f"- (info) PgBouncer with `CONN_MAX_AGE=0`: {row['ratio']:.1f}× `startproject`, "
            f"max {row['conns_max']} server conns"
        )
    if micro and "error" not in micro and micro.get("share_conservative") is not None:
        ok = micro["share_conservative"] <= 0.02
        lines.append(
            f"- router adds ≤ 2% to a one-query request: "
            f"{100 * micro['share_conservative']:.2f}% (conservative) → {mark(ok)}"
        )
    else:
        reason = (micro or {}).get("error") or bench.skipped.get("replica", "not measured")
        lines.append(f"- router adds ≤ 2% to a one-query request: n/a ({reason})")
    return lines


def render(bench: Bench, configs, runs, summary, micro, machine, wall: float) -> str:
    args = bench.args
    mode = "smoke" if args.smoke else "full"
    out = [
        f"# Connection-strategy benchmark ({mode} run, "
        f"Django {machine.get('django', args.django)})",
        "",
        "Generated by `bench/run"
        + (" --smoke" if args.smoke else "")
        + (f" --django {args.django}" if args.django != "5.2" else "")
        + (" --extra" if args.extra else "")
        + "`; see bench/README.md. Ratios within one run are what to compare; "
        "noise between repetitions is ±15–25% on a shared 2-core machine.",
        "",
        "## Machine",
        "",
        *(f"- {k}: {v}" for k, v in machine.items()),
        "",
        "## Method",
        "",
        f"- {args.reps} repetition(s), configurations interleaved (A B C … × {args.reps}); "
        "each run "
        f"starts a fresh app server, warms up {args.warmup:g}s on `/bench/one/`, then loads "
        f"`/bench/one/` {args.duration:g}s, `/bench/five/` and `/bench/nodb/` "
        f"{args.short_duration:g}s each with "
        f"`wrk -t{args.threads} -c{args.connections} --latency`.",
        f"- WSGI: gunicorn, {args.workers} sync workers; ASGI: gunicorn with {args.workers} "
        "`uvicorn.workers.UvicornWorker` workers (h11, no uvloop/httptools). All on "
        "127.0.0.1; PostgreSQL has fsync off.",
        f"- PgBouncer: transaction mode, SCRAM, default_pool_size={args.pool_size}, "
        "reserve_pool_size=0, server TLS off. TLS rows: self-signed cert on the primary, "
        "`DATABASE_SSLMODE=require`; every other row uses `DATABASE_SSLMODE=disable`.",
        "- req/s: median over repetitions. Ratio range: min–max of the per-repetition ratios "
        "to `startproject` in the same repetition. Latency: median of per-run p50/p99 on "
        "`/bench/one/`.",
        "- Server conns: the app role's client backends in `pg_stat_activity` on the primary, "
        "sampled every 0.2s during the `/bench/one/` load (max over runs / median sample). "
        "New sessions: delta of `pg_stat_database.sessions` for the app database during that "
        "load, per 1000 requests served.",
        "",
        "## Results (one primary-key SELECT per request unless noted)",
        "",
        "| configuration | req/s (1 query) | × startproject (range) | ÷ no-DB view | p50 ms | "
        "p99 ms | req/s (5 queries) | req/s (no DB) | primary conns max / median | "
        "new sessions per 1000 req |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for config in configs:
        row = summary.get(config.key)
        if row is None:
            reason = bench.skipped.get(config.key) or "failed in every run (see below)"
            out.append(f"| {config.label} | skipped: {reason} | | | | | | | | |")
            continue
        ratio = _fmt(row["ratio"], 2, "×")
        if row["ratio_min"] is not None and row["runs"] > 1:
            ratio += f" ({row['ratio_min']:.1f}–{row['ratio_max']:.1f})"
        conns = f"{_fmt(row['conns_max'])} / {_fmt(row['conns_median'], 1)}"
        if row["replica_conns_max"] is not None:
            conns += f" (replica max {row['replica_conns_max']})"
        label = config.label
        if row["clean_runs"] < row["runs"]:
            label += f" ⚠ {row['runs'] - row['clean_runs']} run(s) with errors"
        out.append(
            f"| {label} | {_fmt(row['rps']['one'])} | {ratio} | {_fmt(row['to_nodb'], 2)} | "
            f"{_fmt(row['p50'], 1)} | {_fmt(row['p99'], 1)} | {_fmt(row['rps']['five'])} | "
            f"{_fmt(row['rps']['nodb'])} | {conns} | {_fmt(row['sessions_per_1000'], 1)} |"
        )
    out += ["", "## Router decision cost", ""]
    if micro is None:
        out.append(
            f"Not measured: {bench.skipped.get('replica', 'replica project not available')}."
        )
    elif "error" in micro:
        out.append(f"Failed: {micro['error']}")
    else:
        out += [
            "`timeit` in the replica project's Python, settings as served "
            f"({micro['number']:,} calls per measurement, best of 5):",
            "",
            "| call | ns per call |",
            "|---|---:|",
            *(f"| {name} | {ns:,.0f} |" for name, ns in micro["timings_ns"].items()),
            "",
            f"- router calls per `/bench/one/` request (counted through Django's test client): "
            f"{micro['calls_per_request']}",
        ]
        if micro.get("share_conservative") is not None:
            out += [
                f"- cost per request: {micro['calls_per_request']:g} × dispatch + router "
                f"decision + the middleware = {micro['cost_per_request_ns']:,.0f} ns (the "
                "first read's health-check `SELECT 1` is not counted: it replaces the one "
                "Django's `CONN_HEALTH_CHECKS` runs before the first query anyway)",
                "- per-request time at the replica row's median "
                f"{micro['one_query_rps']:,.0f} req/s:"
                f" {1e6 / micro['one_query_rps']:,.0f} µs wall per request served "
                f"({1e6 * micro['nproc'] / micro['one_query_rps']:,.0f} µs of machine time on "
                f"{micro['nproc']} cores)",
                f"- router share of a one-query request: {100 * micro['share_conservative']:.2f}% "
                f"counting wall time (conservative), {100 * micro['share_machine']:.2f}% of "
                "machine time",
            ]
        if micro.get("notes"):
            out += [f"- {note}" for note in micro["notes"]]
    out += ["", "## Targets (one-query view, this run)", "", *targets(summary, bench, micro)]
    errors = [r for r in runs if r.error]
    notes = list(bench.notes)
    notes += [f"skipped `{key}`: {reason}" for key, reason in bench.skipped.items()
              if key in {c.key for c in configs}]  # fmt: skip
    notes += [
        f"run error `{r.config}` rep {r.repetition}: " + r.error.replace("\n", " / ")[:600]
        for r in errors
    ]
    if notes:
        out += ["", "## Notes", "", *(f"- {n}" for n in notes)]
    out += ["", f"Wall time: {wall:.0f}s.", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------- main


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="1 repetition, 1 s per view, "
                        "the smoke subset; exits non-zero on any error")  # fmt: skip
    parser.add_argument("--django", default="5.2", choices=["5.2", "6.1"])
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
        elif args.django == "5.2":
            args.output = RESULTS / "latest.md"
        else:
            args.output = RESULTS / f"latest-django{args.django}.md"
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    if args.only:
        keys = args.only.split(",")
        unknown = set(keys) - {c.key for c in CONFIGS}
        if unknown:
            raise SystemExit(f"unknown configuration(s): {', '.join(sorted(unknown))}")
        configs = [c for c in CONFIGS if c.key in keys]
        if BASELINE not in keys:
            configs.insert(0, next(c for c in CONFIGS if c.key == BASELINE))
    else:
        configs = [
            c for c in CONFIGS if (c.smoke or not args.smoke) and (args.extra or not c.extra)
        ]
    if args.smoke and not args.only:
        args.no_tls = True  # TLS is a full-run-only row; smoke keeps to the plain setups
    if args.no_tls:
        configs = [c for c in configs if not c.tls]
    bench = Bench(args)
    bench.loadavg_start = _loadavg()
    runs: list[Run] = []
    micro = None
    try:
        bench.bake_projects({c.project for c in configs})
        if "default" not in bench.projects:
            raise SystemExit(
                "the default project could not be baked: " + bench.skipped.get(BASELINE, "?")
            )
        bench.start_servers(configs)
        bench.migrate()
        active = [c for c in configs if c.key not in bench.skipped and c.project in bench.projects]
        log("configurations: " + ", ".join(c.key for c in active))
        for repetition in range(1, args.reps + 1):
            for config in active:
                run = bench.run_once(config, repetition)
                runs.append(run)
                one = run.views.get("one", {})
                log(
                    f"rep {repetition} {config.key:22} one={one.get('rps', 0):8.1f} req/s "
                    f"p99={one.get('p99_ms') or 0:6.1f}ms conns={run.conns_max} "
                    f"sessions={run.new_sessions}"
                    + (f"  ERROR {run.error[:300]}" if run.error else "")
                )
        summary = summarize(runs, configs)
        replica_rps = (summary.get("replica") or {}).get("rps", {}).get("one")
        log("router micro-benchmark")
        micro = bench.router_micro(replica_rps)
        if micro and "error" not in micro and replica_rps:
            timings = micro["timings_ns"]
            cost_ns = timings[micro["per_request_key"]] * micro["calls_per_request"]
            cost_ns += timings[micro["middleware_key"]]
            micro["cost_per_request_ns"] = cost_ns
            cost_s = cost_ns * 1e-9
            micro["nproc"] = os.cpu_count()
            micro["share_conservative"] = cost_s * replica_rps
            micro["share_machine"] = cost_s * replica_rps / os.cpu_count()
        machine = bench.machine()
    finally:
        bench.close()
    wall = time.monotonic() - started
    report = render(bench, configs, runs, summary, micro, machine, wall)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.output.with_name(args.output.name + ".tmp")
    if temporary == args.output:
        args.output.write_text(report)
    else:
        temporary.write_text(report)
        temporary.replace(args.output)
    args.output.with_suffix(".json").write_text(
        json.dumps(
            {"machine": machine, "runs": [r.__dict__ for r in runs], "summary": summary,
             "router": micro, "skipped": bench.skipped, "wall_seconds": wall},
            indent=1, default=str,
        )
    ) if not args.smoke else None  # fmt: skip
    print(report)
    log(f"wrote {args.output} in {wall:.0f}s")
    # An --extra row may fail on purpose (persistent connections under ASGI run out of
    # server connections): it is reported, but only the candidates decide the exit status.
    failed = [r for r in runs if r.error and not CONFIG_BY_KEY[r.config].extra]
    skipped = [c.key for c in configs if c.key in bench.skipped]
    if failed:
        log(f"{len(failed)} run(s) had errors")
        return 1
    if skipped and not args.allow_skips:
        log(f"skipped: {', '.join(skipped)} (pass --allow-skips to accept)")
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except SystemExit:
        raise
    except BaseException:
        traceback.print_exc()
        sys.exit(1)
