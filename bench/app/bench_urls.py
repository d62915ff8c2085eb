"""The project's URLs plus the three benchmark views under /bench/."""

from benchapp import views
from config.urls import urlpatterns as project_urlpatterns
from django.urls import path

urlpatterns = [
    path("bench/nodb/", views.nodb),
    path("bench/one/", views.one),
    path("bench/five/", views.five),
    path("bench/read/", views.read),
    path("bench/write/", views.write),
    *project_urlpatterns,
]
