"""Three views: no database, one primary-key SELECT, five primary-key SELECTs."""

import random

from django.http import HttpResponse

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
