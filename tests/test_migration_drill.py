"""Migration drill: ``migrate`` adds a column to a table a long transaction holds, under load.

A baked project (production settings under gunicorn, against the harness's primary) serves a
view that reads one table, loaded from a second process (``devtools/load.py``). A transaction
reads that table and then holds its lock for 12 s; meanwhile ``manage.py migrate`` adds a
column to it. Once with the shipped lock timeout (2 s, with retries): no read waits longer
than 3 s, and ``migrate`` succeeds after the blocker ends. Once with the lock timeout off
(``DATABASE_MIGRATION_LOCK_TIMEOUT=0``), for contrast: ``ALTER TABLE`` waits in the lock queue
and every read waits behind it until the blocker ends. The figures are printed (``-s``).
"""

import json
import re
import subprocess
import sys
import threading
import time

import psycopg
import pytest

from devtools.bakery import ROOT
from devtools.load import failed
from devtools.projects import Project, create_database

pytestmark = pytest.mark.xdist_group("migration-drill")

DATABASE = "migration_drill"
BLOCK_SECONDS = 12  # how long the blocking transaction holds its lock
WORST_READ = 3.0  # seconds: the longest a read may wait with the lock timeout on
SECRET_KEY = "migration-drill-key-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEF"
SETTINGS = """\
from config.settings.production import *  # noqa: F403
from config.settings.production import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "drill_app"]
ROOT_URLCONF = "drill_urls"
"""
URLS = """\
from django.http import JsonResponse
from django.urls import path

from drill_app.models import Item


def read(request):
    return JsonResponse({"items": Item.objects.filter(pk__lte=10).count(), "alias": "default"})


urlpatterns = [path("read/", read)]
"""
MODELS = """\
from django.db import models


class Item(models.Model):
    name = models.CharField(max_length=50)
"""
INITIAL = """\
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    operations = [
        migrations.CreateModel(
            name="Item",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("name", models.CharField(max_length=50)),
            ],
        ),
    ]
"""
# What the drill deploys: a nullable column, the safe kind (no table rewrite).
ADD_COLUMN = """\
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("drill_app", "0001_initial")]
    operations = [
        migrations.AddField("item", "note", models.TextField(null=True)),
    ]
"""
RETRY = re.compile(r"Retry \d+ of \d+ in ")


def with_name(url, application_name):
    return f"{url}?application_name={application_name}"


@pytest.fixture(scope="module")
def project(tmp_path_factory, pg_primary):
    """A default bake with ``drill_app`` (one table), migrated up to its first migration."""
    create_database(pg_primary, DATABASE)
    url = pg_primary.url(dbname=DATABASE)
    project = Project.bake(
        {},
        tmp_path_factory.mktemp("migration-drill"),
        modules={"drill_settings": SETTINGS, "drill_urls": URLS},
        DJANGO_SETTINGS_MODULE="drill_settings",
        DJANGO_SECRET_KEY=SECRET_KEY,
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DJANGO_SECURE_SSL_REDIRECT="false",
        DJANGO_LOG_LEVEL="WARNING",
        DATABASE_SSLMODE="disable",
        DATABASE_URL=with_name(url, "drill"),
        DATABASE_DIRECT_URL=with_name(url, "drill_migrate"),
    )
    app = project.path / "drill_app"
    (app / "migrations").mkdir(parents=True)
    (app / "__init__.py").write_text("")
    (app / "models.py").write_text(MODELS)
    (app / "migrations" / "__init__.py").write_text("")
    (app / "migrations" / "0001_initial.py").write_text(INITIAL)
    project.manage("migrate", "--no-input")
    (app / "migrations" / "0002_item_note.py").write_text(ADD_COLUMN)
    return project


@pytest.fixture(scope="module")
def server(project):
    with project.serve(options=("--workers=4", "--timeout=60")) as server:
        yield server


class Load:
    """``devtools.load`` reading ``path`` in a process of its own until stopped."""

    def __init__(self, server, path, *, clients=4):
        self.out = server.log_path.with_suffix(".migration-load.json")
        command = [sys.executable, "-m", "devtools.load", server.base, path]
        command += ["--clients", str(clients), "--seconds", "120", "--out", str(self.out)]
        self.process = subprocess.Popen(command, cwd=ROOT)

    def stop(self):
        self.process.terminate()
        assert self.process.wait(timeout=60) == 0
        return json.loads(self.out.read_text())


def columns(primary):
    rows = primary.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'drill_app_item'",
        dbname=DATABASE,
    )
    return {row[0] for row in rows}


