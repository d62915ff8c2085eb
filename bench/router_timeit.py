"""Micro-benchmark of the read-replica router's per-call decision cost.

Run by bench/router_cost.py with the replica project's Python, inside the baked project and with
the same environment as the served app (bench settings, primary + replica URLs). Prints
one JSON line: nanoseconds per call of each measured operation and the number of router
calls one ``/bench/one/`` request makes.
"""

import json
import os
import sys
import timeit

import django

sys.path.insert(0, os.getcwd())  # the baked project (bench_settings, benchapp)
django.setup()

from benchapp.models import Item  # noqa: E402
from config.replicas import use_primary  # noqa: E402
from config.replicas.middleware import ReadYourWritesMiddleware  # noqa: E402
from config.replicas.pinning import pin_reads, unpin_reads  # noqa: E402
from config.replicas.router import PrimaryReplicaRouter  # noqa: E402
from django.db import connections  # noqa: E402
from django.db import router as django_router  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.test import Client, RequestFactory  # noqa: E402

NUMBER = int(os.environ.get("BENCH_ROUTER_NUMBER", "200000"))


def ns_per_call(func, number=NUMBER):
    """Best of 5 ``timeit`` repeats, in nanoseconds per call (loop overhead subtracted)."""
    best = min(timeit.repeat(func, number=number, repeat=5))
    empty = min(timeit.repeat(lambda: None, number=number, repeat=5))
    return max(best - empty, 0.0) / number * 1e9


def main():
    router = PrimaryReplicaRouter()
    replica_alias = router.replicas[0]
    # Steady state of a request: the replica connection is open and health-checked.
    assert router.db_for_read(Item) == replica_alias, router.db_for_read(Item)
    timings = {}
    timings["PrimaryReplicaRouter.db_for_read(Item), unpinned (replica)"] = ns_per_call(
        lambda: router.db_for_read(Item)
    )
    timings["django.db.router.db_for_read(Item), unpinned (Django's dispatch + router)"] = (
        ns_per_call(lambda: django_router.db_for_read(Item))
    )
    token = pin_reads()
    try:
        assert router.db_for_read(Item) == "default"
        timings["PrimaryReplicaRouter.db_for_read(Item), pinned (primary)"] = ns_per_call(
            lambda: router.db_for_read(Item)
        )
        timings["django.db.router.db_for_read(Item), pinned"] = ns_per_call(
            lambda: django_router.db_for_read(Item)
        )
    finally:
        unpin_reads(token)

    def enter_exit():
        with use_primary():
            pass

    timings["use_primary() enter + exit"] = ns_per_call(enter_exit)

    # What a cursor costs on each: the replicas' backend adds only the fall-back to the
    # primary when the replica cannot be reached (its look and pin check run per statement).
    replica, primary = connections[replica_alias], connections["default"]
    replica.ensure_connection()
    primary.ensure_connection()
    timings["replica cursor() + close()"] = ns_per_call(
        lambda: replica.cursor().close(), number=max(NUMBER // 10, 1000)
    )
    timings["primary cursor() + close()"] = ns_per_call(
        lambda: primary.cursor().close(), number=max(NUMBER // 10, 1000)
    )

    factory = RequestFactory()
    request = factory.get("/bench/one/")
    response = HttpResponse("ok")
    middleware = ReadYourWritesMiddleware(lambda request: response)
    timings["ReadYourWritesMiddleware per request (no cookie, GET)"] = ns_per_call(
        lambda: middleware(request), number=max(NUMBER // 4, 1000)
    )

    # How many router calls one /bench/one/ request makes, through the whole stack.
    calls = {"read": 0, "write": 0}
    original_read, original_write = (
        PrimaryReplicaRouter.db_for_read,
        PrimaryReplicaRouter.db_for_write,
    )

    def counting_read(self, model, **hints):
        calls["read"] += 1
        return original_read(self, model, **hints)

    def counting_write(self, model, **hints):
        calls["write"] += 1
        return original_write(self, model, **hints)

    PrimaryReplicaRouter.db_for_read = counting_read
    PrimaryReplicaRouter.db_for_write = counting_write
    client = Client(HTTP_HOST="127.0.0.1")
    requests = 20
    for _ in range(requests):
        answer = client.get("/bench/one/")
        assert answer.status_code == 200, answer.status_code
    PrimaryReplicaRouter.db_for_read, PrimaryReplicaRouter.db_for_write = (
        original_read,
        original_write,
    )
    calls_per_request = (calls["read"] + calls["write"]) / requests

    notes = []
    if calls["write"]:
        notes.append(f"{calls['write'] / requests:g} db_for_write call(s) per request")
    print(
        json.dumps(
            {
                "number": NUMBER,
                "timings_ns": timings,
                "calls_per_request": calls_per_request,
                # What one request pays: the steady-state decision times the calls, plus the
                # middleware and what a replica cursor costs beyond a primary one.
                "per_request_key": "django.db.router.db_for_read(Item), unpinned "
                "(Django's dispatch + router)",
                "middleware_key": "ReadYourWritesMiddleware per request (no cookie, GET)",
                "cursor_keys": [
                    "replica cursor() + close()",
                    "primary cursor() + close()",
                ],
                "notes": notes,
            }
        )
    )


if __name__ == "__main__":
    main()
