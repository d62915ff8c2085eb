"""The benchmark views: no database, one or five primary-key SELECTs, and the mixed
workload's read and write (which say where they ran).
"""

import random

from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from .models import Item

ROWS = 10_000  # seeded by migration 0001


def nodb(request):
    return HttpResponse("ok\n", content_type="text/plain")


def one(request):
    item = Item.objects.get(pk=random.randint(1, ROWS))
    return HttpResponse(f"{item.name}\n", content_type="text/plain")


def five(request):
    names = [Item.objects.get(pk=random.randint(1, ROWS)).name for _ in range(5)]
    return HttpResponse("\n".join(names) + "\n", content_type="text/plain")


def read(request):
    items = Item.objects.filter(pk=random.randint(1, ROWS))
    list(items)
    return JsonResponse({"alias": items.db})


@csrf_exempt
def write(request):
    Item.objects.filter(pk=random.randint(1, ROWS)).update(name=request.POST["token"][:20])
    return JsonResponse({"alias": "default"})
