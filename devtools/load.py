"""A bounded HTTP load from a second process, recording every request for a drill.

    python -m devtools.load BASE_URL PATH --clients 4 --seconds 10 --out results.json

Each client thread, with a cookie jar of its own like one browser, sends requests one
after another until the time is up (or ``--max-requests`` in all) and records when each
started and ended, its status, and the body's ``alias`` (or the error). ``--write`` sends
POSTs carrying a unique ``token``, so a drill can count afterwards which answered writes
are in the database; ``--write-share 0.1 --write-path /w/`` makes one request in ten such a
write and the others reads of PATH, as a site's users do, and ``--pause`` gives each client
time to think between requests. SIGTERM ends the load early, with its records written.
Loopback only.
"""

import argparse
import http.cookiejar
import json
import random
import signal
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

TIMEOUT = 30  # seconds per request: longer than any bound under test


def request(opener, url, *, write):
    """Send one request; return its record."""
    token = uuid.uuid4().hex if write else None
    data = urllib.parse.urlencode({"token": token}).encode() if write else None
    record = {"start": time.time(), "token": token, "write": write}
    try:
        with opener.open(url, data=data, timeout=TIMEOUT) as response:
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


def failed(records):
    """The records of requests that got no answer, or an error status (redirects are followed)."""
    return [record for record in records if not (record["status"] or 0) < 400]


def load(base, path, *, clients, seconds, max_requests, write, stop=None, **mix):
    """Run the load; return every request's record, in start order.

    ``mix`` may hold ``write_share``, ``write_path`` and ``pause`` (see the module docstring).
    Setting the ``stop`` event ends the load before its time is up.
    """
    stop = stop or threading.Event()
    write_share, write_path = mix.get("write_share", 0.0), mix.get("write_path")
    pause = mix.get("pause", 0.0)
    deadline = time.monotonic() + seconds
    records, lock = [], threading.Lock()

    def client(number):
        cookies = urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        opener = urllib.request.build_opener(cookies)
        choose = random.Random(number)  # a workload mix, the same each run
        while time.monotonic() < deadline and not stop.is_set():
            with lock:
                if len(records) >= max_requests:
                    return
            mixed_write = write_share and choose.random() < write_share
            url = base + (write_path if mixed_write else path)
            record = request(opener, url, write=write or bool(mixed_write))
            record["client"] = number
            with lock:
                records.append(record)
            time.sleep(pause)

    threads = [threading.Thread(target=client, args=(number,)) for number in range(clients)]
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
    parser.add_argument("--write", action="store_true", help="every request is a write")
    parser.add_argument("--write-share", type=float, default=0.0)
    parser.add_argument("--write-path", help="where the --write-share writes go")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between requests")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if urllib.parse.urlsplit(args.base).hostname not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the load goes to loopback only")
    if args.write_share and not args.write_path:
        parser.error("--write-share needs --write-path")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    records = load(
        args.base,
        args.path,
        clients=args.clients,
        seconds=args.seconds,
        max_requests=args.max_requests,
        write=args.write,
        stop=stop,
        write_share=args.write_share,
        write_path=args.write_path,
        pause=args.pause,
    )
    with open(args.out, "w") as out:
        json.dump(records, out)


if __name__ == "__main__":
    main()
