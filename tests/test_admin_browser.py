"""A baked project's admin, driven in headless Chromium under production settings.

gunicorn serves the project as deployed (``DEBUG`` off, static files collected and served
by WhiteNoise), with only TLS turned off as the README's local try does. The browser logs
in, adds a user, and must find it on the change list the save redirects to, on a page
styled by the admin's CSS. With read replicas, the replica's replay is paused first, so
whatever the browser wrote exists only on the primary: the admin's reads after the write
must still show it (read-your-writes). A screenshot of each change list is kept in
``artifacts/`` (listed at the end of the run).
"""

import uuid

import pytest
from psycopg import sql
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from devtools.bakery import (
    ROOT,
    AppServer,
    bake,
    combination_id,
    combinations,
    project_env,
    project_python,
    run,
)
from devtools.browser import chromium
from devtools.harness import APP_USER, PgBouncer

ARTIFACTS = ROOT / "artifacts"
COMBINATIONS = combinations(("django_version", "use_pgbouncer", "use_read_replica"))
ADMIN = ("admin", "Qx7-lunar-orbit-42")
NEW_USER = ("ada", "Analytical-Engine-1843")
UNSTYLED = "rgba(0, 0, 0, 0)"  # a background no stylesheet has set


class Site:
    """A baked project with its own database, migrated, static files collected."""

    def __init__(self, answers, path, python, env, replica=None):
        self.answers = answers
        self.path = path
        self.python = python
        self.env = env
        self.replica = replica

    def manage(self, *args):
        run([self.python, "manage.py", *args], cwd=self.path, env=self.env)


@pytest.fixture(scope="module")
def any_database_pgbouncer(pg_primary):
    """PgBouncer routing every database name: each test here migrates a database of its own,
    which the shipped pgbouncer.ini (exercised by test_pgbouncer_integration) does not route.
    """
    with PgBouncer(pg_primary) as server:
        yield server


@pytest.fixture(params=COMBINATIONS, ids=combination_id)
def site(request, tmp_path, pg_primary):
    answers = request.param
    path = bake(answers, tmp_path / "out")
    database = f"browser_{uuid.uuid4().hex[:8]}"
    pg_primary.execute(
        sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(database), sql.Identifier(APP_USER)
        )
    )
    env = project_env(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY=uuid.uuid4().hex * 2,
        DJANGO_ALLOWED_HOSTS="localhost,127.0.0.1",
        DATABASE_URL=pg_primary.url(dbname=database),
        # As the README's local try: no TLS on this machine, said explicitly.
        DATABASE_SSLMODE="disable",
        DJANGO_SECURE_SSL_REDIRECT="false",
        DJANGO_SUPERUSER_PASSWORD=ADMIN[1],
    )
    replica = None
    if answers["use_pgbouncer"]:
        env["DATABASE_URL"] = request.getfixturevalue("any_database_pgbouncer").url(database)
        env["DATABASE_DIRECT_URL"] = pg_primary.url(dbname=database)
    if answers["use_read_replica"]:
        replica = request.getfixturevalue("pg_replica")
        env["DATABASE_REPLICA_URLS"] = replica.url(dbname=database)
        # Replay stays paused for the whole test: the replica must stay in use, not be
        # skipped for lagging, so only the client's pin can send its reads to the primary.
        env["DATABASE_REPLICA_MAX_LAG_SECONDS"] = "3600"
        env["DATABASE_REPLICA_PIN_SECONDS"] = "3700"
    site = Site(answers, path, project_python(path, answers["django_version"]), env, replica)
    site.manage("collectstatic", "--no-input")
    site.manage("migrate", "--no-input")
    site.manage("createsuperuser", "--no-input", "--username", ADMIN[0], "--email", "a@b.example")
    yield site
    drop = sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(database))
    pg_primary.execute(drop)


@pytest.fixture
def paused_replica(site, pg_primary):
    """With read replicas: replay paused, everything written from here on is primary-only."""
    if site.replica is None:
        yield
        return
    site.replica.wait_for_replay(pg_primary)
    site.replica.pause_replay()
    try:
        yield
    finally:
        site.replica.resume_replay()


def submit(browser, fields, button="input[type=submit]"):
    """Fill ``fields`` (element id -> text), press ``button``, wait for the next page."""
    for field_id, text in fields.items():
        browser.find_element(By.ID, field_id).send_keys(text)
    before = browser.current_url
    browser.find_element(By.CSS_SELECTOR, button).click()

    # Chromium's driver may answer a look at the old page mid-navigation with an error
    # instead of "stale": wait for the new address, loaded.
    def next_page_loaded(driver):
        state = driver.execute_script("return document.readyState")
        return driver.current_url != before and state == "complete"

    WebDriverWait(browser, 20, ignored_exceptions=(WebDriverException,)).until(next_page_loaded)


@pytest.mark.usefixtures("paused_replica")
def test_an_admin_logs_in_and_adds_a_user_in_a_real_browser(site, request):
    options = ("--workers=2", "--timeout=30")
    with (
        AppServer(site.python, site.path, site.env, options=options) as server,
        chromium() as browser,
    ):
        base = f"http://localhost:{server.port}"  # browsers keep Secure cookies for localhost
        browser.get(f"{base}/admin/")
        submit(browser, {"id_username": ADMIN[0], "id_password": ADMIN[1]})
        assert "Site administration" in browser.page_source

        browser.get(f"{base}/admin/users/user/add/")
        new_user = {"id_username": NEW_USER[0], "id_password1": NEW_USER[1]}
        submit(browser, {**new_user, "id_password2": NEW_USER[1]}, "input[name=_save]")
        # Django's user admin continues to the new user's change form; saving it returns
        # to the change list.
        submit(browser, {}, "input[name=_save]")

        assert browser.current_url == f"{base}/admin/users/user/"
        listed = browser.find_elements(By.CSS_SELECTOR, "#result_list th a")
        assert NEW_USER[0] in [link.text for link in listed]
        header = "return getComputedStyle(document.getElementById('header')).backgroundColor"
        assert browser.execute_script(header) != UNSTYLED, "the admin's CSS did not load"
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / f"admin-{request.node.callspec.id}.png"))

        # The admin's log of recent actions is not an auth model: with read replicas it is
        # read from the replica, unless this client's writes pin it to the primary.
        browser.get(f"{base}/admin/")
        recent = browser.find_element(By.ID, "recent-actions-module").text
        assert NEW_USER[0] in recent
