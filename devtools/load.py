"""A bounded HTTP load from a second process, recording every request for a drill.

    python -m devtools.load BASE_URL PATH --clients 4 --seconds 10 --out results.json

Each client thread sends requests one after another until the time is up (or
``--max-requests`` in all) and records when each started and ended, its status, and the
body's ``alias`` (or the error). ``--write`` sends POSTs carrying a unique ``token``, so a
drill can count afterwards which answered writes are in the database. Loopback only.
"""

import argparse
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

TIMEOUT = 30  # seconds per request: longer than any bound under test


def request(url, *, write):
    """Send one request; return its record."""
    token = uuid.uuid4().hex if write else None
    data = urllib.parse.urlencode({"token": token}).encode() if write else None
    record = {"start": time.time(), "token": token}
    try:
        with urllib.request.urlopen(url, data=data, timeout=TIMEOUT) as response:
            body = response.read()
            record["status"] = response.status
    except urllib.error.HTTPError as error:
        body = error.read()
        record["status"] = error.code
    except OSError as error:
        body = b""
        record["status"] = None
        record["error"] = type(error).__name__
    record["end"] = time.time()
    try:
        record["alias"] = json.loads(body).get("alias")
    except (ValueError, AttributeError):
        record["body"] = body[:200].decode(errors="replace")
    return record


def load(url, *, clients, seconds, max_requests, write):
    """Run the load; return every request's record, in start order."""
    deadline = time.monotonic() + seconds
    records, lock = [], threading.Lock()

    def client():
        while time.monotonic() < deadline:
            with lock:
                if len(records) >= max_requests:
                    return
            record = request(url, write=write)
            with lock:
                records.append(record)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(records, key=lambda record: record["start"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base")
    parser.add_argument("path")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=100_000)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if urllib.parse.urlsplit(args.base).hostname not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the load goes to loopback only")
    records = load(
        args.base + args.path,
        clients=args.clients,
        seconds=args.seconds,
        max_requests=args.max_requests,
        write=args.write,
    )
    with open(args.out, "w") as out:
        json.dump(records, out)


if __name__ == "__main__":
    main()