class FirstLockWait(threading.Thread):
    """Notes when the session named ``application_name`` is first seen waiting for a lock."""

    def __init__(self, primary, application_name):
        super().__init__(daemon=True)
        self.primary, self.application_name = primary, application_name
        self.seen_at = None
        self.done = threading.Event()

    def run(self):
        query = (
            "SELECT 1 FROM pg_stat_activity "
            "WHERE application_name = %s AND wait_event_type = 'Lock'"
        )
        # One connection for every look: a new one per look can take longer than a 2 s wait.
        with psycopg.connect(self.primary.url(dbname=DATABASE), autocommit=True) as connection:
            while not self.done.is_set() and self.seen_at is None:
                if connection.execute(query, [self.application_name]).fetchone():
                    self.seen_at = time.time()
                time.sleep(0.05)


def drill(project, server, primary, **variables):
    """Hold the table for BLOCK_SECONDS while ``migrate`` adds a column, under a read load.

    Returns the figures; the migration is unapplied afterwards, for the next drill.
    """
    load = Load(server, "/read/")
    time.sleep(1.5)  # reads flowing before anything happens
    url = with_name(primary.url(dbname=DATABASE), "drill_blocker")
    released = []
    with psycopg.connect(url) as blocker:
        blocker.execute("SELECT count(*) FROM drill_app_item")  # a transaction, holding its lock

        def release():
            blocker.rollback()
            released.append(time.time())

        timer = threading.Timer(BLOCK_SECONDS, release)
        timer.start()
        held = time.time()
        first_wait = FirstLockWait(primary, "drill_migrate")
        first_wait.start()
        try:
            result = project.manage(
                "migrate", "--no-input", env=project.env(**variables), check=False, timeout=180
            )
            migrated = time.time()
        finally:
            timer.join()
            first_wait.done.set()
    time.sleep(1.0)  # and after
    records = load.stop()
    assert result.returncode == 0, f"migrate failed:\n{result.stdout}\n{result.stderr}"
    added = "note" in columns(primary)
    project.manage("migrate", "--no-input", "drill_app", "0001")  # unapply, for the next drill
    during = [record for record in records if held <= record["start"] <= migrated]
    worst = max(record["end"] - record["start"] for record in during)
    return {
        "retries": len(RETRY.findall(result.stderr)),
        "worst_read_s": round(worst, 2),
        "migrate_s": round(migrated - held, 2),
        # How long ALTER TABLE's first lock wait could have held reads up, at most; None when
        # the watcher saw no wait (on a loaded machine it can miss all of the 2 s ones).
        "first_wait_to_release_s": first_wait.seen_at
        and round(released[0] - first_wait.seen_at, 2),
        "migrate_ended_after_release": migrated >= released[0],
        "reads": len(records),
        "reads_during_migrate": len(during),
        "failed_reads": len(failed(records)),
        "column_added": added,
        "output": result.stderr,
    }


def report(name, figures):
    shown = {key: value for key, value in figures.items() if key != "output"}
    print(f"\n[migration drill] {name}: {json.dumps(shown)}")
    for line in figures["output"].splitlines():
        if "Lock wait timed out" in line:
            print(f"[migration drill]   {line.strip()}")


def test_migration_drill_reads_never_wait_behind_a_blocked_migration(project, server, pg_primary):
    bounded = drill(project, server, pg_primary)
    report("lock timeout 2s (the default), retries", bounded)
    unbounded = drill(project, server, pg_primary, DATABASE_MIGRATION_LOCK_TIMEOUT="0")
    report("lock timeout off (DATABASE_MIGRATION_LOCK_TIMEOUT=0)", unbounded)

    # With the lock timeout, reads waited at most about 2 s while migrate retried, and the
    # column was added once the blocker had ended.
    assert bounded["failed_reads"] == 0
    assert bounded["reads_during_migrate"] > 0
    assert bounded["worst_read_s"] < WORST_READ
    assert bounded["retries"] >= 1
    assert bounded["migrate_ended_after_release"]
    assert bounded["column_added"]
    # Without it, ALTER TABLE queued behind the blocker and the reads queued behind it, until
    # the blocker ended.
    assert unbounded["failed_reads"] == 0
    assert unbounded["retries"] == 0
    assert unbounded["first_wait_to_release_s"] is not None, "migrate was never seen waiting"
    assert unbounded["first_wait_to_release_s"] > WORST_READ
    assert unbounded["worst_read_s"] > unbounded["first_wait_to_release_s"] - 1.0
    assert unbounded["migrate_ended_after_release"]
    assert unbounded["column_added"]
