"""Django's own test suite as the oracle for the bakes' database backends.

For each Django version the locks pin, Django's test suite for the database apps runs against
a real PostgreSQL twice, with the bake's own database settings and nothing different but the
``ENGINE``: once with Django's PostgreSQL backend, once with ours (``devtools/django_suite.py``).
A test that fails only with ours is something our backend broke. Two shapes:

- two databases: ``default`` and ``other`` each with a test database of its own, both on
  ``config.backends.postgresql`` (a bake with no option);
- the replica's: ``other`` a ``TEST MIRROR`` of ``default`` on ``config.replicas.backend``, as
  the bake's own test settings make ``replica1`` (a ``use_read_replica`` bake).

Each run's counts are printed at the end of the session (``summary`` below).
"""

import pytest

from devtools import django_suite
from devtools.bakery import CHOICES
from devtools.projects import Project

pytestmark = pytest.mark.xdist_group("django-suite")

# Test ids that fail with our backends and pass with Django's, each with the reason that is
# right. Never a whole app.
EXPECTED = {
    "backends.base.test_base.ExecuteWrapperTests.test_wrapper_connection_specific": (
        "the replicas' backend moves a statement its replica cannot serve to the primary with "
        "an execute wrapper of its own, Django's hook for code around every statement; the "
        "test asserts that the connection's list holds only the wrapper it installed"
    ),
}

TWO_DATABASES = {
    "stock": django_suite.Shape(django_suite.STOCK, django_suite.STOCK),
    "ours": django_suite.Shape(django_suite.OURS, django_suite.OURS),
}
REPLICA_MIRROR = {
    "stock": django_suite.Shape(django_suite.STOCK, django_suite.STOCK, mirror=True),
    "ours": django_suite.Shape(django_suite.OURS, django_suite.REPLICA, mirror=True),
}


@pytest.fixture(scope="module", params=CHOICES["django_version"], ids=lambda v: f"django{v}")
def django_version(request):
    return request.param


def bake_for(django_version, tmp_path_factory, **answers):
    """A bake of ``django_version`` and Django's tests for the Django its lock pins."""
    output_dir = tmp_path_factory.mktemp(f"django-suite-{django_version}")
    project = Project.bake({"django_version": django_version, **answers}, output_dir)
    return project, django_suite.tests_dir(project.path)


def stock_and_ours(request, directory, shapes, project, tests, primary, apps):
    """Run Django's suite with each of ``shapes`` (stock, ours); attach and print the counts.
    Each run's console output is kept in ``directory``."""
    runs = {
        kind: django_suite.run(
            project.python,
            project.path,
            tests,
            primary.url(),
            shape,
            label=kind,
            directory=directory,
            apps=apps,
        )
        for kind, shape in shapes.items()
    }
    version = tests.parent.name
    for run in runs.values():
        line = f"Django's suite, {version}, {request.node.name}, {run.summary()}"
        request.node.user_properties.append(("summary", line))
        print(line)
    return runs["stock"], runs["ours"]


def broken(ours, stock):
    """The tests failing only with ours and not excused, each with its traceback's end, one
    a line."""
    return "\n".join(
        f"{test}: {django_suite.traceback_summary(ours.details.get(test, ''))}"
        for test in django_suite.failing_only_with(ours, stock)
        if test not in EXPECTED
    )


def test_our_backend_fails_no_test_djangos_passes(
    request, tmp_path, django_version, tmp_path_factory, pg_primary
):
    project, tests = bake_for(django_version, tmp_path_factory)
    stock, ours = stock_and_ours(
        request, tmp_path, TWO_DATABASES, project, tests, pg_primary, django_suite.APPS
    )
    failing = broken(ours, stock)
    assert not failing, f"failing only with our backend:\n{failing}"


def test_replica_backend_as_a_mirror_fails_no_test_djangos_passes(
    request, tmp_path, django_version, tmp_path_factory, pg_primary
):
    project, tests = bake_for(django_version, tmp_path_factory, use_read_replica=True)
    stock, ours = stock_and_ours(
        request, tmp_path, REPLICA_MIRROR, project, tests, pg_primary, django_suite.MIRROR_APPS
    )
    failing = broken(ours, stock)
    assert not failing, f"failing only with our backend:\n{failing}"
