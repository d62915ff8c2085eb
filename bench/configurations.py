"""What is measured: the baked projects, the views and the configurations served."""

from dataclasses import dataclass, field

from devtools.bakery import CHOICES

# The Django versions a run can bake; cookiecutter.json's default first, the one run unless told.
DJANGO_VERSIONS = CHOICES["django_version"]
# Baked projects by name: the answers that differ from the template's defaults.
PROJECTS = {
    "default": {},
    "pgbouncer": {"use_pgbouncer": True},
    "replica": {"use_read_replica": True},
}
VIEWS = ("one", "five", "nodb")  # measured in this order after a warm-up on /one/


@dataclass
class Config:
    """One configuration served and loaded: a baked project, a server and its environment."""

    key: str
    label: str
    project: str  # key of PROJECTS
    server: str  # "wsgi" (gunicorn sync) or "asgi" (uvicorn)
    env: dict[str, str] = field(default_factory=dict)
    tls: bool = False
    replica: bool = False  # also count the app's connections on the replica
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
        "persistent (`CONN_MAX_AGE=60`, health checks, bounded waits: the template default)",
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
    ),
    Config(
        "pgbouncer-persistent",
        "PgBouncer, persistent client conns (`CONN_MAX_AGE=60`, template default)",
        "pgbouncer",
        "wsgi",
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
# Peers' published production settings, served by our baked project (bench_settings.py).
PEERS = ("peer-cookiecutter-django", "peer-wemake")
CONFIGS += [
    Config(
        "peer-cookiecutter-django",
        "peer: cookiecutter-django (`ATOMIC_REQUESTS`, `CONN_MAX_AGE=60`, no health checks)",
        "default",
        "wsgi",
        {"BENCH_PEER": "cookiecutter-django"},
        smoke=True,
    ),
    Config(
        "peer-wemake",
        "peer: wemake-django-template (`CONN_MAX_AGE=60`, `statement_timeout` option, "
        "no health checks)",
        "default",
        "wsgi",
        {"BENCH_PEER": "wemake"},
        smoke=True,
    ),
]
CONFIG_BY_KEY = {config.key: config for config in CONFIGS}
BASELINE = "startproject"


def select(args) -> list[Config]:
    """The configurations a run measures, in order: ``--only``, or the smoke or full set."""
    if args.only:
        keys = args.only.split(",")
        unknown = set(keys) - {c.key for c in CONFIGS}
        if unknown:
            raise SystemExit(f"unknown configuration(s): {', '.join(sorted(unknown))}")
        configs = [c for c in CONFIGS if c.key in keys]
        if BASELINE not in keys:
            configs.insert(0, CONFIG_BY_KEY[BASELINE])
    else:
        configs = [
            c for c in CONFIGS if (c.smoke or not args.smoke) and (args.extra or not c.extra)
        ]
    # TLS is a full-run-only row; smoke keeps to the plain setups.
    if args.no_tls or (args.smoke and not args.only):
        configs = [c for c in configs if not c.tls]
    return configs
