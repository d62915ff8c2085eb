"""The benchmark keeps working: a smoke run loads every smoke configuration without error.

Timings are the benchmark's business (bench/run), never asserted here.
"""

import sys

from devtools.bakery import ROOT, run

SMOKE_ROWS = (
    "`startproject` default",
    "persistent",
    "ASGI",
    "PgBouncer",
    "read replica router",
    "peer: cookiecutter-django",
    "peer: wemake-django-template",
)
SECTIONS = (
    "Router decision cost",
    "Drills beside the benchmark",
    "Mixed workload",
    "app workers' CPU per request: ",  # written only when both rows measured it
)


def test_benchmark_smoke_run_reports_every_configuration(tmp_path):
    report = tmp_path / "smoke.md"
    # --smoke exits non-zero on any failed request, server, skipped configuration, or an
    # error in the router micro-benchmark, the drills or the mixed workload.
    run([sys.executable, ROOT / "bench", "--smoke", "--output", report], timeout=900)
    table = report.read_text()
    missing = [row for row in (*SMOKE_ROWS, *SECTIONS) if row not in table]
    assert missing == []
