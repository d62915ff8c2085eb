"""Views for the read-replica tests: each reports where its reads went."""

import os
import socket

from django.contrib.admin.models import LogEntry
from django.db import DatabaseError, connection, transaction
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path

from users.models import User


def read(request):
    """Report where a plain read of a non-auth model goes."""
    entries = LogEntry.objects.all()
    len(entries)
    return JsonResponse({"db": entries.db})


def write(request):
    """Write on a GET, so only the write (not the method) can set the pin cookie."""
    LogEntry.objects.create(
        user=User.objects.get(username="reader"), action_flag=1, object_repr="x"
    )
    return HttpResponse("written")


def raw_write(request):
    """Write with raw SQL, which the router never sees, then read."""
    user = User.objects.get(username="reader")
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO django_admin_log (action_time, user_id, object_repr, action_flag, "
            "change_message) VALUES (now(), %s, 'raw', 1, '')",
            [user.pk],
        )
    return read(request)


def update_using(request):
    """Write with .using(), which the router never sees either."""
    LogEntry.objects.using("default").update(object_repr="updated")
    return HttpResponse("updated")


def validate(request):
    """Only validate: Django routes these queries with db_for_write, yet nothing changes."""
    entry = LogEntry(action_flag=1, object_repr="draft")
    entry.user = User.objects.get(username="reader")  # on an unsaved instance: db_for_write
    entry.validate_constraints()
    return HttpResponse("valid")


def lock(request):
    """Only lock rows, in a transaction with a savepoint inside."""
    with transaction.atomic(), transaction.atomic():
        list(LogEntry.objects.select_for_update())
    return HttpResponse("locked")


def write_then_lose_the_primary(request):
    """Write, then lose the primary's connection (as when it stalls past its bound), and
    catch the next write's error, as a view may: the first write is committed."""
    LogEntry.objects.create(user=User.objects.get(username="reader"), action_flag=1)
    with socket.socket(fileno=os.dup(connection.connection.fileno())) as sock:
        sock.shutdown(socket.SHUT_RDWR)
    try:
        LogEntry.objects.create(user_id=1, action_flag=1)
    except DatabaseError:
        return HttpResponse("accepted", status=202)
    return HttpResponse("written")


def session(request):
    request.session["seen"] = True
    return HttpResponse("saved")


async def aiterate(request):
    """Read with the async ORM, which routes in the event loop."""
    texts = [entry.object_repr async for entry in LogEntry.objects.aiterator()]
    return JsonResponse({"count": len(texts)})


def write_then_stream(request):
    LogEntry.objects.create(user=User.objects.get(username="reader"), action_flag=1)

    def body():
        entries = LogEntry.objects.all()
        len(entries)
        yield entries.db

    return StreamingHttpResponse(body())


async def async_write_then_stream(request):
    await LogEntry.objects.acreate(user=await User.objects.aget(username="reader"), action_flag=1)

    async def body():
        entries = LogEntry.objects.all()
        await entries.acount()
        yield entries.db

    return StreamingHttpResponse(body())


urlpatterns = [
    path("read/", read),
    path("write/", write),
    path("raw-write/", raw_write),
    path("update-using/", update_using),
    path("validate/", validate),
    path("lock/", lock),
    path("write-then-lose-the-primary/", write_then_lose_the_primary),
    path("session/", session),
    path("aiterate/", aiterate),
    path("stream/", write_then_stream),
    path("astream/", async_write_then_stream),
]
