"""The drills' view of a baked project: a read and a write of one row each, served under the
project's own production settings.

``MODULES`` goes to :meth:`devtools.projects.Project.bake` (``modules=``) with
``DJANGO_SETTINGS_MODULE=SETTINGS_MODULE``. The write creates an admin ``LogEntry`` for the
user "drill" (the caller creates it) carrying the POSTed ``token``, so a drill can count which
answered writes the database kept; each view answers with the alias it used.
"""

SETTINGS_MODULE = "drill_settings"

SETTINGS = """\
from config.settings.production import *  # noqa: F403

ROOT_URLCONF = "drill_urls"
"""

URLS = """\
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.http import JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt


def read(request):
    entries = LogEntry.objects.filter(pk=1)
    list(entries)
    return JsonResponse({"alias": entries.db})


@csrf_exempt
def write(request):
    user = get_user_model().objects.get(username="drill")
    entry = LogEntry.objects.create(user=user, action_flag=1, object_repr=request.POST["token"])
    return JsonResponse({"alias": entry._state.db}, status=201)


urlpatterns = [path("read/", read), path("write/", write)]
"""

MODULES = {SETTINGS_MODULE: SETTINGS, "drill_urls": URLS}

# How many of a list of tokens (one parameter) the database holds: the writes it kept.
COUNT_WRITES = "SELECT count(*) FROM django_admin_log WHERE object_repr = ANY(%s)"
