"""Serve ``/bench/one/`` N times in this process, through the project's production WSGI
application exactly as gunicorn calls it, with nothing random between runs.

Run by bench/instructions.py under valgrind (callgrind counts the instructions this process
executes): ``python inprocess.py N``. Copied into a baked project; never part of the template.
"""

import io
import os
import random
import sys

sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench_settings")

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()


def start_response(status, headers):
    if not status.startswith("200"):
        raise SystemExit(f"/bench/one/ answered {status}")


def serve():
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/bench/one/",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
    }
    body = application(environ, start_response)
    b"".join(body)
    body.close()


random.seed(0)  # the same rows, in the same order, every run
for _ in range(int(sys.argv[1])):
    serve()
