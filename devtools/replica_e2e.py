"""The read-replica end-to-end app: what ``tests/test_replica_*.py`` add to a baked
``use_read_replica`` project, serve with gunicorn and drive over HTTP.

A tiny URLconf (``e2e_urls``) and a settings module serving it (``e2e_settings``) are written
into the baked project, not into the template. Each connection is named after what opened it
(``application_name``), so a test can find its sessions in ``pg_stat_activity``.
"""

import contextlib
import http.cookiejar
import json
import textwrap
import urllib.parse
import urllib.request

from devtools.projects import Project

DJANGO_VERSIONS = ["5.2", "6.1"]  # in this order: the newer one migrates last

E2E_SETTINGS = """\
from config.settings.local import *  # noqa: F403

ROOT_URLCONF = "e2e_urls"
"""

E2E_URLS = """\
import json

from django.contrib.admin.models import LogEntry
from django.db import connection, connections
from django.http import JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from users.models import User



def in_recovery(alias):
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_is_in_recovery()")
        return cursor.fetchone()[0]


@csrf_exempt
def search(request):
    entries = LogEntry.objects.filter(object_repr=request.POST.get("text", ""))
    return JsonResponse({"found": entries.exists(), "alias": entries.db})


@csrf_exempt
def stream(request):
    user = User.objects.get(username="e2e")
    LogEntry.objects.create(user=user, action_flag=1, object_repr=request.GET["text"])

    def body():
        entries = LogEntry.objects.filter(object_repr=request.GET["text"])
        yield json.dumps({"found": entries.exists(), "alias": entries.db})

    return StreamingHttpResponse(body(), content_type="application/json")


@csrf_exempt
def notes(request):
    if request.method == "POST":
        user = User.objects.get(username="e2e")
        LogEntry.objects.create(user=user, action_flag=1, object_repr=request.POST["text"])
        return redirect("/notes/")
    entries = LogEntry.objects.order_by("pk")
    texts = [entry.object_repr for entry in entries]
    return JsonResponse(
        {"notes": texts, "alias": entries.db, "recovery": in_recovery(entries.db)}
    )


def raw_note(request):
    # A raw INSERT the router never sees, then a read: the write must pin the read.
    user = User.objects.get(username="e2e")
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO django_admin_log (action_time, user_id, object_repr, action_flag, "
            "change_message) VALUES (now(), %s, %s, 1, '')",
            [user.pk, request.GET["text"]],
        )
    entries = LogEntry.objects.filter(object_repr=request.GET["text"])
    return JsonResponse({"found": entries.exists(), "alias": entries.db})


async def anotes(request):
    texts = [entry.object_repr async for entry in LogEntry.objects.order_by("pk").aiterator()]
    return JsonResponse({"notes": texts})


urlpatterns = [
    path("notes/", notes),
    path("anotes/", anotes),
    path("raw-note/", raw_note),
    path("search/", search),
    path("stream/", stream),
]
"""


def urls(primary, replica, application_name):
    """DATABASE_URL and DATABASE_REPLICA_URLS at the harness's servers, every connection
    named ``application_name``."""

    def url(server):
        return f"{server.url()}?application_name={application_name}"

    return {"DATABASE_URL": url(primary), "DATABASE_REPLICA_URLS": url(replica)}


def shell_json(project, env, code):
    """Run ``code`` in ``manage.py shell`` (dedented); return the JSON it printed last."""
    result = project.shell(textwrap.dedent(code), env=env, timeout=60)
    return json.loads(result.stdout.strip().splitlines()[-1])


def bake_e2e_project(version, output_dir, primary, replica):
    """Bake a ``use_read_replica`` project on Django ``version`` with the e2e app, its
    connections named e2e; migrate it and create its user "e2e"."""
    project = Project.bake(
        {"django_version": version, "use_read_replica": True},
        output_dir,
        modules={"e2e_settings": E2E_SETTINGS, "e2e_urls": E2E_URLS},
        DJANGO_SETTINGS_MODULE="e2e_settings",
        DJANGO_DEBUG="false",
        **urls(primary, replica, "e2e"),
        DATABASE_REPLICA_CONNECT_TIMEOUT="1",
    )
    project.manage("migrate", "--no-input", timeout=600)
    shell_json(
        project,
        project.env(**urls(primary, replica, "e2e_shell")),
        """
        import json
        from users.models import User
        User.objects.get_or_create(username="e2e")
        print(json.dumps(True))
        """,
    )
    return project


@contextlib.contextmanager
def serving(project, **variables):
    """Serve ``project`` with gunicorn on a free loopback port, ``variables`` added to its
    environment; yield its base URL."""
    options = ("--workers=1", "--threads=2", "--timeout=30")
    with project.serve(project.env(**variables), options=options) as server:
        yield server.base


class Client:
    """An HTTP client with its own cookie jar, like one browser."""

    def __init__(self, base):
        self.base = base
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def get(self, path):
        with self.opener.open(self.base + path, timeout=30) as response:
            return json.loads(response.read())

    def pin(self):
        """Return this client's pin cookie, or None once it expired."""
        pins = [c.value for c in self.cookies if c.name == "primary_pin" and not c.is_expired()]
        return pins[0] if pins else None

    def post(self, path, **data):
        body = urllib.parse.urlencode(data).encode()
        # urllib follows the 302 with a GET, carrying the cookies the POST set.
        with self.opener.open(self.base + path, data=body, timeout=30) as response:
            return json.loads(response.read())

    def set_cookie(self, name, value):
        cookie = http.cookiejar.Cookie(
            0, name, value, None, False, "127.0.0.1", False, False, "/", True, False,
            None, False, None, None, {},
        )  # fmt: skip
        self.cookies.set_cookie(cookie)
