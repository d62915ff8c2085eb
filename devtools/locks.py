"""The lock file every bake ships, ``uv.lock``: one per Django and Python version, and how to
remake them.

A bake's ``uv.lock`` pins every package it installs (the dependencies, the ``asgi`` extra and
the dev group), each with the sha256 of every file PyPI has for it, for every platform and
every Python from the bake's own up: ``uv sync --locked`` installs exactly that, hashes
checked, and fails when pyproject.toml changed without a new lock. The bake's
docs/dependencies.md says why uv's lock rather than a ``pylock.toml`` or hashed requirements.

What a lock holds depends on two answers only: ``django_version`` (the dependencies and the
dev tools' versions) and ``python_version`` (``requires-python``, which uv's lock must match).
The template keeps one lock per valid pair in ``templates/locks/`` (:func:`lock_path`), and the
project's ``uv.lock`` is ``{% include %}``-ed from there (cookiecutter looks for included
templates in ``templates/`` beside the project's directory). The one line that depends on
another answer, the project's own name, is stored as the Jinja expression pyproject.toml
renders it with (:data:`NAME_LINE`).

``./relock`` (``python -m devtools.locks``) bakes each pair, runs ``uv lock`` in the bake,
which keeps every locked version that still fits pyproject.toml (``--upgrade`` or
``--upgrade-package NAME`` moves them), and stores the result back. It needs this machine's
Python of each version (:func:`devtools.bakery.interpreter`) and PyPI.
"""

import argparse
import contextlib
import os
import re
import sys
import tempfile

from devtools.bakery import (
    CHOICES,
    ROOT,
    UV,
    bake,
    interpreter,
    load_hook,
    locked_versions,
    run,
    uv_env,
)

LOCKS = ROOT / "templates" / "locks"
# The project's own entry in a lock: uv names the project as pyproject.toml does.
NAME_LINE = "name = \"{{ cookiecutter.project_slug.replace('_', '-') }}\""
# The slug a lock is made under; its name line then becomes NAME_LINE.
PLACEHOLDER_SLUG = "lock_placeholder"
_PROJECT_ENTRY = 'name = "{name}"\nversion = "0.1.0"\nsource = {{ virtual = "." }}\n'


def pairs():
    """Every (django_version, python_version) a bake may have, in cookiecutter.json's order."""
    pre_gen = load_hook("pre_gen_project")
    return [
        (django, python)
        for django in CHOICES["django_version"]
        for python in CHOICES["python_version"]
        if pre_gen.check_python_for_django(python, django) is None
    ]


def lock_path(django_version, python_version):
    """Where the template keeps the lock of bakes with these answers."""
    return LOCKS / f"django-{django_version}-python-{python_version}.uv.lock"


def project_name(slug):
    """The name pyproject.toml (and so the lock) gives a project of this slug."""
    return slug.replace("_", "-")


def stored(lock, name):
    """``lock`` (a uv.lock's text, for a project named ``name``) as the template stores it."""
    entry = _PROJECT_ENTRY.format(name=name)
    if lock.count(entry) != 1:
        raise ValueError(f"uv.lock has no single virtual project entry named {name!r}")
    if markup := re.search(r"\{[{%#]", lock):
        # Cookiecutter renders what it includes: this would not come out as written.
        raise ValueError(f"uv.lock holds Jinja markup {markup[0]!r}: it cannot be included")
    return lock.replace(entry, entry.replace(f'name = "{name}"', NAME_LINE))


def rendered(lock, name):
    """The template's stored ``lock`` with the project's name line rendered for ``name``."""
    return lock.replace(NAME_LINE, f'name = "{name}"')


@contextlib.contextmanager
def _quiet_stdout():
    """Send what the bake's hooks print (they are subprocesses) to /dev/null."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def relock(django_version, python_version, uv_options=()):
    """Remake the stored lock of one pair with ``uv lock`` and ``uv_options``; return whether
    it changed."""
    path = lock_path(django_version, python_version)
    before = path.read_text() if path.exists() else None
    if before is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")  # the bake's uv.lock includes it; uv then locks from nothing
    try:
        with tempfile.TemporaryDirectory() as output_dir:
            answers = {
                "project_slug": PLACEHOLDER_SLUG,
                "django_version": django_version,
                "python_version": python_version,
            }
            with _quiet_stdout():
                project = bake(answers, output_dir)
            if before is None:
                (project / "uv.lock").unlink()
            python = interpreter(python_version)
            command = [UV, "lock", "--quiet", "--python", python, *uv_options]
            run(command, cwd=project, env=uv_env(), timeout=900)
            after = stored((project / "uv.lock").read_text(), project_name(PLACEHOLDER_SLUG))
    except BaseException:
        if before is None:
            path.unlink()
        raise
    path.write_text(after)
    return after != before


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="./relock",
        description="Remake the uv.lock of every Django and Python version a bake may have "
        "(templates/locks/), keeping the versions locked unless told to upgrade.",
    )
    parser.add_argument(
        "--upgrade", action="store_true", help="the newest version pyproject.toml allows of all"
    )
    parser.add_argument(
        "--upgrade-package",
        action="append",
        default=[],
        metavar="NAME",
        help="the newest version allowed of this package (repeatable)",
    )
    args = parser.parse_args(argv)
    options = ["--upgrade"] if args.upgrade else []
    for name in args.upgrade_package:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            parser.error(f"not a package name: {name!r}")
        options += ["--upgrade-package", name]
    for django_version, python_version in pairs():
        changed = relock(django_version, python_version, options)
        path = lock_path(django_version, python_version)
        count = len(locked_versions(path.read_text()))
        state = "changed" if changed else "unchanged"
        print(f"{path.relative_to(ROOT)}: {state}, {count} packages, {path.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
